//! Left-running checkpoints keep serving: `examples/axum_service.rs` under `crac run
//! --every 1` answers every request, on new and keep-alive connections, across several
//! periodic checkpoints (its listener keeps its socket and connections; the kernel queues
//! what arrives while CRIU has it frozen) and its redis `Client` its connection (redis
//! sees the same client throughout); then the service is stopped and two concurrent
//! copies restored from its last periodic image each serve on their own port, and take
//! no periodic checkpoint into that image (their restorer gave them no interval); a
//! third, given one, takes them into the directory it was given.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{crac_bin, crac_run_command, setup, tests};
use crate::pools::client_ids;
use crate::redis_server::RedisServer;
use crate::services::{Running, example, free_port, http_get, start};

tests![
    periodic_checkpoints_fail_no_request_and_the_last_image_restores_as_copies,
    a_blocking_server_keeps_serving_through_periodic_checkpoints_and_its_image_restores,
];

/// One request on `stream` (kept alive): the status, or what went wrong.
fn keep_alive_get(stream: &mut BufReader<TcpStream>, n: u32) -> Result<u16, String> {
    write!(
        stream.get_mut(),
        "GET /item/{n} HTTP/1.1\r\nhost: test\r\n\r\n"
    )
    .map_err(|e| format!("sending: {e}"))?;
    let mut status = 0;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line) {
            Ok(0) => return Err("the connection was closed".into()),
            Err(e) => return Err(format!("reading: {e}")),
            Ok(_) => {}
        }
        if status == 0 {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        } else if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        } else if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok(status)
}

/// One request on a new connection.
fn new_connection_get(port: u16, n: u32) -> Result<u16, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connecting: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    keep_alive_get(&mut BufReader::new(stream), n)
}

/// Sends requests to `port` until `stop`, on one kept-alive connection or each on a new
/// one; every failure (an error or a status other than 200) is added to `failures`.
fn client(port: u16, keep_alive: bool, stop: &AtomicBool, failures: &Mutex<Vec<String>>) -> u32 {
    let mut sent = 0;
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        sent += 1;
        let outcome = if keep_alive {
            let stream = match connection.as_mut() {
                Some(stream) => Ok(stream),
                None => TcpStream::connect(("127.0.0.1", port)).map(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    connection.insert(BufReader::new(s))
                }),
            };
            stream
                .map_err(|e| format!("connecting: {e}"))
                .and_then(|s| keep_alive_get(s, sent))
        } else {
            new_connection_get(port, sent)
        };
        match outcome {
            Ok(200) => {}
            Ok(status) => lock(failures).push(format!("request {sent}: status {status}")),
            Err(e) => {
                connection = None;
                lock(failures).push(format!("request {sent} (keep-alive {keep_alive}): {e}"));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sent
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

/// When the image's manifest was last written: each periodic checkpoint writes a new one.
/// One `load` thread for each of `modes` on `port` (a client keeping its connection
/// open or not), until `image` has been seen written four times — the image seen first
/// and three periodic ones after it (each dump takes a while), within 40 s: the requests
/// sent, those that failed, and the images' times.
fn under_load(
    port: u16,
    modes: &[bool],
    image: &Path,
    load: fn(u16, bool, &AtomicBool, &Mutex<Vec<String>>) -> u32,
) -> (u32, Vec<String>, Vec<SystemTime>) {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = modes
        .iter()
        .map(|&mode| {
            let (stop, failures) = (Arc::clone(&stop), Arc::clone(&failures));
            std::thread::spawn(move || load(port, mode, &stop, &failures))
        })
        .collect();
    let mut images = Vec::new();
    let until = Instant::now() + Duration::from_secs(40);
    while images.len() < 4 && Instant::now() < until {
        if let Some(written) = image_written(image)
            && images.last() != Some(&written)
        {
            images.push(written);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let failures = lock(&failures).clone();
    (sent, failures, images)
}

fn image_written(image: &Path) -> Option<SystemTime> {
    std::fs::metadata(image.join("crac-manifest"))
        .ok()?
        .modified()
        .ok()
}

fn periodic_checkpoints_fail_no_request_and_the_last_image_restores_as_copies() {
    let (_, image) = setup("keep-serving");
    let redis = RedisServer::start();
    let port = free_port();
    let mut run = Command::new(crac_bin());
    run.args(["run", "--every", "1", "--image", image.to_str().unwrap()])
        .args(["--env", &format!("REDIS_URL={}", redis.url())])
        .args(["--env", &format!("ADDR=127.0.0.1:{port}")])
        .args(["--env", "CACHE_MB=16", "--"])
        .arg(example("axum_service"));
    let service = start(run);
    assert_eq!(http_get(port, "/item/1").0, 200, "the service serves");
    // the service's redis connection (the asking one, the newest, left out)
    let mut service_ids = client_ids(&redis);
    service_ids.sort_unstable();
    service_ids.pop();

    let (sent, failures, images) = under_load(port, &[false, true, false, true], &image, client);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed across {} periodic checkpoints; the first: {:#?}",
        failures.len(),
        images.len() - 1,
        &failures[..failures.len().min(10)]
    );
    assert!(
        images.len() >= 4,
        "three periodic images were taken during the load: {}",
        images.len() - 1
    );
    let open = client_ids(&redis);
    assert!(
        !service_ids.is_empty() && service_ids.iter().all(|id| open.contains(id)),
        "the service kept its redis connection {service_ids:?} across the periodic \
         checkpoints: redis has {open:?}"
    );
    drop(service);

    // The last periodic image, restored twice at once, each copy on a port of its own:
    // the image's copies of the connections are gone, the listener binds afresh.
    let copies: Vec<(u16, Running)> = (0..2)
        .map(|k| {
            let copy_port = free_port();
            let log = image.with_file_name(format!("copy-{k}.log"));
            let copy = Command::new(crac_bin())
                .args(["restore", image.to_str().unwrap()])
                .args(["--env", &format!("PORT={copy_port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let copy = Running(copy);
            // the next copy restores once this one has moved off the image's address
            let until = Instant::now() + Duration::from_secs(60);
            while new_connection_get(copy_port, 2) != Ok(200) {
                assert!(
                    Instant::now() < until,
                    "the copy restored with PORT={copy_port} does not answer: {}",
                    std::fs::read_to_string(&log).unwrap()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            (copy_port, copy)
        })
        .collect();
    for (copy_port, _) in &copies {
        let (status, body) = http_get(*copy_port, "/item/3");
        assert_eq!(status, 200, "copy on {copy_port} still serves: {body}");
    }
    // The copies inherited `--every 1` from the process they were copied from, and
    // reach consistent points: none of them writes into the image it came from.
    let last = image_written(&image);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        image_written(&image),
        last,
        "copies restored by `crac restore` take no periodic checkpoint unless asked"
    );
    drop(copies);

    a_copy_given_an_interval_checkpoints_into_its_own_directory(&image, last);
}

/// `crac restore --env CRAC_CHECKPOINT_INTERVAL=1` with a directory of its own: periodic
/// images there, none into `image` (last written at `last`).
fn a_copy_given_an_interval_checkpoints_into_its_own_directory(
    image: &Path,
    last: Option<SystemTime>,
) {
    let own = image.with_file_name("copy-images");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let copy_port = free_port();
    let _copy = Running(
        Command::new(crac_bin())
            .args(["restore", image.to_str().unwrap()])
            .args(["--env", &format!("PORT={copy_port}")])
            .args(["--env", "CRAC_CHECKPOINT_INTERVAL=1"])
            .args(["--env", &format!("CRAC_CHECKPOINT_TO={}", own.display())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while image_written(&own).is_none() {
        assert!(
            Instant::now() < until,
            "a copy given an interval takes periodic checkpoints into its own directory"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(image_written(image), last, "and not into the original's");
}

/// `ping` and its `pong` on `stream`, kept open.
fn ping(stream: &mut BufReader<TcpStream>) -> Result<(), String> {
    stream
        .get_mut()
        .write_all(b"ping\n")
        .map_err(|e| format!("sending: {e}"))?;
    let mut line = String::new();
    match stream.read_line(&mut line) {
        Ok(_) if line == "pong\n" => Ok(()),
        Ok(_) => Err(format!("answered {line:?}")),
        Err(e) => Err(format!("reading: {e}")),
    }
}

fn connect(port: u16) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connecting: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Ok(BufReader::new(stream))
}

/// Pings `port` until `stop`, on one kept-open connection or each on a new one; every
/// failure is added to `failures`. Returns how many were sent.
fn pinger(port: u16, kept_open: bool, stop: &AtomicBool, failures: &Mutex<Vec<String>>) -> u32 {
    let mut sent = 0;
    let mut open: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        sent += 1;
        let outcome = match open.take() {
            Some(stream) if kept_open => Ok(stream),
            _ => connect(port),
        }
        .and_then(|mut stream| ping(&mut stream).map(|()| stream));
        match outcome {
            Ok(stream) => open = Some(stream),
            Err(e) => lock(failures).push(format!("ping {sent} (kept open {kept_open}): {e}")),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sent
}

fn a_blocking_server_keeps_serving_through_periodic_checkpoints_and_its_image_restores() {
    let (_, image) = setup("blocking-keep");
    let port = free_port();
    let listen = format!("CRAC_E2E_LISTEN=127.0.0.1:{port}");
    let exe = std::env::current_exe().unwrap();
    let service = start(crac_run_command(
        &exe,
        &image,
        "blocking-server",
        &["--every", "1", "--env", &listen],
    ));
    let until = Instant::now() + Duration::from_secs(60);
    while connect(port).and_then(|mut s| ping(&mut s)).is_err() {
        assert!(
            Instant::now() < until,
            "the blocking server does not answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sent, failures, images) = under_load(port, &[false, true], &image, pinger);
    assert!(
        failures.is_empty(),
        "{} of {sent} pings failed across {} periodic checkpoints; the first: {:#?}",
        failures.len(),
        images.len().saturating_sub(1),
        &failures[..failures.len().min(10)]
    );
    assert!(
        images.len() >= 4,
        "three periodic images: {}",
        images.len().saturating_sub(1)
    );
    drop(service);

    // The last periodic image restores: the copy binds afresh where it is told.
    let copy_port = free_port();
    let _copy = start({
        let mut copy = Command::new(crac_bin());
        copy.args(["restore", image.to_str().unwrap()])
            .args(["--env", &format!("CRAC_E2E_PORT={copy_port}")]);
        copy
    });
    let until = Instant::now() + Duration::from_secs(60);
    while let Err(e) = connect(copy_port).and_then(|mut s| ping(&mut s)) {
        assert!(
            Instant::now() < until,
            "the restored copy does not answer: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
