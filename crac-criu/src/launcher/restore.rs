//! Restore, the restorer's side: validate the image, run `criu restore`, wake the
//! restored process, forward signals, and exit with its exit code.
//!
//! CRIU is asked to (a) substitute the restorer's stdio for the image's stdio memfds,
//! (b) run this executable as its `--action-script`, which stamps each stage (see
//! `phases.rs`), holds the process at `post-restore` until its page data is found intact
//! (`page_check.rs`) and then queues its `Restored` message, and
//! (c) `--exec-cmd` this executable as `__wait`, which becomes the restored process's
//! parent and reports its real exit code.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::image::{self, Contents, manifest::Manifest};
use crate::launcher::lazy_pages::{CopyStopper, LazyPages};
use crate::launcher::namespace;
use crate::launcher::page_check::{self, Hold, PageCheck};
use crate::launcher::phases;
use crate::launcher::supervise::{self, Ended};
use crate::launcher::verified_pages::{Intact, VerifyPages};
use crate::sys::{criu, fd_info, fs, process, procfs};
use crate::wire::STDIO_MEMFDS;
use crate::wire::restore_args::{self, RestoreArgs};
use crate::wire::signal::{self, Message};

/// Environment through which the action script finds the image being restored.
use crate::env::RESTORE_IMAGE as IMAGE_ENV;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Arguments and environment for the restored process.
    pub given: RestoreArgs,
    /// Where CRIU writes its restore log; default: a file in the temp directory.
    pub log: Option<PathBuf>,
    /// CRIU log verbosity (0–4), default 2.
    pub log_level: Option<u8>,
    /// Print how long each phase of the restore took.
    pub verbose: bool,
    /// Run the process before its memory is read, which a `criu lazy-pages` server then
    /// fills on demand (see `lazy_pages.rs`).
    pub lazy: bool,
    /// Give up on a restore whose process has not resumed after this long (default:
    /// [`RESTORE_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// Whether the page data is hashed even when an earlier restore found these very
    /// files intact.
    pub verify_pages: VerifyPages,
}

/// How long CRIU may take to get the process running by default: far beyond any
/// restore seen (a second or two per GB), short of forever.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);

/// Restores the image in `dir` and waits for the restored process; returns its exit code
/// (128 + signal if it was killed). `tool` is the `crac` executable CRIU calls back.
pub fn restore(dir: &Path, tool: &Path, options: &RestoreOptions) -> Result<i32, Error> {
    let began = SystemTime::now();
    // Before any thread or child exists, so that all of them inherit the forwarded
    // signals blocked: one delivered to another thread would be lost.
    supervise::forward_to(0)?;
    // CRIU changes into the image directory before it calls back: relative paths would
    // point elsewhere by then.
    let absolute = |p: &Path| {
        std::path::absolute(p).map_err(|e| Error::Setting {
            setting: "crac restore",
            problem: format!("{}: {e}", p.display()),
        })
    };
    let dir = &absolute(dir)?;
    let options = &RestoreOptions {
        log: options.log.as_deref().map(absolute).transpose()?,
        ..options.clone()
    };
    let log = options.log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("crac-restore-{}.log", std::process::id()))
    });
    // Started first, so that its start overlaps the validation; killed if that fails.
    let lazy = match (options.lazy, criu::criu_binary()) {
        (true, Ok(criu)) => {
            let (work_dir, lazy_log) = (log.with_extension("lazy"), log.with_extension("lazy.log"));
            let log_level = options.log_level.unwrap_or(2);
            Some(LazyPages::start(&criu, dir, work_dir, lazy_log, log_level)?)
        }
        _ => None,
    };
    let manifest = image::validate(dir, Contents::AllButPages)?;
    let stamps = log.with_extension("phases");
    let _ = std::fs::remove_file(&stamps);
    let _ = phases::stamp_at(&stamps, began, phases::VALIDATED);
    check_ids_free(&manifest)?;
    check_secrets_given(dir, &manifest, options)?;
    let listeners_turn = ListenersTurn::take(dir, &manifest)?;

    let criu = criu::criu_binary()?;
    let mut cmd = criu_restore(&criu, dir, tool, &manifest, &log, options)?;
    phases::pass_to(&mut cmd, &stamps, began);
    restore_args::pass_to(
        &mut cmd,
        &RestoreArgs {
            began: Some(began),
            ..options.given.clone()
        },
    )
    .map_err(|e| Error::Io("passing the restore-time arguments", e))?;
    let lazy = match lazy {
        Some(mut server) => {
            server.listening()?;
            let _ = phases::stamp_at(&stamps, began, phases::LAZY_LISTENING);
            server.serve(&mut cmd);
            Some(server)
        }
        None => None,
    };
    // last: CRIU takes everything after it as the command
    cmd.arg("--exec-cmd")
        .arg("--")
        .arg(tool)
        .arg("__wait")
        .arg(manifest.pid.to_string());
    let hashed = {
        let stamps = stamps.clone();
        move |outcome: &Result<Intact, Error>| {
            let stage = match outcome {
                Ok(Intact::Recorded) => phases::PAGES_RECORDED,
                _ => phases::PAGES_HASHED,
            };
            drop(phases::stamp_at(&stamps, began, stage))
        }
    };
    // A full restore holds the copy until its page data is checked; a lazy one checks it
    // once the copy runs (below).
    let held = if lazy.is_none() {
        let hold = Hold::Until {
            verdict: log.with_extension("verdict"),
            criu: &mut cmd,
        };
        Some(PageCheck::start(
            dir,
            &manifest,
            options.verify_pages,
            hold,
            hashed.clone(),
        )?)
    } else {
        None
    };

    let mut child = spawn(cmd, &criu, &manifest)?;
    let pid = child.id() as libc::pid_t;
    let copy = CopyStopper::new(if manifest.private_pid_namespace {
        pid
    } else {
        manifest.pid
    });
    let lazy = lazy.map(|server| server.watch(copy.clone()));
    let pages = match held {
        Some(check) => check,
        None => {
            let copy = copy.clone();
            PageCheck::start(
                dir,
                &manifest,
                options.verify_pages,
                Hold::No,
                move |outcome| {
                    hashed(outcome);
                    if outcome.is_err() {
                        copy.stop();
                    }
                },
            )?
        }
    };
    // `unshare` does not pass signals on: send them to the namespace's PID 1 instead
    supervise::forward_to(if manifest.private_pid_namespace {
        procfs::first_child(pid).unwrap_or(pid)
    } else {
        pid
    })?;
    let timeout = options.timeout.unwrap_or(RESTORE_TIMEOUT);
    let abandoned = await_resume(&mut child, &stamps, Instant::now() + timeout).err();
    if abandoned.is_some() {
        // CRIU and whatever it restored so far: nothing of it may run on
        copy.stop();
        if let Err(e) = process::kill_group(pid as u32) {
            eprintln!("crac: could not kill the abandoned restore's processes (group {pid}): {e}");
        }
    } else {
        phases::report(&stamps, options.verbose);
        // Once the copy runs: a temp directory with many files makes this take a while.
        if options.log.is_none() {
            remove_leftovers(&std::env::temp_dir());
        }
        if let Some(turn) = listeners_turn {
            turn.pass_once_listening(&mut child);
        }
    }
    let status = child.wait();
    copy.ended();
    supervise::forward_to(0)?;
    let status = status.map_err(|e| Error::Io("waiting for the restored process", e))?;
    let pages = pages.finish();
    let resumed = abandoned.is_none() && phases::Stamps::read(&stamps).resumed().is_some();
    let _ = std::fs::remove_file(&stamps);
    if !resumed && !manifest.private_pid_namespace {
        supervise::reap_orphan(manifest.pid); // so that a retry finds the PID free
    }
    if let Some(why) = abandoned {
        if let Some(watch) = lazy {
            let _ = watch.finish(true);
        }
        return Err(Error::Restore {
            reason: format!("{why}; CRIU and the half-restored process were stopped"),
            log,
        });
    }
    // Why the copy was stopped, or never ran, in order of cause: damaged page data, a
    // lazy-pages server that died, CRIU.
    pages?;
    if let Some(watch) = lazy {
        watch.finish(options.log.is_some() || !resumed)?;
    }
    if !resumed {
        return Err(Error::Restore {
            reason: criu::log_digest(&log, 8),
            log,
        });
    }
    if options.log.is_none() {
        let _ = std::fs::remove_file(&log);
    }
    Ok(Ended::from(status).code())
}

/// `criu restore` of the image in `dir`, in a fresh PID namespace if it was taken in one,
/// with `tool` as its action script, stdio handed over and the image's own options.
fn criu_restore(
    criu: &Path,
    dir: &Path,
    tool: &Path,
    manifest: &Manifest,
    log: &Path,
    options: &RestoreOptions,
) -> Result<Command, Error> {
    let mut cmd = if manifest.private_pid_namespace {
        namespace::unshare(criu)
    } else {
        Command::new(criu)
    };
    cmd.arg("restore")
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(log)
        .arg(format!("-v{}", options.log_level.unwrap_or(2)))
        .args(criu::restore_options(&manifest.restore_options))
        .arg("--action-script")
        .arg(tool)
        .env(IMAGE_ENV, dir)
        .env(supervise::RESTORER_ENV, std::process::id().to_string());
    for (fd, name) in STDIO_MEMFDS.iter().enumerate() {
        cmd.arg("--inherit-fd")
            .arg(format!("fd[{fd}]:/memfd:{name}"));
    }
    Ok(cmd)
}

/// Starts CRIU (through `unshare` for a private namespace).
fn spawn(mut cmd: Command, criu: &Path, manifest: &Manifest) -> Result<Child, Error> {
    // Its own process group: a terminal's Ctrl-C reaches the process once, forwarded.
    // The forwarded signals stay blocked in CRIU and pending through its exec into
    // `__wait`, which forwards them once the process is back.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if manifest.private_pid_namespace {
        // A restorer that dies (even by SIGKILL) takes a private-namespace restore
        // down: `unshare`, then through `--kill-child` the namespace and the copy in it.
        // Not a host-namespace one: killing CRIU half way would leave the copy stuck,
        // holding its PIDs and ports (`__wait` stops that copy instead, see
        // `supervise.rs`).
        let restorer = nix::unistd::getpid();
        // SAFETY: the closure only calls prctl and getppid, which are async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // the restorer may have died before the death signal was armed
                if nix::unistd::getppid() != restorer {
                    return Err(std::io::Error::other("the restorer is gone"));
                }
                Ok(())
            });
        }
    } else {
        supervise::adopt_orphans()?;
    }
    cmd.spawn().map_err(|source| Error::File {
        action: if manifest.private_pid_namespace {
            "running `unshare` (util-linux) with"
        } else {
            "running"
        },
        path: criu.to_path_buf(),
        source,
    })
}

/// Secret environment variables were wiped before the dump: a restore must give each.
fn check_secrets_given(
    dir: &Path,
    manifest: &Manifest,
    options: &RestoreOptions,
) -> Result<(), Error> {
    match options.given.first_missing(&manifest.secret_env) {
        None => Ok(()),
        Some(name) => Err(Error::Image {
            dir: dir.to_path_buf(),
            problem: format!(
                "the secret environment variable {name} was wiped before the checkpoint and \
                 must be given again: pass --env {name} (this environment's value) or \
                 --env {name}=VALUE"
            ),
        }),
    }
}

/// Restores of an image that carries an exclusive listener take turns (a lock on the
/// image directory itself, which works on a read-only volume too) from the check that
/// nobody listens there until the copy listens: copies started at the same moment
/// cannot all pass that check.
struct ListenersTurn {
    addresses: Vec<std::net::SocketAddr>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl ListenersTurn {
    /// Waits for the turn if the image needs one, then checks the addresses are free.
    fn take(dir: &Path, manifest: &Manifest) -> Result<Option<ListenersTurn>, Error> {
        let addresses: Vec<std::net::SocketAddr> = manifest
            .listeners
            .iter()
            .filter(|l| !l.shared)
            .map(|l| l.address)
            .collect();
        let turn = if addresses.is_empty() {
            None
        } else {
            let lock = fs::lock_exclusive(dir).map_err(|source| Error::File {
                action: "locking",
                path: dir.to_path_buf(),
                source,
            })?;
            Some(ListenersTurn {
                addresses,
                _lock: lock,
            })
        };
        check_listeners_free(manifest).map_err(|problem| Error::Image {
            dir: dir.to_path_buf(),
            problem,
        })?;
        Ok(turn)
    }

    /// Ends the turn once the copy listens (or is gone, or 30 s passed).
    fn pass_once_listening(self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .addresses
            .iter()
            .all(|a| fd_info::someone_listens_on(*a))
            && child.try_wait().is_ok_and(|ended| ended.is_none())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A failed restore's log is kept for a day (its error names it).
const FAILED_LOG_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Removes what restorers that are gone (killed, or crashed) left in `temp`:
/// `crac-restore-PID.*` whose PID is not running.
fn remove_leftovers(temp: &Path) {
    for entry in std::fs::read_dir(temp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, kind)) = name
            .strip_prefix("crac-restore-")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        if !pid.bytes().all(|b| b.is_ascii_digit()) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > FAILED_LOG_KEPT));
        let path = entry.path();
        // Best effort: what cannot be removed now is tried at the next restore.
        match kind {
            "lazy" => drop(std::fs::remove_dir_all(&path)),
            "log" if !old => {}
            _ => drop(std::fs::remove_file(&path)),
        }
    }
}

/// Waits until the process resumed or CRIU ended; an error says why the restore must be
/// abandoned instead: the deadline passed, or a stop signal (Ctrl-C, `docker stop`)
/// came first. Before the process runs, a signal cannot reach it (CRIU holds it), so a
/// stop means "do not restore".
fn await_resume(child: &mut Child, stamps: &Path, deadline: Instant) -> Result<(), String> {
    const STOPS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT];
    loop {
        // first: CRIU may have ended because of the signal it was passed
        if let Some(signal) = STOPS.into_iter().find(|&s| supervise::was_received(s)) {
            return Err(format!(
                "interrupted by signal {signal} before the process resumed"
            ));
        }
        if phases::Stamps::read(stamps).resumed().is_some()
            || child.try_wait().is_ok_and(|ended| ended.is_some())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                "the process had not resumed when the restore timed out (crac \
                        restore --timeout)"
                    .into(),
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A listening socket the image carries without `SO_REUSEPORT` must not be listened on
/// already: a second copy would share it, and requests would reach one copy only.
pub(crate) fn check_listeners_free(m: &Manifest) -> Result<(), String> {
    match m
        .listeners
        .iter()
        .find(|l| !l.shared && fd_info::someone_listens_on(l.address))
    {
        None => Ok(()),
        Some(l) => Err(format!(
            "the image carries a socket listening on {} without SO_REUSEPORT, and something \
             listens there already (another copy of this image?): a second copy would share \
             that socket and only one would get requests. Close it before the checkpoint \
             (crac::tokio::Listener does, and binds again per copy with --env PORT=...), or \
             set SO_REUSEPORT on it",
            l.address
        )),
    }
}

/// Restore needs the original PID and every TID free; say who holds one.
pub(crate) fn check_ids_free(m: &Manifest) -> Result<(), Error> {
    if m.private_pid_namespace {
        return Ok(()); // restored in a fresh namespace, where they are free
    }
    for &id in std::iter::once(&m.pid).chain(&m.tids) {
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{id}/comm")) {
            return Err(Error::PidInUse {
                id,
                holder: comm.trim().to_string(),
            });
        }
    }
    Ok(())
}

/// `--action-script` mode: CRIU runs the tool with `CRTOOLS_SCRIPT_ACTION` set, for every
/// stage. Each restore stage is stamped; at `post-restore` the process is held until its
/// page data is found intact, then sent its `Restored` message.
///
/// The message is sent at `post-restore`, not `post-resume`: it waits, queued and
/// blocked, in the still-frozen process, which finds it the moment CRIU resumes it,
/// instead of one more run of this executable (about 2 ms, more while the resumed copy
/// and a lazy-pages server compete for the CPU) later. A failure to send it fails
/// `post-restore`, so CRIU kills the copy rather than resume one nobody woke.
pub fn action_script(action: &str) -> Result<(), Error> {
    if !matches!(action, "pre-restore" | "post-restore" | "post-resume") {
        return Ok(());
    }
    let dir: PathBuf = std::env::var_os(IMAGE_ENV)
        .ok_or_else(|| Error::Setting {
            setting: IMAGE_ENV,
            problem: "not set: the action script runs under crac restore only".into(),
        })?
        .into();
    // A stamp that cannot be written costs the timings, not the restore; a missing
    // `post-resume` stamp is reported as a failed restore by the restorer.
    let _ = phases::stamp(action);
    if action == "post-restore" {
        let verdict = page_check::await_verdict().map_err(|problem| Error::Damaged {
            dir: dir.clone(),
            problem,
        });
        let _ = phases::stamp(phases::PAGES_CHECKED);
        verdict?;
        return wake(&dir);
    }
    Ok(())
}

/// Queues the restored process's `Restored` message.
fn wake(dir: &Path) -> Result<(), Error> {
    let manifest = Manifest::read(dir)?;
    let pid = std::env::var("CRTOOLS_INIT_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(manifest.pid);
    signal::send(pid, manifest.waiter_tid, Message::Restored)
        .map_err(|e| Error::Io("waking the restored process", e))?;
    Ok(())
}
