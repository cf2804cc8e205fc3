//! The self-dump protocol, helper side. The helper is this same executable re-executed
//! with `CRAC_DUMP_HELPER` set; a constructor catches that before `main` runs.
//!
//! It forks once more so that it is re-parented away from the process (CRIU refuses to
//! run inside the tree it dumps), becomes a session of its own, reports `HelperReady`
//! while holding the process's original stdio, waits for `Go`, runs `criu dump` in a
//! process group it kills afterwards, makes the image directory agree with how CRIU
//! ended (CRIU's post-dump step publishes the image), and tells the process.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::checkpoint::description::{Description, Identity};
use crate::env::DUMP_HELPER as ENV;
use crate::image::{self, DESCRIPTION, LOG};
use crate::role::{self, Role};
use crate::sys::{fd_info, privileges, process, procfs};
use crate::wire::dump_failure::{CriuEnd, DumpFailure};
use crate::wire::signal::{self, Message};

const GO_TIMEOUT: Duration = Duration::from_secs(30);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long killed members of CRIU's process group may take to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(5);
/// How long a process CRIU killed may take to die.
const DYING_LIMIT: Duration = Duration::from_secs(2);

/// What the process tells its helper, through the environment.
pub(crate) struct HelperArgs {
    pub(crate) pid: i32,
    pub(crate) tid: i32,
    pub(crate) staging: PathBuf,
    pub(crate) image_dir: PathBuf,
    pub(crate) criu: PathBuf,
    pub(crate) criu_opts: Vec<String>,
    pub(crate) leave_running: bool,
    pub(crate) log_level: u8,
}

impl HelperArgs {
    pub(crate) fn to_env(&self) -> Vec<(String, String)> {
        let fields = [
            self.pid.to_string(),
            self.tid.to_string(),
            self.staging.display().to_string(),
            self.image_dir.display().to_string(),
            self.criu.display().to_string(),
            u8::from(self.leave_running).to_string(),
            self.log_level.to_string(),
        ];
        let mut value = fields.join("\n");
        for opt in &self.criu_opts {
            value.push('\n');
            value.push_str(opt);
        }
        vec![(ENV.to_string(), value)]
    }

    fn from_env() -> Option<HelperArgs> {
        let value = std::env::var(ENV).ok()?;
        let mut lines = value.split('\n');
        let mut next = || lines.next().map(String::from);
        Some(HelperArgs {
            pid: next()?.parse().ok()?,
            tid: next()?.parse().ok()?,
            staging: next()?.into(),
            image_dir: next()?.into(),
            criu: next()?.into(),
            leave_running: next()? == "1",
            log_level: next()?.parse().ok()?,
            criu_opts: std::iter::from_fn(next).collect(),
        })
    }
}

// SAFETY: the loader calls every `.init_array` entry once, before `main`, with the C
// calling convention. glibc passes (argc, argv, envp); a function that takes no
// arguments ignores them under the SysV ABI, so `extern "C" fn()` is a valid type here.
// The entry is sound to run that early because it returns at once unless this process
// is a dump helper, and a helper never returns into the program: it reads its
// environment, does its work with std (whose runtime needs no initialisation beyond
// what the C runtime has done by then), and exits.
#[used]
#[unsafe(link_section = ".init_array")]
static HELPER_ENTRY: extern "C" fn() = enter_if_helper;

/// The entry's address, for the facade to reference so that the linker keeps it.
pub(crate) fn entry_point() -> *const () {
    &HELPER_ENTRY as *const _ as *const ()
}

/// Runs before `main` in every program linking crac-criu. In a dump helper (or CRIU's
/// action script) it does the helper's work and exits; in the application it only
/// notes the fds the parent passed on, for the open-resource check to name, and drops
/// capabilities when `crac run --drop-capabilities` asks.
extern "C" fn enter_if_helper() {
    let action = match role::of_this_process() {
        Role::DumpHelper => None,
        Role::DumpActionScript { action } => Some(action),
        Role::Main => {
            fd_info::record_inherited();
            privileges::drop_capabilities_if_asked();
            return;
        }
        Role::RestoreActionScript { .. } => {
            fd_info::record_inherited();
            return;
        }
    };
    let code = match (HelperArgs::from_env(), action) {
        (Some(args), Some(action)) => after_dump(&args, &action),
        (Some(args), None) => run(args),
        (None, _) => {
            eprintln!("crac: malformed {ENV}");
            2
        }
    };
    std::process::exit(code);
}

fn run(args: HelperArgs) -> i32 {
    // The first process only exists to be waited for by the process being dumped; the
    // second, orphaned, is outside the dumped tree. Another library's constructor could
    // have started a thread before this one ran: then the helper refuses to fork.
    if procfs::numbered("/proc/self/task").len() != 1 {
        eprintln!("crac: the dump helper has more than one thread before main; cannot fork");
        return 1;
    }
    // SAFETY: the process has a single thread (checked just above; nothing runs
    // concurrently before `main` that could start one).
    match unsafe { process::fork_single_threaded() } {
        Err(_) => return 1,
        Ok(true) => {}
        Ok(false) => return 0,
    }
    // An image holds the process's memory: every file CRIU and the helper create is 0600
    // from the start (CRIU asks for 0644), whatever is done with the directory later.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // A new session: the terminal's signals meant for the process must not reach the
    // helper. The child of a fork is never a group leader, so setsid cannot fail. As a
    // subreaper the helper gets whatever CRIU leaves behind, to kill and reap.
    if nix::unistd::setsid().is_err()
        || process::become_subreaper().is_err()
        || signal::block().is_err()
        || signal::send(args.pid, args.tid, Message::HelperReady).is_err()
    {
        return 1;
    }
    // Work the image needs but the frozen process need not wait for. This helper is the
    // same executable: its identity is the process's.
    let identity = Identity::of(Path::new("/proc/self/exe"), &args.criu);
    match signal::wait(Some(GO_TIMEOUT)) {
        Ok(Some(r)) if r.message == Message::Go => {}
        _ => {
            let _ = std::fs::remove_dir_all(&args.staging);
            return 1;
        }
    }
    let Some((outcome, payload)) = dump_and_conclude(&args, identity) else {
        return 0; // CRIU killed the process: there is nobody to tell
    };
    if signal::send_with(args.pid, args.tid, outcome, payload).is_ok() {
        let _ = signal::wait(Some(RELEASE_TIMEOUT));
    }
    0
}

/// Runs CRIU, then makes the image directory agree with what the process is told, and
/// returns that (message and payload), or `None` when nobody is left to tell.
///
/// CRIU's post-dump step publishes the image, and CRIU may still fail after it. If the
/// process is gone (CRIU had stopped it), the complete image it left stands. If it runs
/// on, it is told the dump failed and the previous image is put back; should that fail,
/// the new image stands and it is told it was left running.
fn dump_and_conclude(
    args: &HelperArgs,
    identity: std::io::Result<Identity>,
) -> Option<(Message, u32)> {
    let staging = image::DirId::of(&args.staging);
    let ended = identity.and_then(|identity| dump(args, identity));
    let criu = match &ended {
        Ok(status) => CriuEnd::of(*status),
        Err(_) => CriuEnd::NotRun,
    };
    let succeeded = criu == CriuEnd::Exited(0);
    let published = staging.is_ok_and(|id| image::is_published(&args.image_dir, id));
    if published && (succeeded || process_gone(args)) {
        // the staging path holds the previous image now, if there was one
        let _ = std::fs::remove_dir_all(&args.staging);
        image::collect_segments(&args.image_dir);
        return (succeeded && args.leave_running).then_some((Message::LeftRunning, 0));
    }
    if published && let Err(e) = image::withdraw(&args.staging, &args.image_dir) {
        let how = DumpFailure {
            criu,
            withdrawn: false,
        }
        .describe()
        .unwrap_or_else(|| "criu failed".into());
        eprintln!(
            "crac: {how} after publishing the image {}, which could not be taken back ({e}): \
             it stands, and the process keeps running",
            args.image_dir.display()
        );
        let _ = std::fs::remove_dir_all(&args.staging);
        return Some((Message::LeftRunning, 0));
    }
    // The staging path holds this attempt (never published, or taken back): only its
    // log is kept.
    keep_log(args, ended.err());
    let _ = std::fs::remove_dir_all(&args.staging);
    let failure = DumpFailure {
        criu,
        withdrawn: published,
    };
    Some((Message::DumpFailed, failure.to_payload()))
}

/// Whether the process is gone. One left running is looked at once; one CRIU was to stop
/// may still be dying of the SIGKILL CRIU sent it before failing, and is given a moment.
fn process_gone(args: &HelperArgs) -> bool {
    let deadline = std::time::Instant::now() + DYING_LIMIT;
    while procfs::alive(args.pid) {
        if args.leave_running || std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Moves the failed attempt's CRIU log to where the process reads it, replacing any
/// older one; writes one naming `error`, or the lack of a log, if CRIU left none.
fn keep_log(args: &HelperArgs, error: Option<std::io::Error>) {
    let log = args.staging.join(LOG);
    if !log.exists() {
        let why = error.map_or_else(|| "criu left no log".to_string(), |e| e.to_string());
        let _ = std::fs::write(&log, format!("Error: {why}\n"));
    }
    let _ = std::fs::rename(&log, image::failed_log(&args.image_dir));
}

/// Runs `criu dump`; its action script gets `identity` for the manifest.
fn dump(args: &HelperArgs, identity: Identity) -> std::io::Result<std::process::ExitStatus> {
    let (identity_env, identity) = identity.to_env();
    let mut cmd = Command::new(&args.criu);
    cmd.arg("dump")
        .arg("-t")
        .arg(args.pid.to_string())
        .arg("-D")
        .arg(&args.staging)
        .arg("-o")
        .arg(LOG)
        .arg(format!("-v{}", args.log_level))
        .arg("--action-script")
        .arg(std::env::current_exe()?)
        .args(&args.criu_opts)
        .env(identity_env, identity)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if args.leave_running {
        cmd.arg("--leave-running");
    }
    // CRIU leads a process group of its own, which the helper kills once CRIU has
    // ended: an action script or child that outlives a killed CRIU must not live on.
    cmd.process_group(0);
    let mut criu = cmd.spawn()?;
    let pid = criu.id();
    let waited = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        with_progress(pid, &args.staging)
    } else {
        process::has_ended(pid, true).map(drop)
    };
    // Killed while CRIU is still unreaped, so that its group's ID cannot be reused.
    let killed = process::kill_group(pid);
    let status = criu.wait();
    process::reap_children(REAP_LIMIT);
    waited?;
    killed?;
    status
}

/// Waits for CRIU to end, showing on the terminal (the process's original stderr,
/// which this helper holds) how much of the image is written.
fn with_progress(criu: u32, staging: &Path) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let mut shown = false;
    while !process::has_ended(criu, false)? {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(entries) = std::fs::read_dir(staging) else {
            continue; // published: CRIU is about to finish
        };
        let written: u64 = entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        eprint!(
            "\rcrac: dumping… {} MB written in {:.1} s",
            written >> 20,
            started.elapsed().as_secs_f64()
        );
        shown = true;
    }
    if shown {
        eprintln!();
    }
    Ok(())
}

/// CRIU's `--action-script`: at `post-dump` the image is written and the process still
/// frozen, so the image is published before the process is killed — whoever sees it
/// die can restore at once. Failing here fails the dump, and the process is resumed.
fn after_dump(args: &HelperArgs, action: &str) -> i32 {
    if action != "post-dump" {
        return 0;
    }
    match publish(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "crac: publishing the image {} failed: {e}",
                args.image_dir.display()
            );
            1
        }
    }
}

/// Makes the manifest of the process's description and the helper's identity, and
/// publishes the image with it.
fn publish(args: &HelperArgs) -> std::io::Result<()> {
    let path = args.staging.join(DESCRIPTION);
    let description = Description::decode(&std::fs::read_to_string(&path)?)?;
    std::fs::remove_file(&path)?;
    let manifest = description.into_manifest(Identity::from_env()?);
    image::publish(&args.staging, &args.image_dir, manifest)
}
