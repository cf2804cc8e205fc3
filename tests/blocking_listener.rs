//! `crac::BlockingListener` through checkpoints with the `restoring` engine: a thread
//! blocked in `accept` is woken, the checkpoint waits for the connection a handler still
//! holds, then the socket is closed and bound again (to the restore-time port when one
//! is given); a connection held past the deadline refuses the checkpoint by its peer.

mod common;
// in its own module: only these tests register the engine
#[path = "common/restoring.rs"]
mod restoring;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::serial;
use crac::BlockingListener;
use restoring::PORT;

/// Answers every connection with `hello` after `work`, on a thread each.
fn serve(listener: Arc<BlockingListener>, work: Duration) {
    std::thread::spawn(move || {
        loop {
            let Ok((mut connection, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || {
                std::thread::sleep(work);
                let _ = connection.write_all(b"hello");
            });
        }
    });
}

fn get(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_blocked_accept_is_woken_the_open_connection_waited_for_and_the_socket_bound_again() {
    let _serial = serial();
    crac::use_engine("restoring").unwrap();
    *PORT.lock().unwrap() = None;
    let listener = Arc::new(BlockingListener::bind("127.0.0.1:0").unwrap());
    let address = listener.local_addr();
    serve(Arc::clone(&listener), Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(50)); // the server blocks in accept
    let in_flight = std::thread::spawn(move || get(address));
    std::thread::sleep(Duration::from_millis(50));
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        in_flight.join().unwrap().unwrap(),
        "hello",
        "finished before the image"
    );
    assert_eq!(
        get(address).unwrap(),
        "hello",
        "accepting again after the restore"
    );
}

#[test]
fn a_connection_held_past_the_deadline_refuses_the_checkpoint_by_peer() {
    let _serial = serial();
    crac::use_engine("restoring").unwrap();
    *PORT.lock().unwrap() = None;
    let listener = Arc::new(
        BlockingListener::bind("127.0.0.1:0")
            .unwrap()
            .with_drain_deadline(Duration::from_millis(50)),
    );
    let address = listener.local_addr();
    serve(Arc::clone(&listener), Duration::from_millis(500));
    let mut held = TcpStream::connect(address).unwrap();
    let peer = held.local_addr().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let error = crac::checkpoint_restore().unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("1 connection(s) still open after 50ms: {peer}")),
        "{error}"
    );
    let mut answer = String::new();
    held.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "hello", "the held connection was served to its end");
    assert_eq!(get(address).unwrap(), "hello", "rolled back: accepting");
}

#[test]
fn after_a_restore_it_binds_to_the_port_given_at_restore_time() {
    let _serial = serial();
    crac::use_engine("restoring").unwrap();
    let new_port = free_port();
    *PORT.lock().unwrap() = Some(new_port);
    let listener = Arc::new(
        BlockingListener::bind("127.0.0.1:0")
            .unwrap()
            .restore_address_from("CRAC_TEST_PORT"),
    );
    let old = listener.local_addr();
    serve(Arc::clone(&listener), Duration::ZERO);
    crac::checkpoint_restore().unwrap();
    *PORT.lock().unwrap() = None;
    assert_eq!(listener.local_addr().port(), new_port);
    assert_eq!(get(listener.local_addr()).unwrap(), "hello");
    assert!(get(old).is_err(), "the old port is closed");
}

#[test]
fn the_plan_shows_the_listener_where_it_was_bound() {
    let _serial = serial();
    let (listener, line) = (BlockingListener::bind("127.0.0.1:0"), line!());
    let _listener = listener.unwrap();
    let plan = crac::plan();
    let entry = plan.entries.iter().find(|e| e.location.file() == file!());
    assert_eq!(entry.map(|e| e.location.line()), Some(line), "{plan}");
}
