//! End to end with real CRIU: a program warms state, checkpoints itself, is killed, and
//! `crac restore` brings it back; both sides print what they observe and the tests
//! compare. They live beside the `crac` binary so that cargo builds it for them.
//!
//! The program is this test binary itself, started with `CRAC_E2E_SCENARIO` set: the
//! `app` test then runs the scenario instead of returning at once.
//!
//! Needs root and CRIU 4.1+ (`scripts/install-criu.sh`). Without them the tests fail
//! when `CI=true`, and are skipped with the reason otherwise.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crac::{BoxError, Checkpoint, Checkpointable, Restore};

// ---- the program under test ----

#[derive(Checkpointable)]
#[crac(name = "index", before_checkpoint = Self::park, after_restore = Self::resume)]
struct Index {
    entries: Mutex<HashMap<u64, u64>>,
}

impl Index {
    fn park(&self, _: &Checkpoint) -> Result<(), BoxError> {
        say("hook index before_checkpoint");
        Ok(())
    }
    fn resume(&self, restore: &Restore) -> Result<(), BoxError> {
        say(&format!("hook index after_restore {:?}", restore.outcome()));
        Ok(())
    }
    fn checksum(&self) -> u64 {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .fold(0u64, |acc, (k, v)| acc.wrapping_add(k.wrapping_mul(31) ^ v))
    }
}

#[derive(Checkpointable)]
#[crac(name = "server", depends_on(Index), before_checkpoint = Self::close, after_restore = Self::open)]
struct Server {
    refuse: bool,
    restored: AtomicBool,
}

impl Server {
    fn close(&self, _: &Checkpoint) -> Result<(), BoxError> {
        say("hook server before_checkpoint");
        if self.refuse {
            return Err("requests still in flight".into());
        }
        Ok(())
    }
    fn open(&self, restore: &Restore) -> Result<(), BoxError> {
        say(&format!(
            "hook server after_restore {:?}",
            restore.outcome()
        ));
        self.restored.store(restore.is_restored(), Ordering::SeqCst);
        Ok(())
    }
}

/// What must differ between copies restored from one image.
#[derive(Checkpointable)]
#[crac(name = "ids")]
struct Ids {
    #[crac(reseed)]
    rng: Mutex<rand::rngs::StdRng>,
}

/// Reconnects to wherever the restore-time environment says.
#[derive(Checkpointable)]
#[crac(name = "upstream", after_restore = Self::reconnect)]
struct Upstream;

impl Upstream {
    fn reconnect(&self, restore: &Restore) {
        if restore.is_restored() {
            let target = std::env::var("CRAC_E2E_UPSTREAM").unwrap_or_else(|_| "unset".into());
            say(&format!("restored upstream {target}"));
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[test]
fn app() {
    let Ok(scenario) = std::env::var("CRAC_E2E_SCENARIO") else {
        return; // an ordinary test run: this entry is only for the scenarios below
    };
    let index = Arc::new(Index {
        entries: Mutex::new(
            (0..200_000u64)
                .map(|i| (i, i.wrapping_mul(2_654_435_761) % 1_000_003))
                .collect(),
        ),
    });
    let server = Arc::new(Server {
        refuse: scenario == "hook-error",
        restored: AtomicBool::new(false),
    });
    crac::register(&index);
    crac::register(&server);
    say(&format!(
        "pid {} checksum {}",
        std::process::id(),
        index.checksum()
    ));

    // Held across the checkpoint on purpose, for the open-resource check to find.
    let _file = (scenario == "open-file").then(|| std::fs::File::open("/etc/hostname").unwrap());
    let _tcp = (scenario == "tcp").then(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = listener.accept().unwrap().0;
        let claim = crac::claim_fd(&listener, "test listener");
        say(&format!(
            "connection {} -> {}",
            client.local_addr().unwrap(),
            listener.local_addr().unwrap()
        ));
        (listener, client, accepted, claim)
    });

    if scenario == "unique" {
        let ids = Arc::new(Ids {
            rng: Mutex::new(rand::make_rng()),
        });
        crac::register(&ids);
        let restore = crac::checkpoint_restore().unwrap();
        let random = rand::RngExt::random::<u64>(&mut *ids.rng.lock().unwrap());
        say(&format!(
            "unique {:?} instance {:032x} random {random:016x} pid {} checksum {}",
            restore.outcome(),
            restore.instance_id,
            std::process::id(),
            index.checksum()
        ));
        std::process::exit(7);
    }
    if scenario == "args" {
        let upstream = Arc::new(Upstream);
        crac::register(&upstream);
        let restore = crac::checkpoint_restore().unwrap();
        say(&format!(
            "restored args {:?} env {:?}",
            restore.args, restore.env
        ));
        std::process::exit(7);
    }
    if scenario == "ready" {
        let restore = crac::ready().unwrap();
        say(&format!(
            "ready {:?} checksum {}",
            restore.map(|r| r.outcome()),
            index.checksum()
        ));
        say("exiting 7");
        std::process::exit(7);
    }
    if scenario == "periodic" {
        // a service loop: work, then a consistent point; crashes after two images
        let mut images = 0;
        for round in 0.. {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(restore) = crac::at_consistent_point().unwrap() {
                say(&format!(
                    "periodic {:?} at round {round}",
                    restore.outcome()
                ));
                if restore.is_restored() {
                    say("exiting 7");
                    std::process::exit(7);
                }
                images += 1;
                if images == 2 {
                    say("crashing");
                    std::process::abort();
                }
            }
        }
    }
    if scenario == "request" {
        crac::checkpoint_on_request().unwrap();
        say("ready");
        while !server.restored.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        say(&format!(
            "restored on request checksum {}",
            index.checksum()
        ));
        std::process::exit(7);
    }
    let rounds = if scenario == "twice" { 2 } else { 1 };
    for round in 1..=rounds {
        match crac::checkpoint_restore() {
            Ok(restore) => say(&format!(
                "round {round} outcome {:?} generation {} checksum {}",
                restore.outcome(),
                restore.generation,
                index.checksum()
            )),
            Err(e) => {
                say(&format!("round {round} error {e}"));
                say(&format!("still running checksum {}", index.checksum()));
                std::process::exit(3);
            }
        }
    }
    if scenario == "linger" {
        std::thread::sleep(Duration::from_millis(1500));
    }
    say("exiting 7");
    std::process::exit(7);
}

// ---- the harness ----

/// Root and a working CRIU, or a reason. In CI a missing one fails the test.
fn criu_ready() -> bool {
    let problem = if !is_root() {
        Some("not root".to_string())
    } else {
        match crac::criu::criu_binary() {
            Err(e) => Some(e.to_string()),
            Ok(criu) => match Command::new(&criu).arg("check").output() {
                Ok(out) if out.status.success() => None,
                Ok(out) => Some(format!(
                    "`criu check` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )),
                Err(e) => Some(format!("cannot run {}: {e}", criu.display())),
            },
        }
    };
    match problem {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CRIU end-to-end tests cannot run: {why} (CI=true: this is a failure; run scripts/install-criu.sh as root)"
            )
        }
        Some(why) => {
            eprintln!("skipping CRIU end-to-end test: {why} (run scripts/install-criu.sh as root)");
            false
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `cmd` with stdio only, as a service manager would: fds the test runner
/// inherited from its own parent must not reach the checkpointed program (the
/// open-resource check would rightly refuse them).
fn only_stdio(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::close_range(3, libc::c_uint::MAX, 0);
            Ok(())
        })
    }
}

/// Skips (or in CI fails) without CRIU; else a fresh directory for one test and the
/// image path inside it.
fn setup(name: &str) -> Option<(PathBuf, PathBuf)> {
    if !criu_ready() {
        return None;
    }
    let dir = scratch(name);
    let image = dir.join("image");
    Some((dir, image))
}

/// A fresh directory for one test's images and files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crac-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Run {
    exe: PathBuf,
    scenario: &'static str,
    image: PathBuf,
    env: Vec<(&'static str, String)>,
    /// Launch in a private PID namespace (`crac __init`), so the image restores many times at once.
    private_pids: bool,
}

impl Run {
    fn new(scenario: &'static str, image: &Path) -> Run {
        Run {
            exe: std::env::current_exe().unwrap(),
            scenario,
            image: image.to_path_buf(),
            env: Vec::new(),
            private_pids: false,
        }
    }

    fn env(mut self, key: &'static str, value: &str) -> Run {
        self.env.push((key, value.to_string()));
        self
    }

    fn command(&self) -> Command {
        let args = ["app", "--exact", "--nocapture", "--test-threads=1", "-q"];
        let mut cmd = if self.private_pids {
            crac::criu::namespace::launch(
                Path::new(env!("CARGO_BIN_EXE_crac")),
                self.exe.as_os_str(),
                args.map(AsRef::as_ref),
            )
        } else {
            let mut cmd = Command::new(&self.exe);
            cmd.args(args);
            cmd
        };
        only_stdio(&mut cmd);
        cmd.env("CRAC_E2E_SCENARIO", self.scenario)
            .env("CRAC_CHECKPOINT_TO", &self.image)
            .env_remove("CRAC_ENGINE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the scenario to its end with stdout captured.
    fn output(&self) -> Output {
        self.command().stderr(Stdio::piped()).output().unwrap()
    }

    fn spawn(&self, stdout: Stdio) -> Child {
        self.command()
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }
}

fn crac(args: &[&str]) -> Output {
    only_stdio(&mut Command::new(env!("CARGO_BIN_EXE_crac")))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn restore(image: &Path) -> Output {
    crac(&["restore", image.to_str().unwrap()])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines the program printed, without the test harness's own.
fn lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| {
            [
                "pid ",
                "hook ",
                "round ",
                "exiting",
                "still ",
                "ready",
                "restored ",
                "connection ",
                "unique ",
                "ready ",
                "periodic ",
                "crashing",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect()
}

fn checksum_of(line: &str) -> &str {
    line.rsplit(' ').next().unwrap()
}

/// Kills a spawned program if the test fails before it ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: plain kill; harmless if the process is gone.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

fn killed_by_sigkill(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

// ---- the tests ----

#[test]
fn restored_process_has_its_state_runs_its_hooks_and_writes_to_the_restorers_stdout() {
    let Some((dir, image)) = setup("plain") else {
        return;
    };
    // stdout is a regular file (not O_APPEND) that grows after the dump: the hard case
    let log_path = dir.join("original-stdout");
    let log = std::fs::File::create(&log_path).unwrap();
    let status = Run::new("plain", &image).spawn(log.into()).wait().unwrap();
    assert!(
        killed_by_sigkill(status),
        "the dump stops the original: {status:?}"
    );
    let original = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        lines(&original)[1..],
        [
            "hook server before_checkpoint",
            "hook index before_checkpoint"
        ],
        "{original}"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(b"grown\n")
        .unwrap();

    let meta = std::fs::metadata(&image).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    assert!(
        manifest.contains("\nplan 1 resource 0 server\nplan 0 resource 0 index\n"),
        "{manifest}"
    );

    let out = restore(&image);
    let restored = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code propagates; stderr: {}",
        text(&out.stderr)
    );
    let want_checksum = checksum_of(lines(&original)[0]);
    assert_eq!(
        lines(&restored),
        [
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("round 1 outcome Restored generation 1 checksum {want_checksum}"),
            "exiting 7",
        ],
        "{restored}"
    );
    let summary = text(&out.stderr);
    assert!(
        summary.starts_with("crac: restored in ")
            && summary.contains(" ms (2 participants notified in "),
        "a one-line summary on stderr: {summary}"
    );
    assert_eq!(
        std::fs::read_to_string(&log_path).unwrap(),
        format!("{original}grown\n"),
        "nothing written after restore leaks into the original stdout"
    );
}

#[test]
fn a_process_started_on_a_terminal_is_restored_onto_a_pipe() {
    let Some((_, image)) = setup("tty") else {
        return;
    };
    let run = Run::new("plain", &image);
    // util-linux `script` runs the program on a pseudo-terminal of its own
    let program = format!(
        "{} app --exact --nocapture --test-threads=1 -q",
        run.exe.display()
    );
    let mut cmd = Command::new("script");
    only_stdio(&mut cmd)
        .args(["-qfec", &program, "/dev/null"])
        .env("CRAC_E2E_SCENARIO", "plain")
        .env("CRAC_CHECKPOINT_TO", &image)
        .stdin(Stdio::null());
    let original = cmd.output().expect("util-linux `script` is installed");
    assert!(
        text(&original.stdout).contains("hook index before_checkpoint"),
        "{original:?}"
    );
    let checksum = checksum_of(lines(&text(&original.stdout))[0]).to_string();
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        text(&out.stdout).contains(&format!(
            "round 1 outcome Restored generation 1 checksum {checksum}\nexiting 7\n"
        )),
        "{out:?}"
    );
}

#[test]
fn a_restored_process_can_checkpoint_again_and_be_restored_again() {
    let Some((_, image)) = setup("twice") else {
        return;
    };
    let first = Run::new("twice", &image).output();
    assert!(killed_by_sigkill(first.status));
    let checksum = checksum_of(lines(&text(&first.stdout))[0]).to_string();

    let second = restore(&image);
    assert!(
        second.status.code() == Some(128 + 9),
        "the second dump stops the restored copy: {second:?}"
    );
    assert_eq!(
        lines(&text(&second.stdout)),
        [
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("round 1 outcome Restored generation 1 checksum {checksum}"),
            "hook server before_checkpoint",
            "hook index before_checkpoint",
        ]
    );
    let third = restore(&image);
    assert_eq!(third.status.code(), Some(7));
    assert_eq!(
        lines(&text(&third.stdout))[2..],
        [
            &format!("round 2 outcome Restored generation 2 checksum {checksum}"),
            "exiting 7"
        ]
    );
}

#[test]
fn a_failing_hook_means_no_image_and_the_process_continues_rolled_back() {
    let Some((dir, image)) = setup("hook-error") else {
        return;
    };
    let out = Run::new("hook-error", &image).output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    let l = lines(&stdout);
    assert_eq!(
        l[1..],
        [
            "hook server before_checkpoint",
            "hook index before_checkpoint",
            "hook index after_restore RolledBack",
            "hook server after_restore RolledBack",
            "round 1 error checkpoint refused, no image taken, resources rolled back; 1 failure:",
            &format!("still running checksum {}", checksum_of(l[0])),
        ]
    );
    assert!(
        stdout.contains("  - `server` failed in before_checkpoint: requests still in flight"),
        "{stdout}"
    );
    assert!(!image.exists(), "no image");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no staging leftovers"
    );
}

#[test]
fn an_unclaimed_open_file_is_refused_by_name() {
    let Some((_, image)) = setup("open-file") else {
        return;
    };
    let out = Run::new("open-file", &image).output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 open file descriptor would be captured in the image:"),
        "{stdout}"
    );
    assert!(stdout.contains(" (file): /etc/hostname\n"), "{stdout}");
    assert!(
        stdout.contains("hook server after_restore RolledBack"),
        "{stdout}"
    );
    assert!(!image.exists());
}

#[test]
fn an_established_tcp_connection_is_refused_before_criu_sees_it() {
    let Some((_, image)) = setup("tcp") else {
        return;
    };
    let out = Run::new("tcp", &image).output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    let conn = lines(&stdout)
        .into_iter()
        .find(|l| l.starts_with("connection "))
        .unwrap();
    let (client, server) = conn["connection ".len()..].split_once(" -> ").unwrap();
    assert!(
        stdout.contains("2 open file descriptors would be captured in the image:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(tcp): TCP {client} -> {server} (ESTABLISHED)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(tcp): TCP {server} -> {client} (ESTABLISHED)")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("TCP listening"),
        "the claimed listener is not refused: {stdout}"
    );
}

#[test]
fn when_criu_fails_the_process_continues_and_the_error_carries_criu_reason() {
    let Some((dir, image)) = setup("criu-fails") else {
        return;
    };
    // let the connection through the fd check: CRIU itself refuses it
    let out = Run::new("tcp", &image)
        .env("CRAC_FD_POLICY", "kind:tcp=ignore")
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("criu dump failed; the process was not checkpointed and continues:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Connected TCP socket, consider using --tcp-established option."),
        "{stdout}"
    );
    let log = dir.join("image.dump-failed.log");
    assert!(
        stdout.contains(&format!("full CRIU log: {}", log.display())),
        "{stdout}"
    );
    assert!(log.is_file());
    assert!(
        stdout.contains("hook server after_restore RolledBack"),
        "{stdout}"
    );
    assert!(!image.exists(), "a failed dump leaves no image");
}

#[test]
fn a_left_running_checkpoint_continues_and_its_image_restores_later() {
    let Some((_, image)) = setup("leave-running") else {
        return;
    };
    let out = Run::new("plain", &image)
        .env("CRAC_LEAVE_RUNNING", "1")
        .output();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let checksum = checksum_of(lines(&stdout)[0]).to_string();
    assert_eq!(
        lines(&stdout)[3..],
        [
            "hook index after_restore LeftRunning",
            "hook server after_restore LeftRunning",
            &format!("round 1 outcome LeftRunning generation 0 checksum {checksum}"),
            "exiting 7",
        ]
    );
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7));
    assert!(text(&restored.stdout).contains(&format!(
        "round 1 outcome Restored generation 1 checksum {checksum}"
    )));
}

#[test]
fn a_truncated_image_is_refused_before_criu_runs() {
    let Some((_, image)) = setup("truncated") else {
        return;
    };
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let pages = image.join("pages-1.img");
    let size = std::fs::metadata(&pages).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(70));
    assert_eq!(
        text(&out.stderr),
        format!(
            "crac: cannot restore {}: image file pages-1.img is {} bytes, the manifest says {size}: the image \
             is truncated or corrupt; take a new checkpoint\n",
            image.display(),
            size / 2
        )
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(size)
        .unwrap();
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    std::fs::write(
        image.join("crac-manifest"),
        manifest.replace("\ncpu-flags ", "\ncpu-flags crac_quantum_unit "),
    )
    .unwrap();
    let out = restore(&image);
    assert!(
        text(&out.stderr).contains(
            "this CPU lacks features the checkpointed process may use: crac_quantum_unit;"
        ),
        "{out:?}"
    );

    std::fs::remove_file(image.join("crac-manifest")).unwrap();
    let out = restore(&image);
    assert!(
        text(&out.stderr).contains("no crac-manifest: not a complete crac-rs image"),
        "{out:?}"
    );
}

#[test]
fn an_image_is_refused_when_the_executable_changed() {
    let Some((dir, image)) = setup("other-exe") else {
        return;
    };
    let exe = dir.join("app-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let mut run = Run::new("plain", &image);
    run.exe = exe.clone();
    assert!(killed_by_sigkill(run.output().status));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(70));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is not the executable that was checkpointed",
            exe.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("restore needs the exact binary"),
        "{stderr}"
    );
}

#[test]
fn a_restore_says_which_process_holds_the_pid() {
    let Some((_, image)) = setup("pid-taken") else {
        return;
    };
    assert!(killed_by_sigkill(
        Run::new("linger", &image).output().status
    ));
    let first = only_stdio(&mut Command::new(env!("CARGO_BIN_EXE_crac")))
        .args(["restore", image.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = KillOnDrop(first.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let pid = manifest
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap()
        .to_string();
    while !Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "first restore did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = restore(&image);
    assert_eq!(second.status.code(), Some(70));
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains(&format!("PID {pid} recorded in the image is in use by `")),
        "{stderr}"
    );
    assert_eq!(first.wait_with_output().unwrap().status.code(), Some(7));
}

#[test]
fn crac_checkpoint_asks_a_running_process_to_checkpoint_itself() {
    let Some((dir, image)) = setup("request") else {
        return;
    };
    let out_path = dir.join("stdout");
    let mut child =
        Run::new("request", &image).spawn(std::fs::File::create(&out_path).unwrap().into());
    let _reaper = KillOnDrop(child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out_path)
        .unwrap()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "the program did not get ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = crac(&["checkpoint", &child.id().to_string()]);
    assert!(asked.status.success(), "{asked:?}");
    assert_eq!(
        text(&asked.stderr),
        format!(
            "crac: process {} was checkpointed to {} and has stopped\n",
            child.id(),
            image.display()
        )
    );
    assert!(killed_by_sigkill(child.wait().unwrap()));
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7));
    assert!(
        text(&restored.stdout).contains("restored on request checksum "),
        "{restored:?}"
    );

    let not_enabled = crac(&["checkpoint", &std::process::id().to_string()]);
    assert!(text(&not_enabled.stderr).contains(
        "does not accept checkpoint requests: it must call crac::checkpoint_on_request()"
    ));
}

#[test]
fn one_image_restores_eight_times_at_once_and_every_copy_is_unique() {
    let Some((_, image)) = setup("eight") else {
        return;
    };
    let mut run = Run::new("unique", &image);
    run.private_pids = true;
    let original = run.output();
    assert_eq!(original.status.code(), Some(128 + 9), "{original:?}");
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    assert!(
        manifest.contains("\npid 2\n") && manifest.contains("\npid-namespace private\n"),
        "{manifest}"
    );
    let checksum = checksum_of(lines(&text(&original.stdout))[0]).to_string();

    let started = Instant::now();
    let copies: Vec<_> = (0..8)
        .map(|_| {
            only_stdio(&mut Command::new(env!("CARGO_BIN_EXE_crac")))
                .args(["restore", image.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = copies
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    eprintln!(
        "8 concurrent restores all answered in {:?}",
        started.elapsed()
    );
    let mut instances = std::collections::HashSet::new();
    let mut randoms = std::collections::HashSet::new();
    for out in &outputs {
        assert_eq!(
            out.status.code(),
            Some(7),
            "every exit code propagates: {out:?}"
        );
        let stdout = text(&out.stdout);
        let line = lines(&stdout)
            .into_iter()
            .find(|l| l.starts_with("unique "))
            .unwrap_or_else(|| panic!("{out:?}"));
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[1], "Restored", "{line}");
        assert_eq!(
            words[7], "2",
            "each copy is PID 2 of its own namespace: {line}"
        );
        assert_eq!(words[9], checksum, "{line}");
        instances.insert(words[3].to_string());
        randoms.insert(words[5].to_string());
    }
    assert_eq!(instances.len(), 8, "a different instance id in every copy");
    assert_eq!(
        randoms.len(),
        8,
        "a differently reseeded generator in every copy"
    );

    let again = restore(&image);
    assert_eq!(
        again.status.code(),
        Some(7),
        "the image restores again after its copies exited: {again:?}"
    );
    assert!(text(&again.stdout).contains(&format!("pid 2 checksum {checksum}")));
}

#[test]
fn a_restore_passes_new_arguments_and_environment_before_the_hooks_run() {
    let Some((_, image)) = setup("args") else {
        return;
    };
    let original = Run::new("args", &image)
        .env("CRAC_E2E_UPSTREAM", "10.0.0.1:5432")
        .output();
    assert!(killed_by_sigkill(original.status), "{original:?}");
    let out = crac(&[
        "restore",
        image.to_str().unwrap(),
        "--env",
        "CRAC_E2E_UPSTREAM=10.0.0.2:5432",
        "--env",
        "EXTRA=a b=c",
        "--",
        "--port",
        "9090",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(
        lines(&stdout)[1..],
        [
            "restored upstream 10.0.0.2:5432",
            "hook server after_restore Restored",
            r#"restored args ["--port", "9090"] env [("CRAC_E2E_UPSTREAM", "10.0.0.2:5432"), ("EXTRA", "a b=c")]"#,
        ],
        "{stdout}"
    );
    let plain = restore(&image);
    assert!(
        text(&plain.stdout).contains("restored upstream 10.0.0.1:5432\nhook server after_restore Restored\nrestored args [] env []"),
        "{plain:?}"
    );
}

#[test]
fn a_directory_that_holds_other_files_is_never_used_as_the_image() {
    if !criu_ready() {
        return;
    }
    let dir = scratch("not-an-image");
    std::fs::write(dir.join("important.txt"), "keep me").unwrap();
    let out = Run::new("plain", &dir)
        .env("CRAC_LEAVE_RUNNING", "1")
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "round 1 error checkpoint engine `criu` is unavailable: the image directory {} (CRAC_CHECKPOINT_TO, crac run --image) holds files but no crac image; a checkpoint replaces that directory, so point it at a directory of its own",
            dir.display()
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hook "),
        "refused before any hook ran: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("important.txt")).unwrap(),
        "keep me"
    );
}

/// `crac run --image DIR -- <this test binary in app mode>` for `scenario`.
fn crac_run(exe: &Path, image: &Path, scenario: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crac"));
    only_stdio(&mut cmd)
        .args(["run", "--image", image.to_str().unwrap()])
        .args(extra)
        .arg("--")
        .arg(exe)
        .args(["app", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("CRAC_E2E_SCENARIO", scenario)
        .env_remove("CRAC_CHECKPOINT_TO")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn crac_run_checkpoints_at_ready_restores_at_once_and_restores_on_every_later_run() {
    let Some((dir, image)) = setup("run") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();

    let first = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(first.status.code(), Some(7), "{first:?}");
    let stdout = text(&first.stdout);
    let checksum = checksum_of(lines(&stdout)[0]).to_string();
    assert_eq!(
        lines(&stdout),
        [
            format!("pid 2 checksum {checksum}").as_str(),
            "hook server before_checkpoint",
            "hook index before_checkpoint",
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("ready Some(Restored) checksum {checksum}"),
            "exiting 7",
        ],
        "the first run warms up, is checkpointed at ready, and goes on restored"
    );
    assert!(text(&first.stderr).contains(&format!(
        "crac: image written to {}; restoring it",
        image.display()
    )));

    let later = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(later.status.code(), Some(7), "{later:?}");
    assert_eq!(
        lines(&text(&later.stdout)),
        [
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("ready Some(Restored) checksum {checksum}"),
            "exiting 7",
        ],
        "later runs restore without warming up"
    );

    let plain = Run::new("ready", &dir.join("unused")).output();
    assert_eq!(plain.status.code(), Some(7));
    assert!(
        text(&plain.stdout).contains("ready None checksum"),
        "without crac run, ready() does nothing"
    );
}

#[test]
fn crac_run_never_restores_a_foreign_image_blindly() {
    let Some((dir, image)) = setup("run-foreign") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    assert_eq!(crac_run(&exe, &image, "ready", &[]).status.code(), Some(7));

    let other = dir.join("other-app");
    std::fs::copy(&exe, &other).unwrap();
    let refused = crac_run(&other, &image, "ready", &[]);
    assert_eq!(refused.status.code(), Some(70), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "it was taken from {}, not {}",
            exe.display(),
            other.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("pass --replace-invalid to take a fresh checkpoint instead"),
        "{stderr}"
    );

    let replaced = crac_run(&other, &image, "ready", &["--replace-invalid"]);
    assert_eq!(replaced.status.code(), Some(7), "{replaced:?}");
    assert!(
        text(&replaced.stderr).contains("crac: replacing the image in"),
        "{replaced:?}"
    );
    assert!(
        text(&replaced.stdout).starts_with("\nrunning 1 test\npid 2 checksum"),
        "a fresh warm-up: {replaced:?}"
    );
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    assert!(manifest.contains(&format!("executable {}\n", other.display())));
}

#[test]
fn after_a_crash_crac_run_restarts_from_the_last_consistent_image() {
    let Some((_, image)) = setup("periodic") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = crac_run(
        &exe,
        &image,
        "periodic",
        &["--on", "request", "--every", "1"],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let l = lines(&stdout);
    let second = l
        .iter()
        .filter(|l| l.starts_with("periodic LeftRunning"))
        .nth(1)
        .expect("two periodic images");
    let round = second.rsplit(' ').next().unwrap();
    assert!(l.contains(&"crashing"), "{stdout}");
    assert_eq!(
        l[l.len() - 2..],
        [
            format!("periodic Restored at round {round}").as_str(),
            "exiting 7"
        ],
        "restarted from the last consistent image, not cold: {stdout}"
    );
    assert!(text(&out.stderr).contains("crac: restored in "), "{out:?}");
}

#[test]
fn crac_inspect_describes_an_image_and_says_whether_it_restores_here() {
    let Some((_, image)) = setup("inspect") else {
        return;
    };
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let out = crac(&["inspect", image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let described = text(&out.stdout);
    let exe = std::env::current_exe().unwrap();
    assert!(
        described.contains(&format!("executable    {} (sha256 ", exe.display())),
        "{described}"
    );
    assert!(described.contains("plan          2 participants, in checkpoint order:\n  server [rank 1, resource]\n  index [rank 0, resource]\n"), "{described}");
    assert!(
        described.ends_with("restorable    yes, on this host\n\n"),
        "{described}"
    );

    let json = text(&crac(&["inspect", "--json", image.to_str().unwrap()]).stdout);
    assert!(json.starts_with("{\"created_unix\":"), "{json}");
    assert!(json.contains(r#""plan":[{"name":"server","rank":1,"kind":"resource","depth":0},{"name":"index","rank":0,"kind":"resource","depth":0}]"#), "{json}");
    assert!(
        json.trim_end()
            .ends_with(r#""restorable":true,"refusal":null}"#),
        "{json}"
    );

    let pages = image.join("pages-1.img");
    let size = std::fs::metadata(&pages).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(size - 1)
        .unwrap();
    let broken = crac(&["inspect", "--json", image.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stdout).contains(r#""restorable":false,"refusal":"cannot restore "#),
        "{broken:?}"
    );
}

#[test]
fn crac_run_can_checkpoint_after_a_timeout_instead_of_at_ready() {
    let Some((_, image)) = setup("run-timeout") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = crac_run(&exe, &image, "request", &["--on", "timeout=1"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ready\n"), "{stdout}");
    assert!(
        stdout.contains("hook index after_restore Restored"),
        "{stdout}"
    );
    assert!(stdout.contains("restored on request checksum "), "{stdout}");
    assert!(image.join("crac-manifest").is_file());
}
