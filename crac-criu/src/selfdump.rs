//! The self-dump protocol, process side: a process cannot run CRIU on itself (CRIU must
//! not be inside the dumped tree), so it starts a detached helper and waits in place.
//!
//! 1. `setsid()` (CRIU restores a session leader without needing a terminal), open-fd check.
//! 2. Spawn the helper (this executable, re-executed in helper mode, see [`crate::helper`]);
//!    it double-forks away from this process and reports `HelperReady`, holding our stdio.
//! 3. Swap stdio for memfds, return freed heap to the OS, send `Go`, wait for a message.
//! 4. The message says how we come back: `Restored` (from `crac restore`'s post-resume
//!    hook, in a restored copy), `LeftRunning` or `DumpFailed` (from the helper: take the
//!    stdio back, let the helper go).

use std::process::Command;
use std::time::{Duration, SystemTime};

use crac_core::engine::EngineOutcome;

use crate::config::Config;
use crate::helper::HelperArgs;
use crate::manifest::{ExeStat, Manifest, PlanLine};
use crate::signal::{self, Message};
use crate::{Error, criu, fdcheck, image, restore_args, stdio};

const HELPER_START: Duration = Duration::from_secs(30);
/// After the helper is gone, how long a restored copy may wait for its wake-up message.
const WAKE_GRACE: Duration = Duration::from_secs(5);

pub fn checkpoint(config: &Config, plan: &crac_core::Plan) -> Result<EngineOutcome, Error> {
    become_session_leader()?;
    let claimed: Vec<i32> = crac_core::claimed_fds()
        .into_iter()
        .map(|(fd, _)| fd)
        .collect();
    fdcheck::check(&config.fd_policy, &claimed)?;

    let pid = std::process::id() as i32;
    let tid = nix::unistd::gettid().as_raw();
    let staging = image::create_staging(&config.image_dir, pid)?;
    let draft = Manifest {
        created: SystemTime::now(),
        executable: std::env::current_exe().map_err(|e| Error::Io("locating the executable", e))?,
        executable_sha256: String::new(),
        executable_stat: ExeStat {
            size: 0,
            mtime_ns: 0,
            dev: 0,
            ino: 0,
        },
        kernel: image::kernel_release(),
        cpu_flags: image::cpu_flags(),
        criu_version: String::new(),
        pid,
        waiter_tid: tid,
        tids: threads(),
        private_pid_namespace: crate::namespace::private(),
        resident_bytes: 0,
        restore_options: criu::restore_options(&config.criu_opts),
        plan: plan
            .entries
            .iter()
            .map(|e| PlanLine {
                rank: e.rank,
                kind: format!("{:?}", e.kind).to_lowercase(),
                depth: e.depth,
                name: e.name.clone(),
            })
            .collect(),
        files: Vec::new(),
    };
    let args = HelperArgs {
        pid,
        tid,
        staging: staging.clone(),
        image_dir: config.image_dir.clone(),
        criu: config.criu.clone(),
        criu_opts: config.criu_opts.clone(),
        leave_running: config.leave_running,
        log_level: config.log_level,
    };

    let mask = signal::block().map_err(|e| Error::Io("blocking the wake-up signal", e))?;
    let outcome = run_helper(&args, draft, config);
    signal::restore_mask(&mask);
    outcome
}

fn run_helper(
    args: &HelperArgs,
    mut draft: Manifest,
    config: &Config,
) -> Result<EngineOutcome, Error> {
    let status = Command::new("/proc/self/exe")
        .envs(args.to_env())
        .status()
        .map_err(|e| Error::Io("starting the dump helper", e))?;
    if !status.success() {
        return Err(Error::Helper(format!(
            "the dump helper failed to start ({status})"
        )));
    }
    let ready = signal::wait(Some(HELPER_START))
        .map_err(|e| Error::Io("waiting for the dump helper", e))?
        .filter(|r| r.message == Message::HelperReady)
        .ok_or_else(|| Error::Helper("the dump helper did not report ready within 30 s".into()))?;
    let helper = ready.sender;

    // Return freed heap to the kernel, so the image holds live memory only.
    // SAFETY: malloc_trim only releases free pages.
    unsafe { libc::malloc_trim(0) };
    draft.resident_bytes = resident_bytes();
    std::fs::write(args.staging.join(crate::helper::DRAFT), draft.render())
        .map_err(|e| Error::Io("writing the manifest draft", e))?;
    let placeholder = restore_args::placeholder()
        .map_err(|e| Error::Io("creating the restore-arguments memfd", e))?;
    stdio::swap_to_memfds().map_err(|e| Error::Io("handing stdio over", e))?;
    let dumped_at = SystemTime::now();
    if let Err(e) = signal::send(helper, helper, Message::Go) {
        let _ = stdio::take_back(helper);
        return Err(Error::Io("signalling the dump helper", e));
    }

    match wait_for_outcome(helper)? {
        Message::Restored => {
            let given = restore_args::read(placeholder);
            Ok(EngineOutcome::Restored {
                checkpointed_for: dumped_at.elapsed().ok(),
                args: given.args,
                env: given.env,
            })
        }
        message => {
            let taken_back = stdio::take_back(helper);
            let _ = signal::send(helper, helper, Message::Release);
            taken_back.map_err(|e| Error::Io("taking stdio back from the dump helper", e))?;
            if message == Message::LeftRunning {
                return Ok(EngineOutcome::LeftRunning);
            }
            let log = image::failed_log(&config.image_dir);
            Err(Error::Dump {
                reason: criu::log_digest(&log, 8),
                log,
            })
        }
    }
}

/// Waits for the message that ends the dump. A restored copy's helper does not exist, so
/// a vanished helper only means failure once the grace period has passed too.
fn wait_for_outcome(helper: libc::pid_t) -> Result<Message, Error> {
    let mut gone_since = None;
    loop {
        match signal::wait(Some(Duration::from_secs(1))) {
            Err(e) => return Err(Error::Io("waiting in place for the dump", e)),
            Ok(Some(r))
                if matches!(
                    r.message,
                    Message::Restored | Message::LeftRunning | Message::DumpFailed
                ) =>
            {
                return Ok(r.message);
            }
            Ok(_) => {}
        }
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(helper, 0) } == 0;
        match (alive, gone_since) {
            (true, _) => gone_since = None,
            (false, None) => gone_since = Some(std::time::Instant::now()),
            (false, Some(since)) if since.elapsed() > WAKE_GRACE => {
                return Err(Error::Helper(
                    "the dump helper exited without reporting an outcome; stdio is lost".into(),
                ));
            }
            (false, Some(_)) => {}
        }
    }
}

/// CRIU restores a session leader without a terminal; anything else needs `--shell-job`,
/// which cannot restore without one.
fn become_session_leader() -> Result<(), Error> {
    let pid = nix::unistd::getpid();
    if nix::unistd::getsid(None).ok() == Some(pid) {
        return Ok(());
    }
    nix::unistd::setsid().map(|_| ()).map_err(|e| {
        Error::Helper(format!(
            "cannot become a session leader ({e}): the process leads a process group, as shells \
             start jobs; start it with `setsid` (or `crac run`) so it can be checkpointed"
        ))
    })
}

fn threads() -> Vec<i32> {
    let mut tids: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
