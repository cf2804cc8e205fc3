//! `crac run`: the container entrypoint in one command. Restore the image if there is a
//! valid one for this executable and host; otherwise start the application in a private
//! PID namespace, let it warm up, take the image at the point it declares (or on
//! request, or after a timeout), and restore it at once — so the first run behaves like
//! every later one. An invalid or foreign image is never restored blindly: it is refused,
//! or with `replace_invalid` replaced by a fresh checkpoint.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::env::{
    CHECKPOINT_TO, DROP_CAPABILITIES, ENGINE, INTERVAL, LEAVE_RUNNING, MANAGED, ON_READY,
};
use crate::image::{self, ImageRefusal, manifest::FILE_NAME};
use crate::launcher::error::LaunchError;
use crate::launcher::namespace;
use crate::launcher::request_client::{self, ANSWER_DEADLINE};
use crate::launcher::restore::{RestoreOptions, restore};
use crate::launcher::supervise::{self, Ended};
use crate::sys::{fd, privileges, process, procfs};
use crate::wire::restore_args::RestoreArgs;

/// When the first run takes its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// When the application calls `crac::ready()`.
    Ready,
    /// On `crac checkpoint PID` (the application calls `crac::checkpoint_on_request()`).
    Request,
    /// This long after start (the application calls `crac::checkpoint_on_request()`).
    Timeout(Duration),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The image directory.
    pub image: PathBuf,
    /// When the first run checkpoints.
    pub trigger: Trigger,
    /// Re-checkpoint (left running) at consistent points every this many seconds.
    pub every: Option<u64>,
    /// Replace an invalid or foreign image by a fresh checkpoint instead of refusing.
    pub replace_invalid: bool,
    /// Restore lazily (see `RestoreOptions::lazy`).
    pub lazy: bool,
    /// When the page data is hashed (see `RestoreOptions::verify_pages`).
    pub verify_pages: crate::launcher::VerifyPages,
    /// Give up a restore that has not resumed after this long (`RestoreOptions::timeout`).
    pub timeout: Option<Duration>,
    /// Environment for the application: set at start, and passed again to every
    /// restore (an image keeps the environment it was taken with).
    pub env: Vec<(String, String)>,
    /// Restore and write images that a user other than root and this one could change
    /// (`RestoreOptions::insecure_image_permissions`).
    pub insecure_image_permissions: bool,
    /// Start the application with a bounding set of the capabilities a restore-only
    /// container can grant at most (CHECKPOINT_RESTORE, SETUID, SETGID, SETPCAP): CRIU
    /// gives a restored process back the capabilities it had, and a restorer without
    /// them fails.
    pub drop_capabilities: bool,
}

/// `crac run --image FILE` of a packed image: restored from the image cache
/// (`crac restore FILE`) if it is valid for `app`, refused otherwise — a packed image is
/// never replaced, nor checkpointed to (`--replace-invalid` and `--every` need an image
/// directory).
fn run_packed(
    file: &Path,
    options: &RunOptions,
    tool: &Path,
    app: &Path,
    restore_options: &RestoreOptions,
) -> Result<i32, LaunchError> {
    if options.replace_invalid || options.every.is_some() {
        return Err(LaunchError::Setting {
            setting: "--image",
            problem: format!(
                "{} is a packed image, which crac run restores but never replaces nor \
                 checkpoints to: drop --replace-invalid and --every, or unpack it to a \
                 directory (crac unpack) and run with that",
                file.display()
            ),
        });
    }
    // kept from the cache's eviction until the restore ends
    let image = crate::launcher::pack::image_dir(file)?;
    let dir = image.dir();
    check_ownership(dir, options.insecure_image_permissions)?;
    usable(dir, app).map_err(|problem| ImageRefusal::Unrestorable {
        dir: file.into(),
        problem,
    })?;
    super::with_privilege_advice(restore(dir, tool, restore_options))
}

/// Runs `app` with `args` as `options` say; returns the exit code to exit with.
pub fn run(
    options: &RunOptions,
    tool: &Path,
    app: &OsStr,
    args: &[OsString],
) -> Result<i32, LaunchError> {
    let app = resolve(app)?;
    // A key that cannot be used is this host's problem, not the image's: said before an
    // image would be found invalid, and replaced, for want of it.
    crate::launcher::key::init()?;
    let image = std::path::absolute(&options.image).map_err(|e| LaunchError::Setting {
        setting: "--image",
        problem: format!("{}: {e}", options.image.display()),
    })?;
    // A restored copy receives this run's arguments and environment (and interval) as
    // restore-time ones: `Restore::args`, `Restore::env`.
    let mut env = options.env.clone();
    env.push((INTERVAL.to_string(), options.every.unwrap_or(0).to_string()));
    let given = RestoreArgs {
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        env,
        ..RestoreArgs::default()
    };
    let restore_options = RestoreOptions {
        given,
        lazy: options.lazy,
        timeout: options.timeout,
        verify_pages: options.verify_pages,
        insecure_image_permissions: options.insecure_image_permissions,
        ..Default::default()
    };
    if crate::image::pack::cache::is_packed(&image) {
        return run_packed(&image, options, tool, &app, &restore_options);
    }
    // Whoever could swap the image would have it restored: refused, never replaced.
    check_ownership(&image, options.insecure_image_permissions)?;
    let mut replacing = false;
    if image.join(FILE_NAME).exists() {
        // The page data is checked while CRIU restores: damage found there is an
        // invalid image too.
        let restored =
            usable(&image, &app).and_then(|()| match restore(&image, tool, &restore_options) {
                Err(LaunchError::Image(e @ ImageRefusal::Damaged { .. })) => {
                    Err(about_the_image(e))
                }
                other => Ok(other),
            });
        match restored {
            Ok(outcome) => return super::with_privilege_advice(outcome),
            Err(problem) if options.replace_invalid => {
                eprintln!(
                    "crac: replacing the image in {}: {problem}",
                    image.display()
                );
                std::fs::remove_dir_all(&image)
                    .map_err(LaunchError::io("removing the old image"))?;
                replacing = true;
            }
            Err(problem) => {
                return Err(ImageRefusal::Unrestorable {
                    dir: image,
                    problem: format!(
                        "{problem}; pass --replace-invalid to take a fresh checkpoint instead"
                    ),
                }
                .into());
            }
        }
    }
    image::check_target(&image).map_err(LaunchError::ImageTarget)?;
    // Certain failures, said before anything starts: `unshare` needs CAP_SYS_ADMIN (or,
    // rootless, user namespaces), and the dump cannot get through a seccomp filter.
    let action = "crac run's first start (a private PID namespace, then a checkpoint)";
    let problem = if privileges::rootless() {
        privileges::rootless_problem(action)
            .or_else(|| privileges::problem(action, &[], privileges::under_seccomp_filter()))
    } else {
        privileges::problem(
            action,
            &privileges::missing(privileges::TO_CHECKPOINT),
            privileges::under_seccomp_filter(),
        )
    };
    if let Some(problem) = problem {
        return Err(LaunchError::Privileges { problem });
    }

    let started = SystemTime::now();
    let ended = first_run(options, &image, tool, &app, args, replacing)?;
    // The dump stops the process with SIGKILL; a crash after a periodic image also ends
    // in a signal. A process that exited on its own, or that was stopped by a signal
    // `crac run` passed on (Ctrl-C, `docker stop`), is not brought back.
    let killed = matches!(ended, Ended::Killed(signal) if !supervise::was_forwarded(signal));
    let status = ended.code();
    let fresh = image::published_since(&image, started);
    if killed && fresh {
        eprintln!("crac: image written to {}; restoring it", image.display());
        super::with_privilege_advice(restore(&image, tool, &restore_options))
    } else {
        if !fresh {
            eprintln!(
                "crac: {} exited (status {status}) without taking an image in {}",
                app.display(),
                image.display()
            );
        }
        Ok(status)
    }
}

/// Refuses an image (or, before the first run, the place for one) that a user other than
/// root and this one could change or swap.
fn check_ownership(image: &Path, insecure: bool) -> Result<(), LaunchError> {
    image::check_ownership(image, insecure).map_err(|problem| {
        if image.exists() {
            ImageRefusal::Unrestorable {
                dir: image.to_path_buf(),
                problem,
            }
            .into()
        } else {
            LaunchError::Setting {
                setting: "--image",
                problem: format!(
                    "crac run would write its image to {}, but {problem}",
                    image.display()
                ),
            }
        }
    })
}

/// A refusal without its "cannot restore DIR" opening: the caller says which image.
fn about_the_image(e: ImageRefusal) -> String {
    match e {
        ImageRefusal::Unrestorable { problem, .. } => problem,
        ImageRefusal::Damaged { ref dir, .. } => {
            let opening = format!("cannot restore {}: ", dir.display());
            let text = e.to_string();
            text.strip_prefix(&opening).unwrap_or(&text).to_string()
        }
        other => other.to_string(),
    }
}

/// An image exists: can it be restored here, and is it this application's?
fn usable(dir: &Path, app: &Path) -> Result<(), String> {
    // The problem alone: the caller says which image it is about.
    let manifest = image::validate(dir, image::Contents::AllButPages).map_err(about_the_image)?;
    if manifest.executable != app {
        return Err(format!(
            "it was taken from {}, not {}",
            manifest.executable.display(),
            app.display()
        ));
    }
    if !manifest.private_pid_namespace {
        return Err("it was not taken under crac run (it needs its original PID)".into());
    }
    Ok(())
}

/// Starts the application to take the image; returns how it ended.
fn first_run(
    options: &RunOptions,
    image: &Path,
    tool: &Path,
    app: &Path,
    args: &[OsString],
    replacing: bool,
) -> Result<Ended, LaunchError> {
    let mut cmd = namespace::launch(tool, app.as_os_str(), args.iter().map(OsString::as_os_str));
    cmd.env(CHECKPOINT_TO, image)
        .env(MANAGED, "1")
        .env(ENGINE, "criu")
        .env_remove(LEAVE_RUNNING)
        .envs(options.env.iter().map(|(k, v)| (k, v)));
    if options.drop_capabilities {
        cmd.env(DROP_CAPABILITIES, "1");
    }
    if options.trigger == Trigger::Ready {
        cmd.env(ON_READY, "1");
    }
    if let Some(every) = options.every {
        cmd.env(INTERVAL, every.to_string());
    }
    // `__init` reports on fd 3 whether the application exited or was killed.
    const REPORT_FD: i32 = 3;
    let (report, report_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| LaunchError::io("creating a pipe")(e.into()))?;
    let writer = report_writer.as_raw_fd();
    cmd.env(namespace::REPORT_FD_ENV, REPORT_FD.to_string());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (close_range, dup2/fcntl, prctl). As an entrypoint, crac
    // run hands the namespace stdio and the report pipe only, and takes the namespace
    // down if it dies itself.
    unsafe {
        cmd.pre_exec(move || {
            fd::close_on_exec_beyond_stdio()?;
            fd::inherit_as(writer, REPORT_FD)?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(LaunchError::io("running `unshare` (util-linux)"))?;
    drop(report_writer);
    let started = procfs::first_child(child.id() as libc::pid_t)
        .and_then(|init| Some((init, procfs::first_child(init)?)));
    if let Some((init, app_pid)) = started {
        supervise::forward_to(init)?;
        announce(options, image, app, app_pid, replacing);
    }
    let status = child.wait();
    supervise::forward_to(0)?;
    let status = status.map_err(LaunchError::io("waiting for the application"))?;
    let mut reported = String::new();
    let _ = std::fs::File::from(report).read_to_string(&mut reported);
    Ok(match reported.split_once(' ') {
        Some(("exited", code)) => code.parse().map_or(Ended::from(status), Ended::Exited),
        Some(("killed", signal)) => signal.parse().map_or(Ended::from(status), Ended::Killed),
        _ => Ended::from(status),
    })
}

/// `replacing`: an invalid image was removed first (said in the same words as then).
fn announce(options: &RunOptions, image: &Path, app: &Path, app_pid: libc::pid_t, replacing: bool) {
    let situation = if replacing {
        "replacing the image in"
    } else {
        "no image in"
    };
    let (image, app) = (image.display(), app.display());
    match options.trigger {
        Trigger::Ready => eprintln!(
            "crac: {situation} {image}: started {app} (PID {app_pid}); it is checkpointed when it calls crac::ready()",
        ),
        Trigger::Request => eprintln!(
            "crac: {situation} {image}: started {app} (PID {app_pid}); checkpoint it with `crac checkpoint {app_pid}`",
        ),
        Trigger::Timeout(after) => {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                if procfs::alive(app_pid)
                    && let Err(e) = request_client::send(app_pid, ANSWER_DEADLINE)
                {
                    eprintln!("crac: the timed checkpoint failed: {e}");
                }
            });
        }
    }
}

/// `app` as an absolute path, searched in `PATH` when it has no slash.
fn resolve(app: &OsStr) -> Result<PathBuf, LaunchError> {
    let path = Path::new(app);
    let found = if path.components().count() > 1 {
        Some(path.to_path_buf())
    } else {
        process::find_program(path, &[])
    };
    found
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| LaunchError::ProgramNotFound {
            program: path.to_path_buf(),
        })
}
