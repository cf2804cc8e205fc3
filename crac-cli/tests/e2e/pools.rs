//! `crac::tokio::Pool` under `crac run` with a real redis-server (the examples are built
//! by `scripts/test.sh`: `cargo build --features axum --example pool_service --example
//! pool_periodic`). `examples/pool_service.rs` opens every connection of its pool of four, is checkpointed
//! at `ready()` and restored at once; the restored service and a second copy answer on
//! connections made after the restore (redis numbers its clients in order: each id is
//! above those the checkpointed process held), and redis holds no connection of the
//! checkpointed process.
//!
//! `examples/pool_periodic.rs` under `crac run --on request --every 1`: a pool of three
//! raw redis connections (or `tokio-postgres` ones to a real PostgreSQL server), left running at two consistent points, then crashed and
//! restored from the last image by `crac run`. The process that runs on keeps the same
//! three connections across the left-running checkpoints (the same redis client ids,
//! the same PostgreSQL backends); the restored copy has new ones (each id above every earlier one), and its first
//! requests on them succeed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use crate::harness::{crac_bin, crac_run, setup, tests};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;
use crate::services::{Running, example, free_port, http_get, restore_copy, start};

tests![
    a_pooled_service_restores_with_fresh_connections_in_every_copy,
    a_pool_keeps_its_connections_across_left_running_checkpoints_and_connects_afresh_after_a_crash,
    a_postgres_pool_keeps_its_backends_across_left_running_checkpoints_and_has_new_ones_once_restored,
];

/// One inline redis command on a connection of the test's own: its reply, an integer
/// (`:N`) or a bulk string (`$LEN` and that many bytes), read to its end — not to the
/// connection's, which a `QUIT` could reset.
pub(crate) fn redis_command(redis: &RedisServer, command: &str) -> String {
    let stream = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    write!(&stream, "{command}\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).unwrap();
    let Some(len) = head.strip_prefix('$') else {
        return head;
    };
    let mut body = vec![0; len.trim().parse::<usize>().unwrap()];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// The redis client ids of the connections open now, the asking one included.
pub(crate) fn client_ids(redis: &RedisServer) -> Vec<i64> {
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

/// `item 7: hits N, connection ID` → (N, ID).
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

fn a_pool_keeps_its_connections_across_left_running_checkpoints_and_connects_afresh_after_a_crash()
{
    let (_, image) = setup("pool-periodic");
    let redis = RedisServer::start();
    kept_then_afresh(&image, &format!("REDIS_PORT={}", redis.port));
}

fn a_postgres_pool_keeps_its_backends_across_left_running_checkpoints_and_has_new_ones_once_restored()
 {
    let (_, image) = setup("pool-periodic-postgres");
    let postgres = PostgresServer::start();
    kept_then_afresh(&image, &format!("PG_CONFIG={}", postgres.config()));
}

/// `examples/pool_periodic.rs` under `crac run` with `server` (the variable naming it):
/// the same connections after each left-running checkpoint, new ones in the copy.
fn kept_then_afresh(image: &Path, server: &str) {
    let extra = ["--on", "request", "--every", "1", "--env", server];
    let out = crac_run(&example("pool_periodic"), image, "", &extra);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let lines: Vec<(&str, Vec<i64>)> = stdout
        .lines()
        .filter_map(|line| line.split_once(" ids "))
        .map(|(what, ids)| {
            let ids = ids.trim_matches(['[', ']']).split(", ");
            let mut ids: Vec<i64> = ids.map(|id| id.parse().unwrap()).collect();
            ids.sort_unstable();
            (what, ids)
        })
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|(what, _)| *what).collect();
    assert_eq!(
        kinds,
        ["warm", "LeftRunning", "LeftRunning", "Restored"],
        "{stdout}"
    );
    let warm = &lines[0].1;
    for (what, ids) in &lines[1..3] {
        assert_eq!(ids, warm, "{what}: the same connections: {stdout}");
    }
    let restored = &lines[3].1;
    assert!(
        restored.iter().all(|id| !warm.contains(id)),
        "the restored copy connected afresh: {stdout}"
    );
}
