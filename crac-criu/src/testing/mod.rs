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
//!    image is written. A panicking `setup` or a refused checkpoint is written to a
//!    report file the test named (`CRAC_TEST_REPORT` again). It never returns into the
//!    test.
//! 3. **each restored copy**: returns from the checkpoint, runs `each`, writes its value
//!    (or its panic, or why its restore failed) to its file, and exits. It never returns
//!    into the test either: only the test itself goes on to its assertions.

mod cli;
mod value;

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub use value::Value;

use crac_core::Restore;

use crate::env::{self, TEST_CHECKPOINT as CHECKPOINT_ENV, TEST_REPORT as REPORT_ENV};
use crate::image::manifest;
use crate::launcher::namespace;

/// How long the checkpointed process, and then the copies, may take by default.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A restore-time variable for each copy: its name, and its value for copy `i` (from 0).
type CopyEnv = (String, Box<dyn Fn(usize) -> String>);

/// What a `#[crac::test]` function is given: the test's name, how many copies to
/// restore, and what each copy is told at restore. Its [`run`](Trial::run) does the
/// work; a test that drops its trial without running it fails.
///
/// Copies are numbered from 0, everywhere: in [`env`](Trial::env)'s closure, in the
/// order of the values [`run`](Trial::run) returns, and in failures ("copy 1 (of
/// 0..3) panicked at src/lib.rs:12:5: ...").
///
/// The copies are restored by the `crac` command, looked for in this order:
///
/// 1. `CRAC_CLI=/path/to/crac`, if set: it must name an executable file, or the test
///    fails saying so;
/// 2. `crac` beside the test executable (`target/<profile>/crac`): what `cargo build
///    -p crac-cli` makes inside crac-rs's own workspace;
/// 3. `crac` on `PATH`: install it with `cargo install --git https://github.com/crac-rs/crac-rs crac-cli`.
pub struct Trial {
    /// The test's name as libtest knows it (its path without the crate's name).
    test: String,
    copies: usize,
    env: Vec<CopyEnv>,
    timeout: Duration,
    ran: bool,
}

impl std::fmt::Debug for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Trial")
            .field("test", &self.test)
            .field("copies", &self.copies)
            .field("env", &env)
            .field("timeout", &self.timeout)
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
            timeout: TIMEOUT,
            ran: false,
        }
    }

    /// How many copies are restored (`#[crac::test(copies = N)]`).
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// Gives copy `i` (from 0, as failures number them) the restore-time variable
    /// `name` = `value(i)`, as `crac restore --env NAME=VALUE` would:
    /// `#[crac(restore_env)]` fields and `Restore::env` see it.
    ///
    /// # Panics
    ///
    /// If `name` is `CRAC_TEST_REPORT`, which the trial gives each copy itself.
    pub fn env(mut self, name: &str, value: impl Fn(usize) -> String + 'static) -> Trial {
        assert_ne!(
            name, REPORT_ENV,
            "{REPORT_ENV} is the trial's own: it tells each copy where its value goes"
        );
        self.env.push((name.to_string(), Box::new(value)));
        self
    }

    /// How long the checkpointed process may take to run `setup` and be checkpointed,
    /// and then how long the copies may take to be restored and run `each` (default
    /// 120 s each). A process over its time is killed and the test fails naming it.
    pub fn timeout(mut self, timeout: Duration) -> Trial {
        self.timeout = timeout;
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
    /// printed), when a restore fails or a process runs over its [`timeout`](Self::timeout),
    /// or when `each` panics in a copy (naming the copy, and where and why it panicked).
    /// When CRIU left an image or logs, the scratch directory holding them is kept, and
    /// named.
    #[track_caller]
    pub fn run<S, T: Value>(
        mut self,
        setup: impl FnOnce() -> S,
        each: impl FnOnce(S, &Restore) -> T,
    ) -> Vec<T> {
        self.ran = true;
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
        let cli = cli::crac_command()?;
        crac_shared::criu::probe().map_err(|why| why.to_string())?;
        let scratch = Scratch::new(&self.test)?;
        let image = scratch.path.join("image");
        let report = scratch.path.join("checkpoint.report");
        let checkpoint = self.checkpoint(&cli, &image, &report)?;
        let checkpointed = scratch
            .run(checkpoint, "checkpoint")?
            .wait(Instant::now() + self.timeout)?;
        if !image.join(manifest::FILE_NAME).is_file() {
            let why = match std::fs::read(&report).map(|sent| Sent::<T>::decode(&sent)) {
                Ok(Sent::Panicked(message)) => format!("setup panicked {message}"),
                Ok(Sent::Failed(error)) => format!("the checkpoint failed: {error}"),
                _ if checkpointed.stdout.contains("running 0 tests") => format!(
                    "the test executable ran no test named {}: is this a #[crac::test]?",
                    self.test
                ),
                _ => format!("the checkpointed process {checkpointed}"),
            };
            return Err(scratch.keep(format!("no image was written: {why}")));
        }
        // All at once, under one deadline.
        let deadline = Instant::now() + self.timeout;
        let mut copies = Vec::with_capacity(self.copies);
        for i in 0..self.copies {
            let cmd = self.restore(&cli, &image, i, &scratch);
            copies.push(scratch.run(cmd, &format!("copy-{i}"))?);
        }
        // Every copy waited for (or killed) before any is judged: none outlives the test.
        let ended: Vec<_> = copies.into_iter().map(|copy| copy.wait(deadline)).collect();
        let mut values = Vec::with_capacity(self.copies);
        for (i, ended) in ended.into_iter().enumerate() {
            let name = format!("copy {i} (of 0..{})", self.copies);
            let ended = ended?;
            let Ok(sent) = std::fs::read(scratch.report(i)) else {
                return Err(scratch.keep(format!("{name} sent no value: `crac restore` {ended}")));
            };
            // A copy that ran says what went wrong: the image and logs tell no more.
            let failure = match Sent::<T>::decode(&sent) {
                Sent::Value(value) => {
                    values.push(value);
                    continue;
                }
                Sent::Panicked(message) => format!("{name} panicked {message}"),
                Sent::Failed(error) => {
                    format!("{name} was restored, but its restore failed: {error}")
                }
            };
            scratch.remove();
            return Err(failure);
        }
        scratch.remove();
        Ok(values)
    }

    /// Starts this test again, alone, in a private PID namespace, to be checkpointed.
    fn checkpoint(&self, cli: &Path, image: &Path, report: &Path) -> Result<Command, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
        // `--include-ignored`: the test may be ignored and run on request.
        let args: [OsString; 6] = [
            self.test.clone().into(),
            "--exact".into(),
            "--include-ignored".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
            "-q".into(),
        ];
        let mut cmd = namespace::launch(cli, exe.into_os_string(), args);
        cmd.env(CHECKPOINT_ENV, &self.test)
            .env(REPORT_ENV, report)
            .env(env::CHECKPOINT_TO, image)
            .env_remove(env::LEAVE_RUNNING);
        Ok(cmd)
    }

    /// `crac restore` of copy `i`.
    fn restore(&self, cli: &Path, image: &Path, i: usize, scratch: &Scratch) -> Command {
        let mut cmd = Command::new(cli);
        cmd.arg("restore")
            .arg(image)
            .arg("--timeout")
            .arg(self.timeout.as_secs().max(1).to_string())
            .arg("--log")
            .arg(scratch.path.join(format!("copy-{i}.restore.log")))
            .arg("--env")
            .arg(format!("{REPORT_ENV}={}", scratch.report(i).display()));
        for (name, value) in &self.env {
            cmd.arg("--env").arg(format!("{name}={}", value(i)));
        }
        cmd
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        // A test that never checkpoints must not pass as if it had.
        if !self.ran && !std::thread::panicking() {
            panic!(
                "crac::test {}: the test ended without calling trial.run(setup, each)",
                self.test
            );
        }
    }
}

/// The checkpointed process's role, and then each copy's. Each reports to the file
/// `CRAC_TEST_REPORT` names: the test sets it for the checkpointed process, and each
/// copy's restorer sets it again (restore-time variables are in the environment before
/// any hook runs), so a failure before or after the image goes where the test looks.
fn checkpointed<S, T: Value>(setup: impl FnOnce() -> S, each: impl FnOnce(S, &Restore) -> T) -> ! {
    record_panic_locations();
    let state = match panic::catch_unwind(AssertUnwindSafe(setup)) {
        Ok(state) => state,
        Err(payload) => report_and_exit(Sent::<T>::Panicked(panicked(&*payload))),
    };
    let restore = match crac_core::checkpoint_restore() {
        Ok(restore) if restore.is_restored() => restore,
        Ok(restore) => report_and_exit(Sent::<T>::Failed(format!(
            "the process was not stopped by its checkpoint: {:?}",
            restore.outcome()
        ))),
        Err(e) => report_and_exit(Sent::<T>::Failed(e.to_string())),
    };
    match panic::catch_unwind(AssertUnwindSafe(|| each(state, &restore))) {
        Ok(value) => report_and_exit(Sent::Value(value)),
        Err(payload) => report_and_exit(Sent::<T>::Panicked(panicked(&*payload))),
    }
}

/// What the checkpointed process or a copy reports.
enum Sent<T> {
    Value(T),
    Panicked(String),
    Failed(String),
}

impl<T: Value> Sent<T> {
    fn encode(&self) -> Vec<u8> {
        match self {
            Sent::Value(value) => {
                let mut bytes = b"value\n".to_vec();
                value.encode(&mut bytes);
                bytes
            }
            Sent::Panicked(message) => format!("panicked\n{message}").into_bytes(),
            Sent::Failed(error) => format!("failed\n{error}").into_bytes(),
        }
    }

    /// The report in `bytes`; `Failed` for bytes that are none.
    fn decode(bytes: &[u8]) -> Sent<T> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        if let Some(mut value) = bytes.strip_prefix(b"value\n") {
            return match T::decode(&mut value) {
                Some(decoded) if value.is_empty() => Sent::Value(decoded),
                _ => Sent::Failed(format!(
                    "it sent a value that is not a {}",
                    std::any::type_name::<T>()
                )),
            };
        }
        match (
            bytes.strip_prefix(b"panicked\n"),
            bytes.strip_prefix(b"failed\n"),
        ) {
            (Some(message), _) => Sent::Panicked(text(message)),
            (_, Some(error)) => Sent::Failed(text(error)),
            _ => Sent::Failed("it sent something that is not a report".into()),
        }
    }
}

/// The last act of the checkpointed process or a copy: its report, written whole or
/// not at all (a half-written value must not decode).
fn report_and_exit<T: Value>(sent: Sent<T>) -> ! {
    let written = match std::env::var_os(REPORT_ENV) {
        Some(report) => {
            let report = PathBuf::from(report);
            let partial = report.with_extension("partial");
            std::fs::write(&partial, sent.encode())
                .and_then(|()| std::fs::rename(&partial, &report))
        }
        None => Err(std::io::Error::other(format!("{REPORT_ENV} is not set"))),
    };
    if let Err(e) = &written {
        // Only stderr is left to tell the test.
        eprintln!("crac::test: cannot report to the test: {e}");
    }
    std::process::exit(if written.is_ok() { 0 } else { 1 })
}

thread_local! {
    /// Where this thread last panicked: `catch_unwind` keeps only the payload.
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Has every panic's location recorded for [`panicked`], then handled as before.
fn record_panic_locations() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(location) = info.location() {
            PANICKED_AT.set(Some(location.to_string()));
        }
        previous(info);
    }));
}

/// A caught panic as the test reports it, where and why: `at src/lib.rs:3:5: message`.
fn panicked(payload: &(dyn std::any::Any + Send)) -> String {
    let message = panic_message(payload);
    match PANICKED_AT.take() {
        Some(at) => format!("at {at}: {message}"),
        None => format!("(at an unknown place): {message}"),
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

/// The test's scratch directory: the image, CRIU's logs, what each process printed, the
/// copies' values. Kept (and named) when a failure left an image or CRIU's logs in it;
/// removed otherwise.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Made as `mkdtemp` makes one (a random name, mode 0700) in the temp directory: a
    /// fixed name there could be another user's directory or symlink, written through
    /// by root.
    fn new(test: &str) -> Result<Scratch, String> {
        let temp = std::env::temp_dir();
        let template = temp.join(format!(
            "crac-test-{}-{}.XXXXXX",
            test.replace("::", "-"),
            std::process::id()
        ));
        let path = nix::unistd::mkdtemp(&template)
            .map_err(|e| format!("cannot create a directory in {}: {e}", temp.display()))?;
        Ok(Scratch { path })
    }

    /// Where copy `i` writes its value.
    fn report(&self, i: usize) -> PathBuf {
        self.path.join(format!("copy-{i}.value"))
    }

    /// Starts `cmd` with stdin from `/dev/null` and its output in files named `name`
    /// here: files, unlike pipes, need nobody reading them while it runs.
    fn run(&self, mut cmd: Command, name: &str) -> Result<Running, String> {
        let stdout = self.path.join(format!("{name}.stdout"));
        let stderr = self.path.join(format!("{name}.stderr"));
        let create = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        cmd.stdin(std::process::Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
        Ok(Running {
            child,
            stdout,
            stderr,
        })
    }

    /// `failure`, naming this directory if CRIU left anything in it (an image, a failed
    /// dump's log beside it, a restore's log), which is then kept; otherwise it is
    /// removed.
    fn keep(&self, failure: String) -> String {
        let image = std::fs::read_dir(self.path.join("image"))
            .is_ok_and(|mut entries| entries.next().is_some());
        let log = std::fs::read_dir(&self.path).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".restore.log") || name.ends_with(".dump-failed.log")
            })
        });
        if image || log {
            format!(
                "{failure}\n(the image and CRIU's logs are kept in {})",
                self.path.display()
            )
        } else {
            self.remove();
            failure
        }
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A process the test started, its output going to files.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// How a process ended (`None`: killed at its deadline), and what it printed.
struct Finished {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "ended with {status}")?,
            None => write!(
                f,
                "was still running at its deadline (Trial::timeout) and was killed"
            )?,
        }
        let (stdout, stderr) = (self.stdout.trim_end(), self.stderr.trim_end());
        write!(f, "; stdout:\n{stdout}\nstderr:\n{stderr}")
    }
}

impl Running {
    /// Waits until it ends, or kills it at `deadline`: a restorer, or the checkpointed
    /// process's namespace, takes everything it started with it.
    fn wait(mut self, deadline: Instant) -> Result<Finished, String> {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Err(e) => return Err(format!("cannot wait for a process it started: {e}")),
            }
        };
        Ok(Finished {
            status,
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
        })
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}
