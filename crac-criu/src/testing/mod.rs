//! `#[crac::test]`'s runtime: a test's setup runs in a process of its own, which is
//! checkpointed with CRIU and restored as concurrent copies; each copy's value comes back
//! to the test.
//!
//! One test, three roles of the test executable:
//!
//! 1. **the test** (libtest runs it): starts the test executable again, filtered to this
//!    one test, as PID 2 of a private PID namespace (`crac __init`, as `crac run` does),
//!    with `CRAC_TEST_CHECKPOINT` naming the test and `CRAC_CHECKPOINT_TO` a scratch
//!    directory; waits for the image; restores the copies at once, each with
//!    `crac restore --env CRAC_TEST_REPORT=<its file>`; reads their values.
//! 2. **the checkpointed process**: runs `setup`, then checkpoints; CRIU stops it once the
//!    image is written. It never returns into the test.
//! 3. **each restored copy**: returns from the checkpoint, runs `each`, writes its value
//!    (or its panic) to its file, and exits. It never returns into the test either: only
//!    the test itself goes on to its assertions.

mod value;

use std::ffi::OsString;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use value::Value;

use crac_core::Restore;

use crate::image::manifest;
use crate::launcher::namespace;
use crate::sys::{criu, process};

/// Set for the checkpointed process: the name of the test it runs.
const CHECKPOINT_ENV: &str = "CRAC_TEST_CHECKPOINT";
/// Given to each copy at restore: the file its value goes to.
const REPORT_ENV: &str = "CRAC_TEST_REPORT";
/// Where the test looks for the `crac` command first.
const CLI_ENV: &str = "CRAC_CLI";
/// How long a copy may take to run again before its restore is given up.
const RESTORE_TIMEOUT_SECS: &str = "120";

/// A restore-time variable for each copy: its name, and its value for copy `i`.
type CopyEnv = (String, Box<dyn Fn(usize) -> String>);

/// What a `#[crac::test]` function is given: the test's name, how many copies to
/// restore, and what each copy is told at restore.
pub struct Trial {
    /// The test's name as libtest knows it (its path without the crate's name).
    test: String,
    copies: usize,
    env: Vec<CopyEnv>,
}

impl std::fmt::Debug for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Trial")
            .field("test", &self.test)
            .field("copies", &self.copies)
            .field("env", &env)
            .finish()
    }
}

impl Trial {
    /// The trial of the test `function` in `module_path` (as `module_path!()` gives it).
    #[doc(hidden)]
    pub fn __new(module_path: &str, function: &str, copies: usize) -> Trial {
        // libtest names a test by its path within the crate.
        let test = match module_path.split_once("::") {
            Some((_crate, path)) => format!("{path}::{function}"),
            None => function.to_string(),
        };
        Trial {
            test,
            copies,
            env: Vec::new(),
        }
    }

    /// How many copies are restored (`#[crac::test(copies = N)]`).
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// Gives copy `i` (from 0) the restore-time variable `name` = `value(i)`, as
    /// `crac restore --env NAME=VALUE` would: `#[crac(restore_env)]` fields and
    /// `Restore::env` see it.
    pub fn env(mut self, name: &str, value: impl Fn(usize) -> String + 'static) -> Trial {
        self.env.push((name.to_string(), Box::new(value)));
        self
    }

    /// Runs `setup` in a process of its own, checkpoints it, restores the copies at once,
    /// runs `each` in every copy with `setup`'s value and the copy's `Restore`, and
    /// returns what each copy returned, in copy order.
    ///
    /// Code outside the two closures runs in the test, and again in the checkpointed
    /// process: put what belongs to the checkpointed program (registrations, warm-up,
    /// connections, runtimes) in `setup`.
    ///
    /// # Panics
    ///
    /// With the reason when the trial cannot run (not root, no CRIU, no `crac`
    /// command), when `setup` panics or the checkpoint fails (with what the process
    /// printed), when a restore fails, or when `each` panics in a copy (naming the copy).
    /// When no image was written or a copy could not be restored, the scratch directory
    /// with the image and CRIU's logs is kept, and named.
    pub fn run<S, T: Value>(
        self,
        setup: impl FnOnce() -> S,
        each: impl FnOnce(S, &Restore) -> T,
    ) -> Vec<T> {
        if std::env::var_os(CHECKPOINT_ENV).is_some_and(|test| test == *self.test) {
            checkpointed(setup, each)
        }
        match self.restore_copies() {
            Ok(values) => values,
            Err(failure) => panic!("crac::test {}: {failure}", self.test),
        }
    }

    /// The test's role: checkpoint the process, restore the copies, collect their values.
    fn restore_copies<T: Value>(&self) -> Result<Vec<T>, String> {
        let cli = missing_prerequisite()?;
        let scratch = Scratch::new(&self.test)?;
        let image = scratch.path.join("image");
        let checkpointed = self.checkpoint(&cli, &image)?;
        if !image.join(manifest::FILE_NAME).is_file() {
            return Err(scratch.keep(format!(
                "no image was written: the checkpointed process {}",
                printed(&checkpointed)
            )));
        }
        let reports: Vec<PathBuf> = (0..self.copies)
            .map(|i| scratch.path.join(format!("copy-{i}.value")))
            .collect();
        // All at once, each output read on a thread of its own so that none waits on a
        // full pipe while another is read.
        let restores: Vec<_> = reports
            .iter()
            .enumerate()
            .map(|(i, report)| {
                let mut cmd = self.restore(&cli, &image, i, report, &scratch.path);
                std::thread::spawn(move || cmd.output())
            })
            .collect();
        let outputs: Vec<_> = restores
            .into_iter()
            .map(|restore| restore.join().expect("the thread only runs a command"))
            .collect();
        let mut values = Vec::with_capacity(self.copies);
        for (i, (output, report)) in outputs.into_iter().zip(&reports).enumerate() {
            let copy = format!("copy {} of {}", i + 1, self.copies);
            let output = output
                .map_err(|e| scratch.keep(format!("{copy}: cannot run {}: {e}", cli.display())))?;
            let Ok(sent) = std::fs::read(report) else {
                return Err(scratch.keep(format!(
                    "{copy} sent no value: `crac restore` {}",
                    printed(&output)
                )));
            };
            // The copy ran and said what went wrong: the image and logs tell no more.
            match decode::<T>(&sent) {
                Ok(value) => values.push(value),
                Err(e) => {
                    scratch.remove();
                    return Err(format!("{copy} {e}"));
                }
            }
        }
        scratch.remove();
        Ok(values)
    }

    /// Starts this test again, alone, in a private PID namespace, to be checkpointed.
    fn checkpoint(&self, cli: &Path, image: &Path) -> Result<Output, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
        let args: [OsString; 5] = [
            self.test.clone().into(),
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
            "-q".into(),
        ];
        namespace::launch(cli, exe.into_os_string(), args)
            .env(CHECKPOINT_ENV, &self.test)
            .env("CRAC_CHECKPOINT_TO", image)
            .env_remove("CRAC_LEAVE_RUNNING")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", cli.display()))
    }

    /// `crac restore` of copy `i`.
    fn restore(&self, cli: &Path, image: &Path, i: usize, report: &Path, logs: &Path) -> Command {
        let mut cmd = Command::new(cli);
        cmd.arg("restore")
            .arg(image)
            .arg("--timeout")
            .arg(RESTORE_TIMEOUT_SECS)
            .arg("--log")
            .arg(logs.join(format!("copy-{i}.restore.log")))
            .arg("--env")
            .arg(format!("{REPORT_ENV}={}", report.display()));
        for (name, value) in &self.env {
            cmd.arg("--env").arg(format!("{name}={}", value(i)));
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// The checkpointed process's role, and then each copy's.
fn checkpointed<S, T: Value>(setup: impl FnOnce() -> S, each: impl FnOnce(S, &Restore) -> T) -> ! {
    let state = setup();
    // The test reads what this process printed when no image appears.
    let restore = match crac_core::checkpoint_restore() {
        Ok(restore) if restore.is_restored() => restore,
        Ok(restore) => {
            eprintln!(
                "the checkpoint did not stop the process: {:?}",
                restore.outcome()
            );
            std::process::exit(1)
        }
        // A copy's restore-time variables are set before its hooks run: a copy whose
        // hooks failed tells the test so through its report.
        Err(e) => match std::env::var_os(REPORT_ENV) {
            Some(report) => {
                report_and_exit(Path::new(&report), format!("failed\n{e}").into_bytes())
            }
            None => {
                eprintln!("the checkpoint failed: {e}");
                std::process::exit(1)
            }
        },
    };
    let Some(report) = restore
        .env
        .iter()
        .find(|(name, _)| name == REPORT_ENV)
        .map(|(_, path)| PathBuf::from(path))
    else {
        eprintln!("restored without {REPORT_ENV}: restore #[crac::test] images through the test");
        std::process::exit(1)
    };
    let sent = match panic::catch_unwind(AssertUnwindSafe(|| each(state, &restore))) {
        Ok(value) => {
            let mut sent = b"value\n".to_vec();
            value.encode(&mut sent);
            sent
        }
        Err(payload) => format!("panicked\n{}", panic_message(&*payload)).into_bytes(),
    };
    report_and_exit(&report, sent)
}

/// A copy's last act: its report, written whole or not at all (a half-written value must
/// not decode).
fn report_and_exit(report: &Path, sent: Vec<u8>) -> ! {
    let partial = report.with_extension("partial");
    let written = std::fs::write(&partial, sent).and_then(|()| std::fs::rename(&partial, report));
    std::process::exit(if written.is_ok() { 0 } else { 1 })
}

/// What a copy sent: its value, or why there is none.
fn decode<T: Value>(sent: &[u8]) -> Result<T, String> {
    if let Some(mut value) = sent.strip_prefix(b"value\n") {
        return match T::decode(&mut value) {
            Some(decoded) if value.is_empty() => Ok(decoded),
            _ => Err(format!(
                "sent a value that is not a {}",
                std::any::type_name::<T>()
            )),
        };
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match (
        sent.strip_prefix(b"panicked\n"),
        sent.strip_prefix(b"failed\n"),
    ) {
        (Some(message), _) => Err(format!("panicked: {}", text(message))),
        (_, Some(error)) => Err(format!(
            "was restored, but its restore failed: {}",
            text(error)
        )),
        _ => Err("sent something that is not a value".into()),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(message), _) => message.to_string(),
        (_, Some(message)) => message.clone(),
        _ => "(a panic without a message)".into(),
    }
}

/// How a process ended and what it printed, for a failure message.
fn printed(output: &Output) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim_end().to_string();
    format!(
        "ended with {}; stdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Root, CRIU and the `crac` command, or which is missing; the `crac` command if none is.
fn missing_prerequisite() -> Result<PathBuf, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root: CRIU restores processes as root".into());
    }
    criu::criu_binary().map_err(|missing| crate::Error::from(missing).to_string())?;
    crac_command().ok_or_else(|| {
        format!(
            "the `crac` command was found neither at {CLI_ENV}, beside the test executable, \
             nor on PATH: build it (cargo build -p crac-cli), install it (cargo install \
             crac-cli) or set {CLI_ENV}"
        )
    })
}

/// `CRAC_CLI`, else the `crac` cargo built beside this test (`target/<profile>/crac` for
/// `target/<profile>/deps/<test>`), else `crac` on `PATH`.
fn crac_command() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CLI_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let beside = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("crac"))
        .find(|candidate| candidate.is_file());
    beside.or_else(|| process::find_program(Path::new("crac"), &[]))
}

/// The test's scratch directory: the image, CRIU's logs, the copies' values. Kept (and
/// named) when a checkpoint or restore fails; removed otherwise.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Result<Scratch, String> {
        let name = format!(
            "crac-test-{}-{}",
            test.replace("::", "-"),
            std::process::id()
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }

    fn keep(&self, failure: String) -> String {
        format!(
            "{failure}\n(the image and CRIU's logs are kept in {})",
            self.path.display()
        )
    }

    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
