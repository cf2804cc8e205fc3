//! `crac::tokio::Listener` under `axum::serve` (feature `axum`), through checkpoints
//! with an engine that reports a restore: a request in flight finishes, an idle
//! keep-alive connection is closed at once, a request busy past the deadline refuses
//! the checkpoint by its peer, and the listener binds again — to the restore-time port
//! when one is given. The clients are plain TCP sockets speaking HTTP/1.1.

mod common;
// in its own module: only these tests register the engine
#[path = "common/restoring.rs"]
mod restoring;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing;
use restoring::PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Signalled by the slow handler once it runs: the request is in flight.
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn serve(deadline: Duration) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/", routing::get(|| async { "hello" }))
        .route(
            "/slow",
            routing::get(|| async {
                SLOW_STARTED.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow"
            }),
        );
    let listener = crac::tokio::Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .restore_address_from("CRAC_TEST_PORT")
        .with_drain_deadline(deadline);
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// One request on `stream`, keeping it alive; the response body.
async fn get_on(stream: &mut TcpStream, path: &str) -> std::io::Result<String> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Ok(body[..length].to_string());
            }
        }
    }
}

async fn get(address: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    get_on(&mut TcpStream::connect(address).await?, path).await
}

fn on_runtime(test: impl std::future::Future<Output = ()>) {
    common::on_runtime("restoring", test);
}

#[test]
fn in_flight_requests_finish_idle_connections_close_and_the_listener_comes_back() {
    on_runtime(async {
        *PORT.lock().unwrap() = None;
        let address = serve(Duration::from_secs(10)).await;
        let mut idle = TcpStream::connect(address).await.unwrap();
        assert_eq!(get_on(&mut idle, "/").await.unwrap(), "hello");
        let in_flight = tokio::spawn(get(address, "/slow"));
        SLOW_STARTED.notified().await; // the request is being handled

        let started = Instant::now();
        let restore = crac::tokio::checkpoint_restore().await.unwrap();
        assert!(restore.is_restored());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the idle connection did not hold the drain up: {:?}",
            started.elapsed()
        );
        assert_eq!(
            in_flight.await.unwrap().unwrap(),
            "slow",
            "finished, not cut"
        );
        let mut byte = [0u8];
        assert_eq!(
            idle.read(&mut byte).await.unwrap(),
            0,
            "idle connection closed"
        );
        assert_eq!(get(address, "/").await.unwrap(), "hello", "serving again");
    });
}

#[test]
fn a_request_busy_past_the_deadline_refuses_the_checkpoint_by_peer_and_serving_goes_on() {
    on_runtime(async {
        *PORT.lock().unwrap() = None;
        let address = serve(Duration::from_millis(50)).await;
        let mut busy = TcpStream::connect(address).await.unwrap();
        let peer = busy.local_addr().unwrap();
        let slow = tokio::spawn(async move { get_on(&mut busy, "/slow").await });
        SLOW_STARTED.notified().await;
        let error = crac::tokio::checkpoint_restore().await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("1 connection(s) still busy after 50ms: {peer}")),
            "{error}"
        );
        assert_eq!(slow.await.unwrap().unwrap(), "slow");
        assert_eq!(
            get(address, "/").await.unwrap(),
            "hello",
            "rolled back: serving"
        );
    });
}

#[test]
fn after_a_restore_the_listener_binds_to_the_port_given_at_restore_time() {
    on_runtime(async {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let new_port = free.local_addr().unwrap().port();
        drop(free);
        *PORT.lock().unwrap() = Some(new_port);
        let address = serve(Duration::from_secs(10)).await;
        crac::tokio::checkpoint_restore().await.unwrap();
        *PORT.lock().unwrap() = None;
        let moved = std::net::SocketAddr::new(address.ip(), new_port);
        assert_eq!(get(moved, "/").await.unwrap(), "hello");
        assert!(get(address, "/").await.is_err(), "the old port is closed");
    });
}

#[test]
fn the_plan_shows_the_listener_where_it_was_bound() {
    on_runtime(async {
        let (listener, line) = (crac::tokio::Listener::bind("127.0.0.1:0").await, line!());
        let _listener = listener.unwrap();
        let plan = crac::plan();
        let entry = plan.entries.iter().find(|e| e.location.file() == file!());
        assert_eq!(entry.map(|e| e.location.line()), Some(line), "{plan}");
    });
}
