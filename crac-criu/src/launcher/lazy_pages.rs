//! Lazy restore (`crac restore --lazy`): CRIU restores everything but the memory, the
//! process runs at once, and a `criu lazy-pages` server fills its memory through
//! userfaultfd — a page on first touch, the rest in the background — so the time to the
//! first instruction no longer grows with the image.
//!
//! The danger is a server that dies before the process has all its memory: the kernel
//! then resolves the process's next fault on a missing page with a zero page, and its
//! memory is silently wrong. So the server is watched: if it ends with an error or a
//! signal, the copy is stopped at once and the restore fails naming the server.

use std::io::Read as _;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::launcher::error::LaunchError;
use crate::launcher::supervise::Ended;
use crate::sys::{fd, process};
use crate::wire::restore_args::{self, RestoreArgs};

/// The fd on which the server writes a byte once it listens (`criu --status-fd`).
const STATUS_FD: i32 = 3;

/// A running `criu lazy-pages` server for one restore; killed if dropped before it is
/// watched (a restore that failed before CRIU ran).
pub(crate) struct LazyPages {
    server: Option<Child>,
    /// The read end of the server's status pipe.
    status: Option<std::fs::File>,
    work_dir: PathBuf,
    log: PathBuf,
}

impl LazyPages {
    /// Starts the server for the image in `dir`, with a private work directory
    /// `work_dir` (which CRIU's restore must share: the server's socket is there).
    /// Started before the image is validated, so that its start (a few ms) overlaps
    /// the validation; [`LazyPages::listening`] waits for it. The variables `given` to
    /// the copy are kept out of its environment (see [`restore_args::keep_out_of`]).
    pub(crate) fn start(
        criu: &Path,
        dir: &Path,
        work_dir: PathBuf,
        log: PathBuf,
        log_level: u8,
        given: &RestoreArgs,
    ) -> Result<LazyPages, LaunchError> {
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&work_dir)
            .map_err(|source| LaunchError::File {
                action: "creating",
                path: work_dir.clone(),
                source,
            })?;
        // Its socket file exists from bind(), before listen(): a restore connecting in
        // between is refused. CRIU says on a pipe when it listens.
        let (status, status_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| LaunchError::io("creating a pipe")(e.into()))?;
        let writer = status_writer.as_raw_fd();
        let mut cmd = Command::new(criu);
        restore_args::keep_out_of(&mut cmd, given);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // dup2/fcntl, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || fd::inherit_as(writer, STATUS_FD));
        }
        let server = cmd
            .arg("lazy-pages")
            .arg("--status-fd")
            .arg(STATUS_FD.to_string())
            .arg("-D")
            .arg(dir)
            .arg("-W")
            .arg(&work_dir)
            .arg("-o")
            .arg(&log)
            .arg(format!("-v{log_level}"))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| LaunchError::File {
                action: "running",
                path: criu.to_path_buf(),
                source,
            })?;
        // the server's copy only: its end of the pipe closes with it
        drop(status_writer);
        Ok(LazyPages {
            server: Some(server),
            status: Some(status.into()),
            work_dir,
            log,
        })
    }

    /// Waits until the server listens (CRIU's restore fails if it connects earlier).
    pub(crate) fn listening(&mut self) -> Result<(), LaunchError> {
        let mut status = self.status.take().expect("waited for once");
        let mut byte = [0u8; 1];
        let ready = nix::poll::poll(
            &mut [nix::poll::PollFd::new(
                status.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )],
            nix::poll::PollTimeout::from(10_000u16),
        );
        // one byte: listening; end of file: the server ended first
        if matches!(ready, Ok(n) if n > 0) && matches!(status.read(&mut byte), Ok(1)) {
            return Ok(());
        }
        let server = self.server.as_mut().expect("not yet watched");
        let ended = if matches!(ready, Ok(0)) {
            None
        } else {
            server.wait().ok()
        };
        Err(LaunchError::Restore {
            reason: format!(
                "criu lazy-pages {} before it listened\n{}",
                ended.map_or("did not start in 10 s".into(), describe),
                crate::sys::criu::log_digest(&self.log, 8)
            ),
            log: self.log.clone(),
        })
    }

    /// Makes `criu restore` leave the memory to this server.
    pub(crate) fn serve(&self, restore: &mut Command) {
        restore.arg("--lazy-pages").arg("-W").arg(&self.work_dir);
    }

    /// Watches the server from now on: if it fails, `stop_copy` runs.
    pub(crate) fn watch(mut self, stop_copy: CopyStopper) -> Watch {
        let mut server = self.server.take().expect("watched once");
        let pid = server.id();
        let ended_by_us = Arc::new(AtomicBool::new(false));
        let ours = Arc::clone(&ended_by_us);
        let thread = std::thread::spawn(move || {
            let ended = server.wait().map_err(|e| ServerFailure {
                how: e.to_string(),
                after_the_copy: false,
            })?;
            if ended.success() || ours.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Whether the copy had ended is read after the wait returned, which may be
            // late: `Watch::finish` weighs it against whether the copy ran at all.
            let after_the_copy = stop_copy.is_done();
            stop_copy.stop();
            Err(ServerFailure {
                how: describe(ended),
                after_the_copy,
            })
        });
        Watch {
            thread,
            ended_by_us,
            pid,
            work_dir: std::mem::take(&mut self.work_dir),
            log: std::mem::take(&mut self.log),
        }
    }
}

impl Drop for LazyPages {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
            let _ = std::fs::remove_dir_all(&self.work_dir);
        }
    }
}

/// "was killed by signal 9", "exited with status 1".
fn describe(status: std::process::ExitStatus) -> String {
    match Ended::from(status) {
        Ended::Killed(signal) => format!("was killed by signal {signal}"),
        Ended::Exited(code) => format!("exited with status {code}"),
    }
}

/// How the server failed, as its watcher saw it.
struct ServerFailure {
    how: String,
    /// The copy had ended when the watcher looked.
    after_the_copy: bool,
}

/// The server, watched.
pub(crate) struct Watch {
    thread: JoinHandle<Result<(), ServerFailure>>,
    /// Set before `finish` ends a server that outlived the copy: not a failure.
    ended_by_us: Arc<AtomicBool>,
    pid: u32,
    work_dir: PathBuf,
    log: PathBuf,
}

impl Watch {
    /// Once the copy has ended: gives the server a moment to finish on its own, ends
    /// it otherwise, and says whether it failed while it mattered — while the copy ran,
    /// or at all when the copy never ran (`resumed` false: CRIU failing because its
    /// server died is the server's failure, however late its watcher saw it).
    /// `keep_log` keeps its log (the user asked for logs, or the restore failed).
    pub(crate) fn finish(self, keep_log: bool, resumed: bool) -> Result<(), LaunchError> {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !self.thread.is_finished() {
            self.ended_by_us.store(true, Ordering::SeqCst);
            // Our own child, not yet reaped (its thread waits): the pid is still its.
            if let Err(e) = process::kill(self.pid) {
                eprintln!(
                    "crac: could not stop the lazy-pages server (pid {}): {e}",
                    self.pid
                );
            }
        }
        let outcome = self.thread.join().unwrap_or_else(|_| {
            Err(ServerFailure {
                how: "its watcher panicked".into(),
                after_the_copy: false,
            })
        });
        let _ = std::fs::remove_dir_all(&self.work_dir);
        let outcome = match outcome {
            // it ended after a copy that ran to its end: nothing it served was missed
            Err(ServerFailure {
                after_the_copy: true,
                ..
            }) if resumed => Ok(()),
            other => other,
        };
        match outcome {
            Ok(()) => {
                if !keep_log {
                    let _ = std::fs::remove_file(&self.log);
                }
                Ok(())
            }
            Err(ServerFailure { how, .. }) => Err(LaunchError::Restore {
                reason: format!(
                    "the lazy-pages server (criu lazy-pages) {how} before the process had all \
                     its memory; the process was stopped, as its memory would have been \
                     incomplete. Restore again (without --lazy to read all memory up front)\n{}",
                    crate::sys::criu::log_digest(&self.log, 8)
                ),
                log: self.log,
            }),
        }
    }
}

/// Stops a restored copy whose memory cannot be trusted (killed outright: it must not
/// run another instruction), unless it has already ended.
#[derive(Debug, Clone)]
pub(crate) struct CopyStopper {
    /// Whose SIGKILL ends the copy: the task itself in the host namespace, `unshare`
    /// (and with it the whole private namespace) otherwise.
    target: libc::pid_t,
    done: Arc<AtomicBool>,
}

impl CopyStopper {
    pub(crate) fn new(target: libc::pid_t) -> CopyStopper {
        CopyStopper {
            target,
            done: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The copy has ended: its PID may belong to someone else from now on.
    pub(crate) fn ended(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub(crate) fn stop(&self) {
        if !self.is_done() {
            // The copy, or its namespace's `unshare`.
            if let Err(e) = process::kill(self.target as u32) {
                eprintln!(
                    "crac: could not stop the restored copy (pid {}): {e}",
                    self.target
                );
            }
        }
    }
}
