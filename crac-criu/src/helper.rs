//! The self-dump protocol, helper side. The helper is this same executable re-executed
//! with `CRAC_DUMP_HELPER` set; a constructor catches that before `main` runs.
//!
//! It forks once more so that it is re-parented away from the process (CRIU refuses to
//! run inside the tree it dumps), becomes a session of its own, reports `HelperReady`
//! while holding the process's original stdio, waits for `Go`, runs `criu dump`, then
//! publishes the image or keeps the failure log, and tells the process how it went.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::manifest::{ExeStat, Manifest};
use crate::signal::{self, Message};
use crate::{criu, image};

const ENV: &str = "CRAC_DUMP_HELPER";
/// The manifest as the process knows it, completed by the helper after the dump.
pub const DRAFT: &str = "crac-manifest.draft";
const LOG: &str = "dump.log";
const GO_TIMEOUT: Duration = Duration::from_secs(30);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the process tells its helper, through the environment.
pub struct HelperArgs {
    pub pid: i32,
    pub tid: i32,
    pub staging: PathBuf,
    pub image_dir: PathBuf,
    pub criu: PathBuf,
    pub criu_opts: Vec<String>,
    pub leave_running: bool,
    pub log_level: u8,
}

impl HelperArgs {
    pub fn to_env(&self) -> Vec<(String, String)> {
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

#[used]
#[unsafe(link_section = ".init_array")]
static HELPER_ENTRY: extern "C" fn() = enter_if_helper;

pub fn entry_point() -> *const () {
    &HELPER_ENTRY as *const _ as *const ()
}

/// Runs before `main` in every program linking crac-criu; does nothing unless this
/// process was started as a dump helper.
extern "C" fn enter_if_helper() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    let code = match HelperArgs::from_env() {
        Some(args) => run(args),
        None => {
            eprintln!("crac: malformed {ENV}");
            2
        }
    };
    std::process::exit(code);
}

fn run(args: HelperArgs) -> i32 {
    // The first process only exists to be waited for by the process being dumped; the
    // second, orphaned, is outside the dumped tree.
    // SAFETY: this process is single-threaded (before main), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => return 1,
        0 => {}
        _ => return 0,
    }
    // SAFETY: plain syscall; failing only means we already lead a session.
    unsafe { libc::setsid() };
    if signal::block().is_err() || signal::send(args.pid, args.tid, Message::HelperReady).is_err() {
        return 1;
    }
    match signal::wait(Some(GO_TIMEOUT)) {
        Ok(Some(r)) if r.message == Message::Go => {}
        _ => {
            let _ = std::fs::remove_dir_all(&args.staging);
            return 1;
        }
    }
    let dumped = dump(&args);
    let outcome = match dumped {
        Ok(()) => match publish(&args) {
            Ok(()) => Message::LeftRunning,
            Err(e) => {
                eprintln!(
                    "crac: the dump succeeded but the image could not be published: {e} (it stays in {})",
                    args.staging.display()
                );
                Message::DumpFailed
            }
        },
        Err(()) => {
            let _ = std::fs::rename(args.staging.join(LOG), image::failed_log(&args.image_dir));
            let _ = std::fs::remove_dir_all(&args.staging);
            Message::DumpFailed
        }
    };
    if dumped.is_ok() && !args.leave_running {
        return 0; // CRIU killed the process: there is nobody to tell
    }
    if signal::send(args.pid, args.tid, outcome).is_ok() {
        let _ = signal::wait(Some(RELEASE_TIMEOUT));
    }
    0
}

fn dump(args: &HelperArgs) -> Result<(), ()> {
    let mut cmd = Command::new(&args.criu);
    cmd.arg("dump")
        .arg("-t")
        .arg(args.pid.to_string())
        .arg("-D")
        .arg(&args.staging)
        .arg("-o")
        .arg(LOG)
        .arg(format!("-v{}", args.log_level))
        .args(&args.criu_opts)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if args.leave_running {
        cmd.arg("--leave-running");
    }
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(_) => Err(()),
        Err(e) => {
            let _ = std::fs::write(args.staging.join(LOG), format!("Error: cannot run {}: {e}\n", args.criu.display()));
            Err(())
        }
    }
}

fn publish(args: &HelperArgs) -> std::io::Result<()> {
    let draft_path = args.staging.join(DRAFT);
    let draft = std::fs::read_to_string(&draft_path)?;
    std::fs::remove_file(&draft_path)?;
    let mut manifest = Manifest::parse(&draft_path, &draft).map_err(std::io::Error::other)?;
    // This helper is the same executable: its identity is the process's.
    let exe = std::path::Path::new("/proc/self/exe");
    manifest.executable_stat = ExeStat::of(exe)?;
    manifest.executable_sha256 = image::sha256(exe)?;
    manifest.criu_version = criu::version(&args.criu)?;
    image::publish(&args.staging, &args.image_dir, manifest)
}
