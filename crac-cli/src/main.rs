//! `crac`: run a service from its image (`crac run`), restore an image (`crac restore`),
//! ask a running process to checkpoint itself (`crac checkpoint`), describe an image
//! (`crac inspect`), make and show the key images are sealed with (`crac key`), say what
//! this host allows (`crac doctor`), make an image one file and back (`crac pack`,
//! `crac unpack`). A thin shell over `crac_criu`'s launcher; see `crac --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use crac_criu::launcher::request_client::{self, ANSWER_DEADLINE, Answer};
use crac_criu::launcher::restore::{self, RestoreOptions};
use crac_criu::launcher::run::{self, RunOptions, Trigger};
use crac_criu::launcher::{
    LaunchError, RestoreArgs, VerifyPages, doctor, inspect, inspect_packed, key, namespace, pack,
    wait_for,
};
use crac_criu::role::{self, Role};

#[derive(Parser)]
#[command(
    name = "crac",
    version,
    about = "Coordinated Restore at Checkpoint for Rust",
    after_long_help = crac_criu::environment_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Restore the image in DIR, wait for the restored process, exit with its exit code.
    Restore {
        /// The image directory (what CRAC_CHECKPOINT_TO named at checkpoint), or a packed
        /// image (`crac pack`), unpacked once per host into the image cache
        /// (CRAC_IMAGE_CACHE) and restored from there.
        dir: PathBuf,
        /// Write CRIU's restore log here (default: in a private directory of the restore's in
        /// the temp directory, kept a day when the restore fails).
        #[arg(long)]
        log: Option<PathBuf>,
        /// CRIU log verbosity, 0–4.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=4))]
        log_level: Option<u8>,
        /// Print how long each phase of the restore took, once the process runs.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        how: HowToRestore,
        /// New arguments for the restored process (crac::Restore::args).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Restore the image in --image if it is valid for APP on this host; otherwise start
    /// APP in a private PID namespace, checkpoint it when it is ready, and restore it at
    /// once. The container entrypoint in one command.
    Run {
        /// The image directory, or a packed image (`crac pack`): restored from the image
        /// cache as `crac restore FILE` does, never replaced nor checkpointed to.
        #[arg(long)]
        image: PathBuf,
        /// When the first run checkpoints: `ready` (the app calls crac::ready()),
        /// `request` (crac checkpoint PID), or `timeout=SECS`.
        #[arg(long, default_value = "ready", value_parser = parse_trigger)]
        on: Trigger,
        /// Also re-checkpoint every SECS seconds, left running, when the app reaches
        /// crac::at_consistent_point().
        #[arg(long, value_name = "SECS")]
        every: Option<u64>,
        /// Replace an invalid or foreign image by a fresh checkpoint instead of refusing.
        #[arg(long)]
        replace_invalid: bool,
        /// Start APP with no capabilities beyond CHECKPOINT_RESTORE, SETUID, SETGID and
        /// SETPCAP (its bounding set), so that a restore-only container (those four
        /// capabilities, no SYS_ADMIN, the default seccomp profile) can restore its image.
        #[arg(long)]
        drop_capabilities: bool,
        #[command(flatten)]
        how: HowToRestore,
        /// The application and its arguments.
        #[arg(last = true, required = true)]
        app: Vec<std::ffi::OsString>,
    },
    /// Ask the running process PID (which called crac::checkpoint_on_request) to
    /// checkpoint itself, and report the outcome.
    Checkpoint {
        pid: i32,
        /// Give up waiting for the outcome after SECS seconds (default 300).
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
    /// Describe the image in DIR and say whether it can be restored on this host
    /// (exit status 0 if it can, 1 if not). Given a packed image (`crac pack`), describe
    /// it from its header and sealed manifest without unpacking it: what it holds, the
    /// key it was sealed with, whether it is encrypted, and what this host must match
    /// (key, CPU features, CRIU, kernel, executable, heap segment paths).
    Inspect {
        /// The image directory, or a packed image.
        #[arg(value_name = "DIR|FILE")]
        dir: PathBuf,
        /// The age identity file that decrypts an encrypted packed image's head (default:
        /// CRAC_PACK_IDENTITY); without one, only that it is encrypted is shown.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Say whether a restore with --insecure-image-permissions would proceed.
        #[arg(long)]
        insecure_image_permissions: bool,
        /// Give up checking the image after SECS seconds (default 300): it is then
        /// reported as not known to be restorable.
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
    /// Pack the image in DIR (its files and heap segments, checked against its sealed
    /// manifest) into one compressed file, for `crac unpack` on this or another host
    /// holding the same image key.
    Pack(PackArgs),
    /// Unpack FILE (from `crac pack`) to the image directory DIR, which must not exist or
    /// be empty, and its heap segments to the absolute paths its manifest records, which
    /// must be free or hold the same files. Nothing is placed unless every byte is found
    /// intact and the manifest sealed with this host's key.
    Unpack(UnpackArgs),
    /// The key every image is sealed with at checkpoint and checked with at restore
    /// (CRAC_IMAGE_KEY, else /var/lib/crac/image.key for root): an image restores only
    /// where its key is. To restore on several hosts, install the same key file on each
    /// (mode 0600, or a mounted secret, with CRAC_IMAGE_KEY pointing at it) and compare
    /// `crac key show`.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Check what this host allows crac to do, one line a check with what to do about
    /// each failure: CRIU, root or rootless mode (an ordinary user goes through a user
    /// namespace), capabilities, namespaces, the image key, and whether the image in DIR
    /// can be restored here — or the packed image FILE: its key, CPU features, CRIU,
    /// kernel, executable and heap segment paths against this host, each miss with what
    /// to do. Exit status 0 when the mode in use works, 1 otherwise.
    Doctor {
        /// An image directory or a packed image to check too.
        #[arg(value_name = "DIR|FILE")]
        dir: Option<PathBuf>,
        /// The age identity file that decrypts an encrypted packed image's head (default:
        /// CRAC_PACK_IDENTITY).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// CRIU's --exec-cmd: become the restored process's parent (internal).
    #[command(name = "__wait", hide = true)]
    Wait { pid: i32 },
    /// PID 1 of a private PID namespace: run APP as PID 2 (internal).
    #[command(name = "__init", hide = true)]
    Init {
        app: std::ffi::OsString,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `crac pack`'s arguments.
#[derive(Args)]
struct PackArgs {
    dir: PathBuf,
    /// The packed file to write (replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// zstd's compression level, 1–19: higher packs smaller and slower
    /// (docs/benchmarks.md).
    #[arg(long, default_value_t = crac_criu::launcher::pack::LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// Encrypt the packed file with age to the public keys (`age1…` lines, as
    /// `age-keygen` prints) in this file: unpacking it then needs a matching identity.
    #[arg(long, value_name = "RECIPIENTS")]
    encrypt_to: Option<PathBuf>,
}

/// `crac unpack`'s arguments.
#[derive(Args)]
struct UnpackArgs {
    file: PathBuf,
    /// The image directory to make.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// The age identity file (`AGE-SECRET-KEY-1…` lines) that decrypts an encrypted
    /// FILE (default: CRAC_PACK_IDENTITY).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeyAction {
    /// Make this host's key if there is none (a checkpoint makes it too); print its id
    /// and file.
    Init,
    /// Print the id and file of this host's key.
    Show,
}

/// How a restore runs: the options `crac restore` and `crac run` share.
#[derive(Args)]
struct HowToRestore {
    /// Run the process before its memory is read: a `criu lazy-pages` server fills it
    /// on first touch and in the background (start time independent of image size).
    #[arg(long)]
    lazy: bool,
    /// `cached` (default): hash the page data unless an earlier restore found these
    /// very files (same inode, size, modification and change times) intact;
    /// `always`: hash it at every restore.
    #[arg(long, value_name = "WHEN", default_value = "cached", value_parser = parse_verify_pages)]
    verify_pages: VerifyPages,
    /// Give up (stopping CRIU and the half-restored process) if the process has not
    /// resumed after SECS seconds (default 300).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    /// Set K=V in the application's environment (`crac run`: at start and again at every
    /// restore; `crac restore`: before the after_restore hooks run); K alone passes this
    /// environment's K (for secrets: off the command line).
    #[arg(long = "env", value_name = "K=V|K", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Restore even an image that a user other than root and you owns or can write (its
    /// directory, a file in it, a directory above it), which is refused otherwise: its
    /// owner could make it run anything with your privileges. Also
    /// CRAC_INSECURE_IMAGE_PERMISSIONS=1.
    #[arg(long)]
    insecure_image_permissions: bool,
}

fn main() -> ExitCode {
    // The dump roles never reach `main`: crac-criu's constructor takes them.
    if let Role::RestoreActionScript { action } = role::of_this_process() {
        return report(crac_criu::launcher::action_script(&action).map(|()| 0));
    }
    let cli = Cli::parse();
    let image = match &cli.command {
        Command::Restore { dir, .. } => Some(dir),
        Command::Run { image, .. } => Some(image),
        _ => None,
    };
    if let Some(image) = image
        // SAFETY: first thing in `main`, before any thread is started.
        && let Err(e) = unsafe { namespace::keep_image_pids_free(image) }
    {
        return report(Err(e));
    }
    report(match cli.command {
        Command::Restore {
            dir,
            log,
            log_level,
            verbose,
            how,
            args,
        } => {
            let options = RestoreOptions {
                log,
                log_level,
                verbose,
                lazy: how.lazy,
                verify_pages: how.verify_pages,
                timeout: how.timeout,
                insecure_image_permissions: how.insecure_image_permissions,
                given: RestoreArgs {
                    args,
                    env: how.env,
                    ..RestoreArgs::default()
                },
            };
            // the image (a packed one's cache entry) is kept until the restore ends
            std::env::current_exe()
                .map_err(LaunchError::io("locating the crac executable"))
                .and_then(|tool| Ok((tool, pack::image_dir(&dir)?)))
                .and_then(|(tool, image)| {
                    crac_criu::launcher::with_privilege_advice(restore::restore(
                        image.dir(),
                        &tool,
                        &options,
                    ))
                })
        }
        Command::Checkpoint { pid, timeout } => checkpoint(pid, timeout),
        Command::Run {
            image,
            on,
            every,
            replace_invalid,
            drop_capabilities,
            how,
            app,
        } => {
            let options = RunOptions {
                image,
                trigger: on,
                every,
                replace_invalid,
                lazy: how.lazy,
                verify_pages: how.verify_pages,
                timeout: how.timeout,
                env: how.env,
                insecure_image_permissions: how.insecure_image_permissions,
                drop_capabilities,
            };
            std::env::current_exe()
                .map_err(LaunchError::io("locating the crac executable"))
                .and_then(|tool| run::run(&options, &tool, &app[0], &app[1..]))
        }
        Command::Inspect {
            dir,
            identity,
            json,
            insecure_image_permissions,
            timeout,
        } => inspect_command(
            &dir,
            identity.as_deref(),
            json,
            insecure_image_permissions,
            timeout,
        ),
        Command::Pack(args) => pack_image(&args),
        Command::Unpack(args) => unpack_image(&args),
        Command::Key { action } => key_command(&action),
        Command::Doctor {
            dir,
            identity,
            json,
        } => Ok(doctor_command(dir.as_deref(), identity.as_deref(), json)),
        Command::Wait { pid } => wait_for(pid),
        Command::Init { app, args } => namespace::init(&app, &args),
    })
}

/// `crac inspect DIR|FILE`: an image directory checked, or a packed file described from
/// its head; an option only the other form uses is refused rather than ignored.
fn inspect_command(
    dir: &Path,
    identity: Option<&Path>,
    json: bool,
    insecure_image_permissions: bool,
    timeout: Option<Duration>,
) -> Result<i32, LaunchError> {
    let packed = pack::is_packed(dir);
    let unused = if packed {
        [
            (insecure_image_permissions, "--insecure-image-permissions"),
            (timeout.is_some(), "--timeout"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    } else {
        identity.is_some().then_some("--identity")
    };
    if let Some(setting) = unused {
        let problem = if packed {
            format!(
                "applies to an image directory; {} is a packed file, described from its head",
                dir.display()
            )
        } else {
            format!(
                "decrypts a packed file; {} is an image directory, not encrypted",
                dir.display()
            )
        };
        return Err(LaunchError::Setting { setting, problem });
    }
    if packed {
        inspect_packed(dir, identity, json)
    } else {
        inspect(dir, json, insecure_image_permissions, timeout)
    }
}

/// `crac key init|show`: prints the key's id.
fn key_command(action: &KeyAction) -> Result<i32, LaunchError> {
    let key = match action {
        KeyAction::Init => key::init(),
        KeyAction::Show => key::show(),
    }?;
    println!("{key}");
    Ok(0)
}

/// `crac doctor [DIR|FILE] [--json]`: prints what this host allows; 1 if the mode in use
/// does not work.
fn doctor_command(dir: Option<&Path>, identity: Option<&Path>, json: bool) -> i32 {
    let report = doctor::doctor(dir, identity);
    let text = if json {
        report.to_json()
    } else {
        report.to_text()
    };
    println!("{text}");
    i32::from(!report.works())
}

/// `crac checkpoint PID`: asks, waits for the answer, says what happened.
fn checkpoint(pid: i32, timeout: Option<Duration>) -> Result<i32, LaunchError> {
    let answer = request_client::send(pid, timeout.unwrap_or(ANSWER_DEADLINE))?;
    match answer {
        Answer::Checkpointed(dir) => eprintln!(
            "crac: process {pid} was checkpointed to {} and has stopped",
            dir.display()
        ),
        Answer::LeftRunning(problems) if problems.is_empty() => {
            eprintln!("crac: process {pid} was checkpointed and keeps running")
        }
        Answer::LeftRunning(problems) => eprintln!(
            "crac: process {pid} was checkpointed and keeps running, but after restore {problems}"
        ),
    }
    Ok(0)
}

/// `crac inspect`: exit status 1 for anything that cannot be restored, a missing or
/// foreign directory included; 70 stays for crac's own failures.
fn inspect(
    dir: &Path,
    json: bool,
    insecure_image_permissions: bool,
    timeout: Option<Duration>,
) -> Result<i32, LaunchError> {
    match inspect::inspect(dir, insecure_image_permissions, timeout) {
        Ok(image) => Ok(described(
            json,
            || image.to_json(),
            || image.to_text(),
            image.is_restorable(),
        )),
        Err(e @ LaunchError::Image(_)) => {
            eprintln!("crac: {}", inspect::printable(&e.to_string()));
            Ok(1)
        }
        Err(e) => Err(e),
    }
}

/// Prints an image's description as JSON or text: exit status 1 unless it is
/// `restorable` here.
fn described(
    json: bool,
    to_json: impl FnOnce() -> String,
    to_text: impl FnOnce() -> String,
    restorable: bool,
) -> i32 {
    println!("{}", if json { to_json() } else { to_text() });
    i32::from(!restorable)
}

/// `crac inspect FILE`: exit status 1 for a packed image that cannot be restored here or
/// cannot be read (not a packed image, damaged, encrypted without an identity).
fn inspect_packed(file: &Path, identity: Option<&Path>, json: bool) -> Result<i32, LaunchError> {
    match inspect_packed::inspect_packed(file, identity) {
        Ok(image) => Ok(described(
            json,
            || image.to_json(),
            || image.to_text(),
            image.is_restorable(),
        )),
        Err(e) => {
            eprintln!("crac: {}", inspect::printable(&e.to_string()));
            Ok(1)
        }
    }
}

/// `crac pack`: says what it packed.
fn pack_image(args: &PackArgs) -> Result<i32, LaunchError> {
    let encrypt_to = args.encrypt_to.as_deref();
    let report = pack::pack(&args.dir, &args.output, args.level, encrypt_to)?;
    let (dir, output) = (args.dir.display(), args.output.display());
    eprintln!("crac: packed {dir} into {output} ({report})");
    Ok(0)
}

/// `crac unpack`: says what it unpacked.
fn unpack_image(args: &UnpackArgs) -> Result<i32, LaunchError> {
    let report = pack::unpack(&args.file, &args.output, args.identity.as_deref())?;
    let (file, output) = (args.file.display(), args.output.display());
    eprintln!("crac: unpacked {file} into {output} ({report})");
    Ok(0)
}

fn parse_trigger(text: &str) -> Result<Trigger, String> {
    match text {
        "ready" => Ok(Trigger::Ready),
        "request" => Ok(Trigger::Request),
        _ => match text.strip_prefix("timeout=") {
            Some(secs) => parse_seconds(secs).map(Trigger::Timeout),
            None => Err(format!("`{text}`: expected ready, request or timeout=SECS")),
        },
    }
}

/// A finite, non-negative number of seconds (fractions allowed).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("`{text}`: expected a number of seconds, from 0 to about 10^19"))
}

fn parse_verify_pages(text: &str) -> Result<VerifyPages, String> {
    match text {
        "cached" => Ok(VerifyPages::Cached),
        "always" => Ok(VerifyPages::Always),
        _ => Err(format!("`{text}`: expected `cached` or `always`")),
    }
}

/// `KEY=VALUE`, or `KEY` for this environment's value (a secret then stays off the
/// command line, which every user can read).
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        None if !text.is_empty() => std::env::var(text)
            .map(|value| (text.to_string(), value))
            .map_err(|_| format!("`{text}` is not set in this environment (or is not UTF-8)")),
        _ => Err(format!(
            "`{text}`: expected KEY=VALUE, or KEY to pass this environment's KEY"
        )),
    }
}

fn report(result: Result<i32, LaunchError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("crac: {}", inspect::printable(&e.to_string()));
            ExitCode::from(70)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_finite_and_not_negative() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["inf", "1e20", "-1", "NaN", "soon"] {
            assert!(
                parse_seconds(bad)
                    .unwrap_err()
                    .starts_with(&format!("`{bad}`"))
            );
        }
        assert!(matches!(
            parse_trigger("timeout=inf"),
            Err(e) if e.contains("expected a number of seconds")
        ));
    }

    #[test]
    fn an_env_without_a_value_passes_this_environments() {
        assert_eq!(parse_env("K=a=b"), Ok(("K".into(), "a=b".into())));
        let path = std::env::var("PATH").unwrap();
        assert_eq!(parse_env("PATH"), Ok(("PATH".into(), path)));
        assert!(
            parse_env("CRAC_TEST_SURELY_UNSET")
                .unwrap_err()
                .contains("is not set")
        );
        assert!(parse_env("=v").is_err() && parse_env("").is_err());
    }
}
