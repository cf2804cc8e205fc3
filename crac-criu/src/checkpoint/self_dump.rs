//! The self-dump protocol, process side: a process cannot run CRIU on itself (CRIU must
//! not be inside the dumped tree), so it starts a detached helper and waits in place.
//!
//! 1. Open-fd check, then `setsid()` (CRIU restores a session leader without needing a
//!    terminal; [`Criu::probe`](crate::Criu) has already checked that it can succeed).
//! 2. Spawn the helper (this executable, re-executed in helper mode, see [`super::helper`]);
//!    it double-forks away from this process and reports `HelperReady`, holding our stdio.
//! 3. Wipe the secret environment variables (the helper holds them), swap stdio for
//!    memfds, return freed heap to the OS, send `Go`, wait for a message.
//! 4. The message says how we come back: `Restored` (from `crac restore`'s post-restore
//!    hook, in a restored copy), `LeftRunning` or `DumpFailed` (from the helper: take the
//!    stdio and the secret environment back, let the helper go).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crac_core::engine::EngineOutcome;

use crate::checkpoint::config::Config;
use crate::checkpoint::description::Description;
use crate::checkpoint::helper::HelperArgs;
use crate::checkpoint::{fd_check, ready, request_server, secret_env, stdio};
use crate::env;
use crate::error::{Error, HelperFailure, NotCheckpointable};
use crate::heap;
use crate::image::manifest::PlanLine;
use crate::image::{self, DESCRIPTION};
use crate::sys::{criu, privileges, process, procfs, stack};
use crate::wire::dump_failure::DumpFailure;
use crate::wire::restore_args;
use crate::wire::signal::{self, Message, Received};

const HELPER_START: Duration = Duration::from_secs(30);
/// After the helper is gone, how long a restored copy may wait for its wake-up message.
const WAKE_GRACE: Duration = Duration::from_secs(5);

/// Takes the image with `config`, leaving the process running if `leave_running`.
pub(crate) fn checkpoint(
    config: &Config,
    leave_running: bool,
    plan: &crac_core::Plan,
) -> Result<EngineOutcome, Error> {
    let claimed = || {
        crac_core::claimed_fds()
            .into_iter()
            .map(|(fd, _)| fd)
            .collect()
    };
    // Sealed first: sealing closes the segments' fds, which the check would otherwise see.
    let segments = heap::seal().map_err(|e| Error::Heap {
        problem: e.to_string(),
    })?;
    // However this ends — restored, left running, refused, failed — the heap grows in
    // segment files again afterwards.
    let _resume = ResumeHeap;
    let carried = fd_check::check(&config.fd_policy, &claimed)?;
    let connections = carried.connections || (leave_running && carried.claimed_listener);
    let criu_opts = carrying_tcp(&config.criu_opts, connections);
    become_session_leader()?;

    let pid = std::process::id() as i32;
    let tid = nix::unistd::gettid().as_raw();
    let staging = image::create_staging(&config.image_dir, pid)?;
    let description = Description {
        created: SystemTime::now(),
        executable: std::env::current_exe().map_err(Error::io("locating the executable"))?,
        kernel: image::kernel_release(),
        cpu_flags: image::cpu_flags(),
        pid,
        waiter_tid: tid,
        tids: procfs::numbered("/proc/self/task"),
        private_pid_namespace: env::in_private_pid_namespace(),
        resident_bytes: 0,
        restore_options: criu::restore_options(&criu_opts),
        listeners: carried.listeners,
        secret_env: Vec::new(),
        plan: plan
            .entries
            .iter()
            .map(|e| PlanLine {
                rank: e.rank,
                kind: e.kind.as_str().to_string(),
                depth: e.depth,
                name: e.name_and_location(),
            })
            .collect(),
        segments,
    };
    let args = HelperArgs {
        pid,
        tid,
        staging: staging.clone(),
        image_dir: config.image_dir.clone(),
        criu: config.criu.clone(),
        criu_opts,
        leave_running,
        log_level: config.log_level,
    };

    let mask = signal::block().map_err(Error::io("blocking the wake-up signal"))?;
    let outcome = run_helper(&args, description, config);
    // A mask that cannot be put back leaves the signal blocked in this thread: harmless,
    // as its no-op handler makes stray ones harmless anyway.
    let _ = signal::restore_mask(&mask);
    if outcome.is_err() {
        // nothing of a failed attempt may look like an image; CRIU's log was moved aside
        let _ = std::fs::remove_dir_all(&staging);
    }
    outcome
}

/// Ends the checkpoint [`heap::seal`] began when dropped.
struct ResumeHeap;

impl Drop for ResumeHeap {
    fn drop(&mut self) {
        heap::resume();
    }
}

/// `options` for an image that carries TCP sockets (`connections`): `--tcp-close` unless
/// they say how CRIU should take connections (their copies come back closed, the
/// originals run on), and `--skip-in-flight`: connections still in a listening socket's
/// queue stay there for the running process, and are not in the image.
fn carrying_tcp(options: &[String], connections: bool) -> Vec<String> {
    let mut options = options.to_vec();
    let said = |o: &String| o.starts_with("--tcp-close") || o.starts_with("--tcp-established");
    if connections && !options.iter().any(said) {
        options.push("--tcp-close".into());
    }
    if connections && !options.iter().any(|o| o == "--skip-in-flight") {
        options.push("--skip-in-flight".into());
    }
    options
}

fn run_helper(
    args: &HelperArgs,
    mut description: Description,
    config: &Config,
) -> Result<EngineOutcome, Error> {
    let status = Command::new("/proc/self/exe")
        .envs(args.to_env())
        .status()
        .map_err(Error::io("starting the dump helper"))?;
    if !status.success() {
        return Err(HelperFailure::Start(status).into());
    }
    let helper = wait_until_ready()?;

    let wiped = secret_env::set_now(&config.secret_env);
    description.secret_env = wiped.clone();
    process::release_free_heap();
    description.resident_bytes = resident_bytes();
    std::fs::write(args.staging.join(DESCRIPTION), description.encode())
        .map_err(Error::io("writing the image's description"))?;
    let placeholder =
        restore_args::placeholder().map_err(Error::io("creating the restore-arguments memfd"))?;
    // From here on every way back takes them back from the helper, which holds them.
    secret_env::wipe(&wiped);
    // On these two failures the helper, never told to go, gives up on its own; stdio
    // is taken back as far as it can be, and the failure that stopped us is reported.
    if let Err(e) = stdio::swap_to_memfds() {
        let _ = take_back(helper, &wiped);
        return Err(Error::io("handing stdio over")(e));
    }
    let dumped_at = SystemTime::now();
    stack::scrub_dead_frames();
    if let Err(e) = signal::send(helper, helper, Message::Go) {
        let _ = take_back(helper, &wiped);
        return Err(Error::io("signalling the dump helper")(e));
    }

    let (outcome, requests) = wait_for_outcome(helper)?;
    if outcome.message != Message::Restored {
        // requests made while this one was served; a restored copy's came to the
        // process it was copied from, whose death or answer those requesters have seen
        requests.into_iter().for_each(request_server::refuse_busy);
    }
    match outcome.message {
        Message::Restored => {
            let mut given = restore_args::read(placeholder);
            secret_env::install(&secret_env::names(&config.secret_env), &mut given.env);
            ready::reset_schedule(&given.env);
            Ok(EngineOutcome::Restored {
                checkpointed_for: dumped_at.elapsed().ok(),
                args: given.args,
                env: given.env,
                restore_began: given.began,
                monotonic_time_kept: given.monotonic_time_kept,
            })
        }
        message => {
            let taken_back = take_back(helper, &wiped);
            // a helper that misses this exits on its own after RELEASE_TIMEOUT
            let _ = signal::send(helper, helper, Message::Release);
            let lost_stdio = |e: std::io::Error| {
                format!("\n(stdio or secrets could not be taken back from the helper: {e})")
            };
            if message == Message::LeftRunning {
                return taken_back
                    .map(|()| EngineOutcome::LeftRunning)
                    .map_err(Error::io(
                        "taking stdio and secrets back from the dump helper",
                    ));
            }
            let log = image::failed_log(&config.image_dir);
            let mut reason = failure_reason(DumpFailure::from_payload(outcome.payload), &log);
            if let Err(e) = taken_back {
                reason.push_str(&lost_stdio(e));
            }
            Err(Error::Dump { reason, log })
        }
    }
}

/// What the helper holds for a process that goes on without a restore: its stdio and
/// its `wiped` secret environment variables.
fn take_back(helper: libc::pid_t, wiped: &[String]) -> std::io::Result<()> {
    let stdio = stdio::take_back(helper);
    let secrets = secret_env::take_back(helper, wiped);
    stdio.and(secrets)
}

/// What a failed dump's error says: how CRIU ended, then the errors of its log if they
/// explain it.
fn failure_reason(failure: DumpFailure, log: &Path) -> String {
    let digest = failure
        .log_explains()
        .then(|| criu::log_digest(log, 8))
        .filter(|digest| !digest.is_empty());
    failure
        .describe()
        .map(|line| format!("  {line}"))
        .into_iter()
        .chain(digest)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for the helper's `HelperReady`; returns its PID.
fn wait_until_ready() -> Result<libc::pid_t, Error> {
    let deadline = std::time::Instant::now() + HELPER_START;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match signal::wait(Some(left)).map_err(Error::io("waiting for the dump helper"))? {
            Some(r) if r.message == Message::HelperReady => return Ok(r.sender),
            // another `crac checkpoint` while this thread serves one
            Some(r) if r.message == Message::Go => request_server::refuse_busy(r.payload),
            Some(_) => continue, // a stale message of an earlier attempt
            None => return Err(HelperFailure::NotReady(HELPER_START).into()),
        }
    }
}

/// Waits for the message that ends the dump; returns it with the numbers of the
/// checkpoint requests that arrived meanwhile (the process may be frozen, or already a
/// restored copy, when it sees them: they are answered once that is known). A restored
/// copy's helper does not exist, so a vanished helper only means failure once the grace
/// period has passed too.
fn wait_for_outcome(helper: libc::pid_t) -> Result<(Received, Vec<u32>), Error> {
    let mut gone_since = None;
    let mut requests = Vec::new();
    loop {
        match signal::wait(Some(Duration::from_secs(1))) {
            Err(e) => return Err(Error::io("waiting in place for the dump")(e)),
            Ok(Some(r))
                if matches!(
                    r.message,
                    Message::Restored | Message::LeftRunning | Message::DumpFailed
                ) =>
            {
                return Ok((r, requests));
            }
            Ok(Some(r)) if r.message == Message::Go => requests.push(r.payload),
            Ok(_) => {}
        }
        match (procfs::alive(helper), gone_since) {
            (true, _) => gone_since = None,
            (false, None) => gone_since = Some(std::time::Instant::now()),
            (false, Some(since)) if since.elapsed() > WAKE_GRACE => {
                return Err(HelperFailure::NoOutcome.into());
            }
            (false, Some(_)) => {}
        }
    }
}

/// Whether this process can be dumped as it was started: checked before any hook runs.
/// CRIU restores a session leader without a terminal (anything else needs
/// `--shell-job`, which cannot restore without one), and PID 1 would be its own
/// helper's parent.
pub(crate) fn check_startable() -> Result<(), NotCheckpointable> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NotCheckpointable::NotRoot);
    }
    if let Some(problem) =
        privileges::problem("a checkpoint", &[], privileges::under_seccomp_filter())
    {
        return Err(NotCheckpointable::Privileges(problem));
    }
    let pid = nix::unistd::getpid();
    if pid.as_raw() == 1 {
        return Err(NotCheckpointable::Pid1);
    }
    let leads_session = nix::unistd::getsid(None).ok() == Some(pid);
    let leads_group = nix::unistd::getpgrp() == pid;
    if leads_group && !leads_session {
        return Err(NotCheckpointable::ProcessGroupLeader);
    }
    check_executable_unchanged()
}

/// The dump helper and CRIU's action script are this binary, started again by path:
/// once it was replaced (as `cargo build` and package managers do, by renaming a new
/// file over it) the path names another program or nothing, and CRIU fails with its
/// own words only after every hook ran. Checked here, before any hook.
fn check_executable_unchanged() -> Result<(), NotCheckpointable> {
    use std::os::unix::fs::MetadataExt;
    let Ok(link) = std::fs::read_link("/proc/self/exe") else {
        return Ok(()); // no /proc: the dump reports what it cannot find
    };
    let text = link.to_string_lossy();
    if let Some(path) = text.strip_suffix(" (deleted)") {
        return Err(NotCheckpointable::ExecutableReplaced(path.into()));
    }
    let running = std::fs::metadata("/proc/self/exe");
    let on_disk = std::fs::metadata(&link);
    match (running, on_disk) {
        (Ok(running), Ok(on_disk))
            if (running.dev(), running.ino()) == (on_disk.dev(), on_disk.ino()) =>
        {
            Ok(())
        }
        _ => Err(NotCheckpointable::ExecutableReplaced(link)),
    }
}

/// Detaches from the caller's session (irreversible; [`check_startable`] made sure it
/// succeeds). A process checkpointed once stays a session leader.
fn become_session_leader() -> Result<(), Error> {
    let pid = nix::unistd::getpid();
    if nix::unistd::getsid(None).ok() == Some(pid) {
        return Ok(());
    }
    nix::unistd::setsid()
        .map(|_| ())
        .map_err(|e| Error::io("becoming a session leader")(e.into()))
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
