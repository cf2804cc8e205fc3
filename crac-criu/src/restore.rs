//! Restore, the restorer's side: validate the image, run `criu restore`, wake the
//! restored process, forward signals, and exit with its exit code.
//!
//! CRIU is asked to (a) substitute the restorer's stdio for the image's stdio memfds,
//! (b) run this executable as its `--action-script`, which at `post-resume` sends the
//! process its `Restored` message, and (c) `--exec-cmd` this executable as `__wait`, which
//! becomes the restored process's parent and reports its real exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::criu::STDIO_MEMFDS;
use crate::manifest::Manifest;
use crate::signal::{self, Message};
use crate::{Error, config, criu, image};

/// Environment through which the action script finds the image being restored.
const IMAGE_ENV: &str = "CRAC_RESTORE_IMAGE";
/// A file the action script creates at `post-resume`: proof that CRIU restored the
/// process (its exit status alone cannot be told from the restored process's).
const RESUMED_ENV: &str = "CRAC_RESTORE_RESUMED";

/// Signals a restorer passes on to the restored process.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Where CRIU writes its restore log; default: a file in the temp directory.
    pub log: Option<PathBuf>,
    /// CRIU log verbosity (0–4), default 2.
    pub log_level: Option<u8>,
}

/// Restores the image in `dir` and waits for the restored process; returns its exit code
/// (128 + signal if it was killed). `tool` is the `crac` executable CRIU calls back.
pub fn restore(dir: &Path, tool: &Path, options: &RestoreOptions) -> Result<i32, Error> {
    let manifest = image::validate(dir)?;
    check_ids_free(&manifest)?;
    let criu = config::criu_binary().map_err(|e| Error::Config(e.0))?;
    let log = options.log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("crac-restore-{}.log", std::process::id()))
    });
    let resumed = log.with_extension("resumed");
    let _ = std::fs::remove_file(&resumed);
    let mut cmd = Command::new(criu);
    cmd.arg("restore")
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(&log)
        .arg(format!("-v{}", options.log_level.unwrap_or(2)))
        .args(&manifest.restore_options)
        .arg("--action-script")
        .arg(tool)
        .env(IMAGE_ENV, dir)
        .env(RESUMED_ENV, &resumed);
    for (fd, name) in STDIO_MEMFDS.iter().enumerate() {
        cmd.arg("--inherit-fd")
            .arg(format!("fd[{fd}]:/memfd:{name}"));
    }
    cmd.arg("--exec-cmd")
        .arg("--")
        .arg(tool)
        .arg("__wait")
        .arg(manifest.pid.to_string());

    let forwarding = Forwarding::start();
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Io("running criu restore", e))?;
    forwarding.to(child.id() as libc::pid_t);
    let status = child
        .wait()
        .map_err(|e| Error::Io("waiting for the restored process", e))?;
    if std::fs::remove_file(&resumed).is_err() {
        return Err(Error::Restore {
            reason: criu::log_digest(&log, 8),
            log,
        });
    }
    if options.log.is_none() {
        let _ = std::fs::remove_file(&log);
    }
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Restore needs the original PID and every TID free; say who holds one.
fn check_ids_free(m: &Manifest) -> Result<(), Error> {
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
/// stage; at `post-resume` the restored process is woken with its `Restored` message.
pub fn action_script(action: &str) -> Result<(), Error> {
    if action != "post-resume" {
        return Ok(());
    }
    let dir = std::env::var_os(IMAGE_ENV).ok_or_else(|| {
        Error::Config(format!(
            "{IMAGE_ENV} is not set: the action script runs under crac restore only"
        ))
    })?;
    let manifest = Manifest::read(Path::new(&dir))?;
    let pid = std::env::var("CRTOOLS_INIT_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(manifest.pid);
    if let Some(resumed) = std::env::var_os(RESUMED_ENV) {
        std::fs::write(resumed, b"").map_err(|e| Error::Io("marking the restore done", e))?;
    }
    signal::send(pid, manifest.waiter_tid, Message::Restored)
        .map_err(|e| Error::Io("waking the restored process", e))
}

/// `--exec-cmd` mode: CRIU has become this tool, parent of the restored process `pid`.
/// Forwards signals to it and returns its exit code.
pub fn wait_for(pid: libc::pid_t) -> Result<i32, Error> {
    let forwarding = Forwarding::start();
    forwarding.to(pid);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::Io("waiting for the restored process", err));
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// Passes termination and user signals on to the restored process: they are blocked in
/// the calling thread (and threads it starts later) and a thread forwards them.
struct Forwarding {
    target: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

impl Forwarding {
    fn start() -> Forwarding {
        let target = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        // SAFETY: builds and installs a signal mask for this thread.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in FORWARDED {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        let forward_to = target.clone();
        std::thread::spawn(move || {
            loop {
                let mut sig = 0;
                // SAFETY: waits on the blocked set built above.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let pid = forward_to.load(std::sync::atomic::Ordering::SeqCst);
                if pid > 0 {
                    // SAFETY: plain kill of the process we restored.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        });
        Forwarding { target }
    }

    fn to(&self, pid: libc::pid_t) {
        self.target.store(pid, std::sync::atomic::Ordering::SeqCst);
    }
}
