//! Real services under `crac run`, with a real redis-server, built by `scripts/test.sh`
//! (`cargo build --features axum --example axum_service --example stream_pipeline`):
//!
//! - `examples/axum_service.rs` (axum on a multi-thread tokio runtime, a warm cache, a
//!   redis connection) and HTTP clients: the first run is checkpointed at `ready()` and
//!   restored at once; three more copies restore from the image concurrently, each on
//!   its own port; a copy restored while redis is down answers 503 until redis is back.
//! - `examples/stream_pipeline.rs`, the seeds' Kafka workloads on Redis Streams: a
//!   producer checkpointed with batches in flight delivers every message exactly once; a
//!   state store checkpointed at consistent points that crashes resumes from its last
//!   image without counting anything twice.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{KillOnDrop, crac_bin, setup, tests};
use crate::redis_server::RedisServer;

tests![
    an_axum_service_with_redis_restores_as_many_copies_and_outlives_a_redis_outage,
    the_axum_service_on_a_current_thread_runtime_restores_too,
    a_producer_checkpointed_with_batches_in_flight_delivers_every_message_once,
    a_state_store_that_crashes_resumes_from_its_last_consistent_image,
];

/// An example binary: target/debug/deps/e2e-… → target/debug/examples/NAME.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build --features axum --example \
         {name}` (scripts/test.sh does)",
        binary.display()
    );
    binary
}

pub(crate) fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// `GET path` on `port` with a fresh connection: the status and the body, retried until
/// something answers (a restored copy binds within milliseconds; a first run warms up).
pub(crate) fn http_get(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        });
        if let Ok(response) = attempt
            && let Some((head, body)) = response.split_once("\r\n\r\n")
        {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return (status, body.to_string());
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `item 7 = VALUE (hits N, instance ID)` → (VALUE, N, ID).
fn parse(body: &str) -> (String, u64, String) {
    let words: Vec<&str> = body.split_whitespace().collect();
    let value = words[3].to_string();
    let hits = words[5].trim_end_matches(',').parse().unwrap();
    let instance = words[7].trim_end_matches(')').to_string();
    (value, hits, instance)
}

/// A `crac run` or `crac restore` of the service, stopped as an operator would: SIGTERM,
/// which it forwards to the service, then a wait for both to end.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: a plain kill of our own child; harmless if it is gone.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                drop(KillOnDrop(self.0.id()));
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) fn start(mut command: Command) -> Running {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// `crac run` of the axum service (16 MB cache) on `port`, with `redis`, on a tokio
/// runtime of the given flavor.
fn run_service(image: &Path, redis: &RedisServer, port: u16, runtime: &str) -> Running {
    let mut run = Command::new(crac_bin());
    run.args(["run", "--image", image.to_str().unwrap()])
        .args(["--env", &format!("REDIS_URL={}", redis.url())])
        .args(["--env", &format!("ADDR=127.0.0.1:{port}")])
        .args(["--env", "CACHE_MB=16"])
        .args(["--env", &format!("TOKIO_RUNTIME={runtime}"), "--"])
        .arg(example("axum_service"));
    start(run)
}

/// `crac restore` of the service's image as a copy listening on `port`.
pub(crate) fn restore_copy(image: &Path, port: u16) -> Running {
    let mut restore = Command::new(crac_bin());
    restore
        .args(["restore", image.to_str().unwrap()])
        .args(["--env", &format!("PORT={port}")]);
    start(restore)
}

fn an_axum_service_with_redis_restores_as_many_copies_and_outlives_a_redis_outage() {
    let (_, image) = setup("axum-service");
    let redis = RedisServer::start();
    let first_port = free_port();
    let _first = run_service(&image, &redis, first_port, "multi_thread");
    let (status, body) = http_get(first_port, "/item/7");
    assert_eq!(status, 200, "{body}");
    let (value, hits, first_instance) = parse(&body);
    assert_eq!(hits, 1, "{body}");

    let copies: Vec<(u16, Running)> = (0..3)
        .map(|_| {
            let port = free_port();
            (port, restore_copy(&image, port))
        })
        .collect();
    let mut instances = vec![first_instance];
    for (port, _) in &copies {
        let (status, body) = http_get(*port, "/item/7");
        assert_eq!(status, 200, "{body}");
        let (copy_value, _, instance) = parse(&body);
        assert_eq!(copy_value, value, "the warm cache came back");
        instances.push(instance);
    }
    let (_, body) = http_get(first_port, "/item/7");
    assert_eq!(
        parse(&body).1,
        5,
        "one redis counts every copy's hit: {body}"
    );
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 4, "every copy has its own instance id");

    // a copy restored while redis is down starts, answers 503, then recovers
    let redis_port = redis.port;
    drop(redis);
    let port = free_port();
    let _late = restore_copy(&image, port);
    let (status, body) = http_get(port, "/item/7");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("connecting `redis`: "), "{body}");
    let _redis = RedisServer::start_on(redis_port);
    let (status, body) = http_get(port, "/item/7");
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body).0, value);
}

fn the_axum_service_on_a_current_thread_runtime_restores_too() {
    let (_, image) = setup("axum-current-thread");
    let redis = RedisServer::start();
    let port = free_port();
    let _first = run_service(&image, &redis, port, "current_thread");
    let (status, body) = http_get(port, "/item/3");
    assert_eq!(status, 200, "{body}");
    let copy_port = free_port();
    let _copy = restore_copy(&image, copy_port);
    let (status, copy_body) = http_get(copy_port, "/item/3");
    assert_eq!(status, 200, "{copy_body}");
    assert_eq!(parse(&copy_body).0, parse(&body).0);
    assert_eq!(parse(&copy_body).1, 2, "{copy_body}");
}

/// The `seq` values of every message in the stream, in order, read with `redis-cli`.
fn stream_seqs(redis: &RedisServer, stream: &str) -> Vec<u64> {
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--raw",
            "XRANGE",
            stream,
            "-",
            "+",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|pair| pair[0] == "seq")
        .map(|pair| pair[1].parse().unwrap())
        .collect()
}

/// `crac run --image IMAGE EXTRA -- stream_pipeline MODE` to its end: its stdout.
fn pipeline(image: &std::path::Path, redis: &RedisServer, mode: &str, extra: &[&str]) -> String {
    let out = Command::new(crac_bin())
        .args(["run", "--image", image.to_str().unwrap()])
        .args([
            "--env",
            &format!("REDIS_URL={}", redis.url()),
            "--env",
            "MESSAGES=400",
        ])
        .args(extra)
        .arg("--")
        .arg(example("stream_pipeline"))
        .arg(mode)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    stdout
}

fn a_producer_checkpointed_with_batches_in_flight_delivers_every_message_once() {
    let (_, image) = setup("producer");
    let redis = RedisServer::start();
    let stdout = pipeline(&image, &redis, "produce", &[]);
    let lines: Vec<&str> = stdout.lines().collect();
    let in_flight: u64 = lines[0]
        .strip_prefix("in flight at the checkpoint: ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap();
    assert!(
        in_flight > 0,
        "the checkpoint came with batches in flight: {stdout}"
    );
    assert_eq!(
        lines[1..],
        ["produced 400"],
        "the restored copy finished the run"
    );
    let mut seqs = stream_seqs(&redis, "events");
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..400).collect::<Vec<u64>>(),
        "none lost, none twice"
    );
}

fn a_state_store_that_crashes_resumes_from_its_last_consistent_image() {
    let (dir, image) = setup("state-store");
    let redis = RedisServer::start();
    pipeline(&dir.join("producer-image"), &redis, "produce", &[]);
    let marker = dir.join("crashed");
    let stdout = pipeline(
        &image,
        &redis,
        "consume",
        &[
            "--every",
            "1",
            "--on",
            "request",
            "--env",
            "CRASH_AFTER=250",
            "--env",
            "PAUSE_MS=50",
            "--env",
            &format!("CRASH_MARKER={}", marker.display()),
        ],
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("crashing after "), "{stdout}");
    assert!(
        lines[1].starts_with("resumed at offset "),
        "from the last image: {stdout}"
    );
    let truth: Vec<String> = (0..7)
        .map(|k| format!("k{k}={}", (0..400u64).filter(|seq| seq % 7 == k).count()))
        .collect();
    assert_eq!(
        lines[2],
        format!("consumed 400 counts {}", truth.join(",")),
        "every message counted once: {stdout}"
    );
}
