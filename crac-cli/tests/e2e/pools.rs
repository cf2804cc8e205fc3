//! `crac::tokio::Pool` under `crac run` with a real redis-server:
//! `examples/pool_service.rs` (built by `scripts/test.sh`: `cargo build --features axum
//! --example pool_service`) opens every connection of its pool of four, is checkpointed
//! at `ready()` and restored at once; the restored service and a second copy answer on
//! connections made after the restore (redis numbers its clients in order: each id is
//! above those the checkpointed process held), and redis holds no connection of the
//! checkpointed process.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use crate::harness::{crac_bin, setup, tests};
use crate::redis_server::RedisServer;
use crate::services::{Running, example, free_port, http_get, restore_copy, start};

tests![a_pooled_service_restores_with_fresh_connections_in_every_copy];

/// One inline redis command on a connection of the test's own, then `QUIT`: the replies.
fn redis_command(redis: &RedisServer, command: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    write!(stream, "{command}\r\nQUIT\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// The redis client ids of the connections open now, the asking one included.
fn client_ids(redis: &RedisServer) -> Vec<i64> {
    let reply = redis_command(redis, "CLIENT LIST");
    reply
        .split_whitespace()
        .filter_map(|field| field.strip_prefix("id="))
        .map(|id| id.parse().unwrap())
        .collect()
}

fn run_service(image: &Path, redis: &RedisServer, port: u16) -> Running {
    let mut run = Command::new(crac_bin());
    run.args(["run", "--image", image.to_str().unwrap()])
        .args(["--env", &format!("REDIS_URL={}", redis.url())])
        .args(["--env", &format!("ADDR=127.0.0.1:{port}")])
        .args(["--env", "POOL_SIZE=4", "--"])
        .arg(example("pool_service"));
    start(run)
}

/// `item 7: hits N, connection ID, instance X` → (N, ID).
fn parse(body: &str) -> (u64, i64) {
    let words: Vec<&str> = body.split_whitespace().collect();
    let hits = words[3].trim_end_matches(',').parse().unwrap();
    let id = words[5].trim_end_matches(',').parse().unwrap();
    (hits, id)
}

fn a_pooled_service_restores_with_fresh_connections_in_every_copy() {
    let (_, image) = setup("pool-service");
    let redis = RedisServer::start();
    let reply = redis_command(&redis, "CLIENT ID");
    let before: i64 = reply.lines().next().unwrap()[1..].parse().unwrap();
    let port = free_port();
    let _service = run_service(&image, &redis, port);
    let (status, body) = http_get(port, "/item/7");
    assert_eq!(status, 200, "{body}");
    let (hits, first) = parse(&body);
    assert_eq!(hits, 1, "{body}");
    // the checkpointed process held ids before+1 ..= before+4
    assert!(
        first > before + 4,
        "a fresh connection: {body} (first id {before})"
    );

    let copy_port = free_port();
    let _copy = restore_copy(&image, copy_port);
    for n in 2..6 {
        let (status, body) = http_get(copy_port, "/item/7");
        assert_eq!(status, 200, "{body}");
        let (hits, id) = parse(&body);
        assert_eq!(hits, n, "{body}");
        assert!(
            id > first,
            "the copy connected afresh: {body} (restored: {first})"
        );
    }
    let open = client_ids(&redis);
    assert!(
        open.iter().all(|id| *id > before + 4),
        "no connection of the checkpointed process is left: {open:?} (it held up to {})",
        before + 4
    );
}
