//! CRIU started on an admitted image: its command line, the lazy-pages server it reads
//! the memory from (`--lazy`), the page check beside it, and the copy's signals
//! forwarded.

use std::path::Path;
use std::process::{Child, Command};

use crate::image::verified_pages::Intact;
use crate::image::{ImageRefusal, manifest::Manifest};
use crate::launcher::action_script;
use crate::launcher::error::LaunchError;
use crate::launcher::lazy_pages::{CopyStopper, LazyPages, Watch};
use crate::launcher::namespace;
use crate::launcher::page_check::{Hold, PageCheck};
use crate::launcher::phases;
use crate::launcher::restore::options::Job;
use crate::launcher::supervise;
use crate::sys::{criu, privileges, procfs};
use crate::wire::STDIO_MEMFDS;
use crate::wire::restore_args::{self, RestoreArgs};

/// CRIU running, and what runs beside it.
pub(super) struct Started {
    /// CRIU, or `unshare` for a private PID namespace; `__wait` once CRIU is done.
    pub(super) criu: Child,
    /// Stops the copy (before it runs another instruction) when it must not go on.
    pub(super) copy: CopyStopper,
    /// The lazy-pages server, watched, in a lazy restore.
    pub(super) lazy: Option<Watch>,
    pub(super) pages: PageCheck,
}

/// Starts the lazy-pages server of a `--lazy` restore (if CRIU is found: if not, the
/// restore fails on that later, by name).
pub(super) fn start_lazy_pages(job: &Job<'_>) -> Result<Option<LazyPages>, LaunchError> {
    if job.options.lazy && privileges::rootless() {
        // Measured with CRIU 4.2.1: `criu lazy-pages` wants CAP_SYS_ADMIN or
        // CAP_CHECKPOINT_RESTORE, and stops after its kernel probe even in a user
        // namespace with `--unprivileged` and vm.unprivileged_userfaultfd=1.
        return Err(LaunchError::Setting {
            setting: "--lazy",
            problem: "a lazy restore needs root: CRIU's lazy-pages server does not run \
                      unprivileged (rootless mode); restore without --lazy"
                .into(),
        });
    }
    match (job.options.lazy, criu::criu_binary()) {
        (true, Ok(criu)) => {
            let work_dir = job.files.lazy_work_dir();
            let lazy_log = job.log.with_extension("lazy.log");
            let given = &job.options.given;
            let server =
                LazyPages::start(&criu, &job.dir, work_dir, lazy_log, job.log_level(), given)?;
            Ok(Some(server))
        }
        _ => Ok(None),
    }
}

/// Starts `criu restore` with its page check, and forwards signals to what it restores.
pub(super) fn start(
    job: &Job<'_>,
    manifest: &Manifest,
    lazy: Option<LazyPages>,
) -> Result<Started, LaunchError> {
    let criu = criu::criu_binary()?;
    let mut cmd = criu_restore(&criu, job, manifest)?;
    let lazy = match lazy {
        Some(mut server) => {
            server.listening()?;
            job.stamp(phases::LAZY_LISTENING);
            server.serve(&mut cmd);
            Some(server)
        }
        None => None,
    };
    // last: CRIU takes everything after it as the command
    cmd.arg("--exec-cmd")
        .arg("--")
        .arg(job.tool)
        .arg("__wait")
        .arg(manifest.pid.to_string());
    let checked = stamp_pages_checked(job);
    // A full restore holds the copy until its page data is checked; a lazy one checks it
    // once the copy runs (below).
    let held = if lazy.is_none() {
        let hold = Hold::Until {
            verdict: job.files.verdict(),
            criu: &mut cmd,
        };
        let mode = job.options.verify_pages;
        Some(PageCheck::start(
            &job.dir,
            manifest,
            mode,
            hold,
            checked.clone(),
        )?)
    } else {
        None
    };
    let child = spawn(cmd, &criu, manifest)?;
    let pid = child.id() as libc::pid_t;
    let copy = CopyStopper::new(if in_own_namespace(manifest) {
        pid
    } else {
        manifest.pid
    });
    let lazy = lazy.map(|server| server.watch(copy.clone()));
    let pages = match held {
        Some(check) => check,
        None => {
            let copy = copy.clone();
            let stop_if_damaged = move |outcome: &Result<Intact, ImageRefusal>| {
                checked(outcome);
                if outcome.is_err() {
                    copy.stop();
                }
            };
            let mode = job.options.verify_pages;
            PageCheck::start(&job.dir, manifest, mode, Hold::No, stop_if_damaged)?
        }
    };
    // `unshare` does not pass signals on: send them to the namespace's PID 1 instead
    supervise::forward_to(if in_own_namespace(manifest) {
        procfs::first_child(pid).unwrap_or(pid)
    } else {
        pid
    })?;
    Ok(Started {
        criu: child,
        copy,
        lazy,
        pages,
    })
}

/// `criu restore` of the image, in a fresh PID namespace if it was taken in one, with
/// the `crac` executable as its action script, stdio handed over, the image's own
/// options, and the phase stamps and restore-time arguments passed on.
fn criu_restore(criu: &Path, job: &Job<'_>, manifest: &Manifest) -> Result<Command, LaunchError> {
    let (mut cmd, clocks_kept) = if in_own_namespace(manifest) {
        let (cmd, clocks_kept) = namespace::unshare_to_restore(criu, &job.dir);
        if !clocks_kept {
            eprintln!(
                "crac: warning: the restored process's monotonic clock (Instant) counts the \
                 time spent in the image: no time namespace could keep it (see `crac doctor`)"
            );
        }
        (cmd, clocks_kept)
    } else {
        // `--unprivileged` (restore-only, below) makes no time namespace
        let clocks_kept = !privileges::unprivileged_criu();
        if !clocks_kept {
            eprintln!(
                "crac: warning: the restored process's monotonic clock (Instant) counts the \
                 time spent in the image: a restore-only container cannot make a time \
                 namespace (see `crac doctor`)"
            );
        }
        (Command::new(criu), clocks_kept)
    };
    restore_args::keep_out_of(&mut cmd, &job.options.given);
    cmd.arg("restore")
        .arg("-D")
        .arg(&job.dir)
        .arg("-o")
        .arg(&job.log)
        .arg(format!("-v{}", job.log_level()))
        .args(criu::restore_options(&manifest.restore_options));
    if privileges::unprivileged_criu() {
        // Rootless or restore-only: CRIU skips what needs privileges it lacks (socket
        // buffer sizes beyond the limits, the time namespace, TUN devices).
        cmd.arg("--unprivileged");
    }
    action_script::pass_to(&mut cmd, job.tool, &job.dir);
    cmd.env(supervise::RESTORER_ENV, std::process::id().to_string());
    for (fd, name) in STDIO_MEMFDS.iter().enumerate() {
        cmd.arg("--inherit-fd")
            .arg(format!("fd[{fd}]:/memfd:{name}"));
    }
    phases::pass_to(&mut cmd, &job.stamps, job.began);
    let given = RestoreArgs {
        began: Some(job.began),
        monotonic_time_kept: Some(clocks_kept),
        ..job.options.given.clone()
    };
    restore_args::pass_to(&mut cmd, &given)
        .map_err(LaunchError::io("passing the restore-time arguments"))?;
    Ok(cmd)
}

/// Whether CRIU runs as PID 1 of a fresh PID namespace: for an image taken in one, but
/// in a restore-only container, which cannot make one, in the container's own (where
/// crac is PID 1 and the image's PIDs are free), as a host-namespace image is restored.
fn in_own_namespace(manifest: &Manifest) -> bool {
    manifest.private_pid_namespace && !privileges::restore_only()
}

/// Stamps the end of the page check: hashed, or found recorded intact.
fn stamp_pages_checked(
    job: &Job<'_>,
) -> impl Fn(&Result<Intact, ImageRefusal>) + Clone + Send + 'static {
    let (stamps, began) = (job.stamps.clone(), job.began);
    move |outcome: &Result<Intact, ImageRefusal>| {
        let stage = match outcome {
            Ok(Intact::Recorded) => phases::PAGES_RECORDED,
            _ => phases::PAGES_HASHED,
        };
        drop(phases::stamp_at(&stamps, began, stage))
    }
}

/// Starts CRIU (through `unshare` for a private namespace).
fn spawn(mut cmd: Command, criu: &Path, manifest: &Manifest) -> Result<Child, LaunchError> {
    // Its own process group: a terminal's Ctrl-C reaches the process once, forwarded.
    // The forwarded signals stay blocked in CRIU and pending through its exec into
    // `__wait`, which forwards them once the process is back.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // CRIU writes `stats-restore` into the image directory: private, as the rest of the
    // image. The copy gets back its own umask, which CRIU restores from the image.
    // SAFETY: the closure only calls umask, which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            Ok(())
        });
    }
    if in_own_namespace(manifest) {
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
    cmd.spawn().map_err(|source| LaunchError::File {
        action: if in_own_namespace(manifest) {
            "running `unshare` (util-linux) with"
        } else {
            "running"
        },
        path: criu.to_path_buf(),
        source,
    })
}
