//! The program under test, run by this executable when `CRAC_E2E_SCENARIO` names a
//! scenario: it warms up state, checkpoints through the `crac` API, and prints each
//! step (hooks, outcomes, a checksum of its state) for the tests to compare.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crac::{BoxError, Checkpoint, Checkpointable, Restore};

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
        restored: AtomicBool::new(false),
    });
    crac::register(&index);
    crac::register(&server);
    say(&format!(
        "pid {} checksum {}",
        std::process::id(),
        index.checksum()
    ));

    if scenario == "carried-listener" {
        // a listening socket the program keeps through the checkpoint, on purpose
        let listener =
            std::net::TcpListener::bind(std::env::var("CRAC_E2E_LISTEN").unwrap()).unwrap();
        let _claim = crac::claim_fd(&listener, "carried listener");
        let restore = crac::checkpoint_restore().unwrap();
        say(&format!("listening {:?}", restore.outcome()));
        std::thread::sleep(Duration::from_secs(3));
        std::process::exit(7);
    }
    if scenario == "ready-then-direct" {
        // the README's direct pattern in a program that also calls ready()
        let first = crac::ready().unwrap().map(|r| r.outcome());
        let second = crac::checkpoint_restore().map(|r| r.outcome());
        say(&format!("direct after ready {first:?}: {second:?}"));
        std::process::exit(7);
    }
    if scenario == "clock" {
        let (monotonic, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
        let restore = crac::checkpoint_restore().unwrap();
        say(&format!(
            "clock {:?} monotonic {} wall {} checkpointed_for {}",
            restore.outcome(),
            monotonic.elapsed().as_millis(),
            wall.elapsed().unwrap().as_millis(),
            restore.checkpointed_for.unwrap().as_millis()
        ));
        std::process::exit(7);
    }
    if let Some(flavor) = scenario.strip_prefix("tokio-") {
        tokio_service(flavor, &index);
    }
    // Held across the checkpoint on purpose, for the open-resource check to find.
    let _peer = (scenario == "unix-peer").then(|| {
        std::os::unix::net::UnixStream::connect(std::env::var("CRAC_E2E_UNIX_PEER").unwrap())
            .unwrap()
    });
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
    if let Some(variant) = scenario.strip_prefix("periodic") {
        // a service loop: work, then a consistent point; after two images it crashes,
        // or (`-exit`) exits by itself with a code a shell would read as a signal, or
        // (`-forever`) goes on until it is stopped
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
    if scenario == "forever" {
        let restore = crac::checkpoint_restore().unwrap();
        say(&format!("round 1 outcome {:?}", restore.outcome()));
        loop {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if scenario == "soak" {
        // One lineage: every restored copy reports what it holds, then checkpoints again.
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
