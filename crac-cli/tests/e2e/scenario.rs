//! The program under test, run by this executable when `CRAC_E2E_SCENARIO` names a
//! scenario: it warms up state, checkpoints through the `crac` API, and prints each
//! step (hooks, outcomes, a checksum of its state) for the tests to compare.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crac::{BoxError, Checkpoint, Checkpointable, Restore};

mod mapped;

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
    /// How long closing takes (`CRAC_E2E_DRAIN_MS`): requests in flight are drained.
    drain: Duration,
    restored: AtomicBool,
}

impl Server {
    fn close(&self, _: &Checkpoint) -> Result<(), BoxError> {
        say("hook server before_checkpoint");
        std::thread::sleep(self.drain);
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

/// Secrets held only by `#[crac(secret)]` fields (`key` reloaded from the secret
/// environment variable `CRAC_E2E_OPERATOR_SECRET`, `token` not reloaded), beside a
/// plain field that the image keeps.
#[derive(Checkpointable)]
#[crac(name = "vault")]
struct Vault {
    #[crac(secret, reload = Self::load_key)]
    key: Mutex<String>,
    #[crac(secret)]
    token: Mutex<String>,
    plain: Mutex<String>,
}

impl Vault {
    fn load_key(&self) -> Result<String, BoxError> {
        Ok(std::env::var("CRAC_E2E_OPERATOR_SECRET")?)
    }

    /// The field values from `CRAC_E2E_SEED` (hex): the key's letters in `g..=v`, the
    /// plain field's in `G..=V`, so that neither the seed nor the other is a match. The
    /// key is handled as programs handle secrets, leaving copies of it behind: the buffers
    /// it outgrew, the document it was parsed from, clones, a formatted copy (all freed),
    /// and a buffer on the stack (a dead frame).
    fn from_seed() -> Vault {
        let seed = std::env::var("CRAC_E2E_SEED").unwrap();
        let spell = |first: u8| -> String {
            let mut text = String::new();
            for digit in seed.chars() {
                text.push((first + digit.to_digit(16).unwrap() as u8) as char);
            }
            text
        };
        let document = format!(
            "{{\"note\": \"{}\", \"key\": \"{}\"}}",
            "-".repeat(400),
            spell(b'g')
        );
        let key = through_the_stack(document.rsplit('"').nth(1).unwrap());
        drop(document);
        let clones: Vec<String> = (0..3).map(|_| key.clone()).collect();
        let doubled = format!("{}:{}", clones[0], clones[1]);
        let token = doubled[..key.len()].to_string();
        drop((clones, doubled));
        Vault {
            key: Mutex::new(key),
            token: Mutex::new(token),
            plain: Mutex::new(spell(b'G')),
        }
    }
}

/// `text` copied through a buffer on the stack, as fixed-size keys are decoded: at the
/// bottom of a large frame, deeper than the checkpoint's own frames reach.
#[inline(never)]
fn through_the_stack(text: &str) -> String {
    let mut buffer = [0u8; 128 << 10];
    buffer[..text.len()].copy_from_slice(text.as_bytes());
    std::hint::black_box(&mut buffer);
    String::from_utf8(buffer[..text.len()].to_vec()).unwrap()
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

/// A setting the restorer may change: `crac restore IMAGE --env CRAC_E2E_PORT=...`.
#[derive(Checkpointable)]
#[crac(name = "listen")]
struct Listen {
    #[crac(restore_env = "CRAC_E2E_PORT")]
    port: AtomicU16,
}

/// A log file closed for the image and reopened after it, where the restorer says
/// (`--env CRAC_E2E_LOG_AT=...`) or where it was.
#[derive(Checkpointable)]
#[crac(name = "journal")]
struct Journal {
    #[crac(reopen(path_env = "CRAC_E2E_LOG_AT"))]
    log: Mutex<std::fs::File>,
}

/// `file:line` of the line of this file that contains `needle`: where plans and
/// manifests say a participant registered there comes from.
pub(crate) fn located(needle: &str) -> String {
    let at = include_str!("scenario.rs")
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is in scenario.rs"));
    format!("{}:{}", file!(), at + 1)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A hook that overruns its 300 ms deadline: at checkpoint (`deadline-checkpoint`), or
/// after a real restore (`deadline-restore`).
#[derive(Checkpointable)]
#[crac(name = "stalls", deadline = "300ms", before_checkpoint = Self::close, after_restore = Self::open)]
struct Stalls {
    at_checkpoint: bool,
}

impl Stalls {
    const STALL: Duration = Duration::from_millis(500);

    fn close(&self, _: &Checkpoint) {
        say("hook stalls before_checkpoint");
        if self.at_checkpoint {
            std::thread::sleep(Self::STALL);
            say("hook stalls before_checkpoint returns late");
        }
    }
    fn open(&self, restore: &Restore) {
        say(&format!(
            "hook stalls after_restore {:?}",
            restore.outcome()
        ));
        if restore.is_restored() {
            std::thread::sleep(Self::STALL);
            say("hook stalls after_restore returns late");
        }
    }
}

/// Runs `scenario`: warms the index, then checkpoints as the scenario says, printing
/// what it observes; always ends the process.
pub(crate) fn run(scenario: &str) -> ! {
    let index = Arc::new(Index {
        entries: Mutex::new(
            (0..200_000u64)
                .map(|i| (i, i.wrapping_mul(2_654_435_761) % 1_000_003))
                .collect(),
        ),
    });
    let server = Arc::new(Server {
        refuse: scenario == "hook-error",
        drain: Duration::from_millis(
            std::env::var("CRAC_E2E_DRAIN_MS").map_or(0, |ms| ms.parse().unwrap()),
        ),
        restored: AtomicBool::new(false),
    });
    crac::register(&index);
    crac::register(&server);
    say(&format!(
        "pid {} checksum {}",
        std::process::id(),
        index.checksum()
    ));
    match scenario {
        "carried-listener" => carried_listener(),
        "blocking-server" => blocking_server(),
        "ready-then-direct" => ready_then_direct(),
        "clock" => clock(),
        "unique" => unique(&index),
        "secrets" => secrets(),
        "restore-env" => restore_env(),
        "reopen" => reopen(),
        "args" => args(),
        "ready" => ready(&index),
        "ready-copy" => ready_copy(&index),
        "request" => on_request(&index, &server),
        "forever" => forever(),
        "soak" => soak(&index),
        "mapped" => mapped::run(),
        _ => {}
    }
    if let Some(flavor) = scenario.strip_prefix("tokio-") {
        tokio_service(flavor, &index);
    }
    if let Some(phase) = scenario.strip_prefix("deadline-") {
        deadline(phase, &index);
    }
    if let Some(variant) = scenario.strip_prefix("periodic") {
        periodic(variant);
    }
    let _held = hold_on_purpose(scenario);
    checkpoint_rounds(scenario, &index)
}

/// A listening socket the program keeps through the checkpoint, on purpose.
fn carried_listener() -> ! {
    let listener = std::net::TcpListener::bind(std::env::var("CRAC_E2E_LISTEN").unwrap()).unwrap();
    let _claim = crac::claim_fd(&listener, "carried listener");
    let restore = crac::checkpoint_restore().unwrap();
    say(&format!("listening {:?}", restore.outcome()));
    std::thread::sleep(Duration::from_secs(3));
    std::process::exit(7);
}

/// A blocking server under `crac run --every`: a `crac::BlockingListener` on
/// `CRAC_E2E_LISTEN` (a restored copy binds `CRAC_E2E_PORT` when given), a thread per
/// connection answering each line with `pong`, warm at `ready()`, then a consistent
/// point every 100 ms.
fn blocking_server() -> ! {
    use std::io::BufRead as _;
    let listener = crac::BlockingListener::bind(std::env::var("CRAC_E2E_LISTEN").unwrap())
        .unwrap()
        .restore_address_from("CRAC_E2E_PORT");
    crac::ready().unwrap();
    std::thread::spawn(move || {
        loop {
            let Ok((connection, _)) = listener.accept() else {
                continue;
            };
            std::thread::spawn(move || {
                let mut lines = std::io::BufReader::new(&*connection);
                let mut line = String::new();
                while matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
                    if (&*connection).write_all(b"pong\n").is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Err(e) = crac::at_consistent_point() {
            say(&format!("periodic checkpoint failed: {e}"));
        }
    }
}

/// The guide's direct pattern (docs/crac-run.md) in a program that also calls ready().
fn ready_then_direct() -> ! {
    let first = crac::ready().unwrap().map(|r| r.outcome());
    let second = crac::checkpoint_restore().map(|r| r.outcome());
    say(&format!("direct after ready {first:?}: {second:?}"));
    std::process::exit(7);
}

fn clock() -> ! {
    let (monotonic, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
    let restore = crac::checkpoint_restore().unwrap();
    say(&format!(
        "clock {:?} monotonic {} wall {} checkpointed_for {} kept {:?}",
        restore.outcome(),
        monotonic.elapsed().as_millis(),
        wall.elapsed().unwrap().as_millis(),
        restore.checkpointed_for.unwrap().as_millis(),
        restore.monotonic_time_kept
    ));
    std::process::exit(7);
}

fn unique(index: &Index) -> ! {
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

fn deadline(phase: &str, index: &Index) -> ! {
    let stalls = Arc::new(Stalls {
        at_checkpoint: phase == "checkpoint",
    });
    crac::register(&stalls);
    match crac::checkpoint_restore() {
        Ok(restore) => say(&format!("deadline {:?}", restore.outcome())),
        Err(e) => say(&format!("deadline error {e}")),
    }
    // The late hook prints when it ends.
    std::thread::sleep(Duration::from_secs(1));
    say(&format!("still running checksum {}", index.checksum()));
    std::process::exit(7);
}

fn restore_env() -> ! {
    let listen = Arc::new(Listen {
        port: AtomicU16::new(8080),
    });
    crac::register(&listen);
    let outcome = match crac::checkpoint_restore() {
        Ok(restore) => format!("{:?}", restore.outcome()),
        Err(e) => format!("error {e}"),
    };
    say(&format!(
        "port {} {outcome}",
        listen.port.load(Ordering::SeqCst)
    ));
    std::process::exit(7);
}

fn reopen() -> ! {
    let path = std::env::var("CRAC_E2E_LOG").unwrap();
    let journal = Arc::new(Journal {
        log: Mutex::new(std::fs::File::create(path).unwrap()),
    });
    crac::register(&journal);
    journal.log.lock().unwrap().write_all(b"before\n").unwrap();
    let outcome = match crac::checkpoint_restore() {
        Ok(restore) => format!("{:?}", restore.outcome()),
        Err(e) => format!("error {e}"),
    };
    let written = match journal.log.lock().unwrap().write_all(b"after\n") {
        Ok(()) => "written".to_string(),
        Err(e) => format!("not written: {e}"),
    };
    say(&format!("journal {outcome}; after {written}"));
    std::process::exit(7);
}

fn args() -> ! {
    let upstream = Arc::new(Upstream);
    crac::register(&upstream);
    let restore = crac::checkpoint_restore().unwrap();
    say(&format!(
        "restored args {:?} env {:?}",
        restore.args, restore.env
    ));
    std::process::exit(7);
}

fn ready(index: &Index) -> ! {
    let restore = crac::ready().unwrap();
    say(&format!(
        "ready {:?} checksum {}",
        restore.map(|r| r.outcome()),
        index.checksum()
    ));
    say("exiting 7");
    std::process::exit(7);
}

/// A copy saying who it is: the `E2E_COPY` it was given at restore, its state, the line
/// it reads on its stdin, how much monotonic and wall-clock time passed since before
/// `ready()`, and whether the restorer says the monotonic clock was kept.
fn ready_copy(index: &Index) -> ! {
    let (before, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
    let restore = crac::ready().unwrap();
    let copy = restore
        .as_ref()
        .and_then(|r| r.env.iter().find(|(k, _)| k == "E2E_COPY"))
        .map(|(_, v)| v.clone());
    let kept = restore.as_ref().and_then(|r| r.monotonic_time_kept);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    say(&format!(
        "copy {copy:?} checksum {} stdin {:?} monotonic {} wall {} kept {kept:?}",
        index.checksum(),
        line.trim_end(),
        before.elapsed().as_millis(),
        wall.elapsed().unwrap().as_millis()
    ));
    std::process::exit(7);
}

/// A service loop: work, then a consistent point; after two images it crashes, or
/// (`-exit`) exits by itself with a code a shell would read as a signal, or
/// (`-forever`) goes on until it is stopped.
fn periodic(variant: &str) -> ! {
    let mut images = 0;
    for round in 0.. {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(restore) = crac::at_consistent_point().unwrap() {
            say(&format!(
                "periodic {:?} at round {round}",
                restore.outcome()
            ));
            if restore.is_restored() && variant != "-forever" {
                say("exiting 7");
                std::process::exit(7);
            }
            images += 1;
            if images == 2 && variant == "-exit" {
                say("exiting 137");
                std::process::exit(137);
            }
            if images == 2 && variant.is_empty() {
                say("crashing");
                std::process::abort();
            }
        }
    }
    unreachable!("the rounds never end")
}

fn on_request(index: &Index, server: &Server) -> ! {
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

fn forever() -> ! {
    let restore = crac::checkpoint_restore().unwrap();
    say(&format!("round 1 outcome {:?}", restore.outcome()));
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One lineage: every restored copy reports what it holds, then checkpoints again.
fn soak(index: &Index) -> ! {
    loop {
        let restore = crac::checkpoint_restore().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        say(&format!(
            "soak generation {} fds {} threads {} rss_kb {} checksum {}",
            restore.generation,
            std::fs::read_dir("/proc/self/fd").unwrap().count(),
            field("Threads:"),
            field("VmRSS:"),
            index.checksum()
        ));
    }
}

/// What `unix-peer`, `open-file`, `tcp` and `tcp-peer` hold across the checkpoint on
/// purpose, for the open-resource check to find.
fn hold_on_purpose(scenario: &str) -> impl Sized {
    let peer = (scenario == "unix-peer").then(|| {
        std::os::unix::net::UnixStream::connect(std::env::var("CRAC_E2E_UNIX_PEER").unwrap())
            .unwrap()
    });
    let file = (scenario == "open-file").then(|| std::fs::File::open("/etc/hostname").unwrap());
    let tcp = (scenario == "tcp").then(|| {
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
    let tcp_peer = (scenario == "tcp-peer").then(|| {
        std::net::TcpStream::connect(std::env::var("CRAC_E2E_TCP_PEER").unwrap()).unwrap()
    });
    (peer, file, tcp, tcp_peer)
}

/// The plain scenarios: one checkpoint (two for `twice`), each outcome printed.
fn checkpoint_rounds(scenario: &str, index: &Index) -> ! {
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

/// Checkpoints with secrets in `#[crac(secret)]` fields and in two secret environment
/// variables (`CRAC_E2E_OPERATOR_SECRET`, named by the operator's `CRAC_SECRET_ENV`, and
/// `CRAC_E2E_CODE_SECRET`, named here), each read the way programs read them (copies,
/// freed), one set again (so the initial block's copy is no longer the one libc
/// uses); then prints what it holds after the restore, left-running checkpoint or
/// failed dump.
fn secrets() -> ! {
    crac::secret_env("CRAC_E2E_CODE_SECRET").unwrap();
    let vault = Arc::new(Vault::from_seed());
    crac::register(&vault);
    let read = |name: &str| std::env::var(name).unwrap_or_else(|_| "unset".into());
    // SAFETY: the scenario has a single thread here.
    unsafe { std::env::set_var("CRAC_E2E_CODE_SECRET", read("CRAC_E2E_CODE_SECRET").trim()) };
    let lengths = read("CRAC_E2E_OPERATOR_SECRET").len() + read("CRAC_E2E_CODE_SECRET").len();
    say(&format!(
        "secrets read {lengths} bytes of secret environment"
    ));
    let outcome = match crac::checkpoint_restore() {
        Ok(restore) => {
            let mut listed: Vec<&str> = restore.env.iter().map(|(k, _)| k.as_str()).collect();
            listed.sort_unstable();
            format!("{:?} listed {listed:?}", restore.outcome())
        }
        Err(e) => format!("error {}", e.to_string().lines().next().unwrap_or("")),
    };
    let plain = vault.plain.lock().unwrap().clone();
    say(&format!(
        "secrets {outcome} key {} token-len {} plain {plain} operator {} code {}",
        vault.key.lock().unwrap(),
        vault.token.lock().unwrap().len(),
        read("CRAC_E2E_OPERATOR_SECRET"),
        read("CRAC_E2E_CODE_SECRET"),
    ));
    std::process::exit(7);
}

/// A tokio runtime of the given flavor (`multi` or `current`) with its I/O, timer and
/// signal drivers in use — their epoll, eventfd and socketpair fds are open at the
/// checkpoint — checkpointed from a blocking task, then used again after the restore.
fn tokio_service(flavor: &str, index: &Index) -> ! {
    let mut builder = match flavor {
        "multi" => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build().unwrap();
    let line = runtime.block_on(async {
        let _signals =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let outcome = tokio::task::spawn_blocking(crac::checkpoint_restore)
            .await
            .unwrap()
            .map(|r| format!("{:?}", r.outcome()))
            .unwrap_or_else(|e| format!("error {e}"));
        // the runtime's drivers work after the restore: a timer and a TCP round trip
        tokio::time::sleep(Duration::from_millis(10)).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut byte = [0u8];
            tokio::io::AsyncReadExt::read_exact(&mut socket, &mut byte)
                .await
                .unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut socket, &byte)
                .await
                .unwrap();
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"x")
            .await
            .unwrap();
        let mut byte = [0u8];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut byte)
            .await
            .unwrap();
        echo.await.unwrap();
        format!("tokio {outcome} echo {}", byte[0] as char)
    });
    say(&format!("{line} checksum {}", index.checksum()));
    std::process::exit(7);
}
