//! `crac::tokio::Listener` under `axum::serve` (feature `axum`), through checkpoints
//! with an engine that reports a restore: a request in flight finishes, an idle
//! keep-alive connection is closed at once, a request busy past the deadline refuses
//! the checkpoint by its peer, a keep-alive client that always has its next request in
//! flight is ended between two responses, and the listener binds again — to the
//! restore-time port when one is given. The clients are plain TCP sockets speaking HTTP/1.1.

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

/// Requests to `/count` handled.
static COUNTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Signalled by the slow handler once it runs: the request is in flight.
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn serve(deadline: Duration) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/", routing::get(|| async { "hello" }))
        .route(
            "/count",
            routing::get(|| async {
                COUNTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "hello"
            }),
        )
        .route(
            "/work",
            routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                "hello"
            }),
        )
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

/// Sends `GET /work` (a request that takes a moment: hyper reads on while it runs) on one
/// keep-alive connection, pipelined eight deep: the next request is always
/// sent before the response to the last one is in, until `stop`. Requests left unanswered
/// when the connection closes between two responses are sent again on a new connection,
/// as HTTP clients do; a response cut short panics. Returns (responses, connections
/// closed).
async fn keep_sending(
    address: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u32, u32) {
    use std::sync::atomic::Ordering;
    const REQUEST: &[u8] = b"GET /work HTTP/1.1\r\nhost: test\r\n\r\n";
    const RESPONSE_END: &[u8] = b"\r\n\r\nhello";
    let (mut responses, mut closed) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        // the listener is closed while it checkpoints: try again shortly
        let Ok(mut connection) = TcpStream::connect(address).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let mut pending = Vec::new(); // bytes of the response under way
        let mut chunk = [0u8; 1024];
        let mut open = connection.write_all(&REQUEST.repeat(8)).await.is_ok();
        while open && !stop.load(Ordering::SeqCst) {
            match connection.read(&mut chunk).await {
                Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
                _ => break,
            }
            while let Some(end) = pending
                .windows(RESPONSE_END.len())
                .position(|w| w == RESPONSE_END)
            {
                pending.drain(..end + RESPONSE_END.len());
                responses += 1;
                open = connection.write_all(REQUEST).await.is_ok();
            }
        }
        assert!(
            pending.is_empty() || stop.load(Ordering::SeqCst),
            "a response cut short: {:?}",
            String::from_utf8_lossy(&pending)
        );
        closed += 1;
    }
    (responses, closed)
}

#[test]
fn keep_alive_clients_with_the_next_request_always_in_flight_do_not_hold_the_drain_up() {
    on_runtime(async {
        *PORT.lock().unwrap() = None;
        let address = serve(Duration::from_secs(3)).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..2)
            .map(|_| tokio::spawn(keep_sending(address, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await; // both busy

        let started = Instant::now();
        let restore = crac::tokio::checkpoint_restore().await;
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await; // serving again
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(restore.unwrap().is_restored(), "drained in {took:?}");
        assert!(took < Duration::from_secs(1), "the drain took {took:?}");
        for client in clients {
            let (responses, closed) = client.await.unwrap();
            assert!(responses > 10, "{responses} responses");
            assert!(
                closed >= 2,
                "the connection was ended between two responses"
            );
        }
    });
}

/// Pipelined requests that hyper has already read into its buffer when a drain starts:
/// each one the application was handed is answered in full; hyper hands over the next
/// one it holds right after a response, but once it reads the socket again it sees the
/// end of the stream, and those it still holds are dropped without reaching the
/// application. The connection then ends cleanly after the last response, and the
/// client sends them again on a new connection, as HTTP/1.1 clients do when a
/// connection closes with requests unanswered (RFC 9112, 9.3.2) — safe whatever the
/// method, since no handler ran for them.
#[test]
fn pipelined_requests_handed_to_the_application_are_answered_the_others_never_ran() {
    on_runtime(async {
        *PORT.lock().unwrap() = None;
        let address = serve(Duration::from_secs(10)).await;
        for (pipelined, answered, counted) in [
            (["/slow", "/count", "/count"], ["slow", "hello"], 1),
            (["/slow", "/slow", "/count"], ["slow", "slow"], 0),
        ] {
            COUNTED.store(0, std::sync::atomic::Ordering::SeqCst);
            let mut connection = TcpStream::connect(address).await.unwrap();
            let requests = pipelined
                .map(|path| format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n"))
                .concat();
            connection.write_all(requests.as_bytes()).await.unwrap();
            SLOW_STARTED.notified().await; // the first is being handled; all were read
            let restore = crac::tokio::checkpoint_restore().await.unwrap();
            assert!(restore.is_restored());
            let mut responses = Vec::new();
            connection.read_to_end(&mut responses).await.unwrap(); // no reset
            let responses = String::from_utf8_lossy(&responses);
            let bodies: Vec<&str> = responses
                .split("HTTP/1.1 200 OK")
                .skip(1)
                .map(|response| response.rsplit("\r\n\r\n").next().unwrap())
                .collect();
            assert_eq!(bodies, answered, "{pipelined:?}: {responses}");
            assert_eq!(
                COUNTED.load(std::sync::atomic::Ordering::SeqCst),
                counted,
                "{pipelined:?}: the dropped request never reached a handler"
            );
        }
        // the second `/slow` signalled too: taken, so that no other test sees it
        tokio::time::timeout(Duration::from_secs(1), SLOW_STARTED.notified())
            .await
            .unwrap();
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
