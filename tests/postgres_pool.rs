//! `crac::tokio::Pool` of `tokio-postgres` connections with a real PostgreSQL server
//! (feature `tokio`, the `simulate` engine): every backend of the pool ends before the
//! checkpoint (`close_with` awaits each connection's task, so that its socket is closed
//! before the image), the restored pool has new backends and queries work; a connection
//! a server restart broke is discarded and the next checkout connects again. A
//! left-running checkpoint keeps every backend (the connections' sockets are claimed)
//! and queries go on while it runs. Each test starts its own cluster on a free loopback
//! port (`scripts/install-servers.sh` installs PostgreSQL).

mod common;
// in its own module: only these tests register the engine
#[path = "common/leaving.rs"]
mod leaving;

use std::collections::HashSet;
use std::time::Duration;

use common::postgres_server::PostgresServer;
use crac::tokio::{Pool, Pooled};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// A client and the task that drives its connection.
type Postgres = (Client, JoinHandle<()>);

async fn pool(config: String, size: u32) -> Pool<Postgres> {
    Pool::connect("postgres", size, move || {
        let config = config.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
            let task = tokio::spawn(async move { drop(connection.await) });
            Ok((client, task))
        }
    })
    .await
    .unwrap()
    // the socket closes when the task ends: after the client is gone
    .close_with(|(client, task)| async move {
        drop(client);
        let _ = task.await;
    })
}

async fn backend(connection: &Postgres) -> i32 {
    let row = connection
        .0
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap();
    row.get(0)
}

/// The backends of `n` connections borrowed at once.
async fn backends_of(pool: &Pool<Postgres>, n: usize) -> HashSet<i32> {
    let mut borrowed = Vec::new();
    for _ in 0..n {
        borrowed.push(pool.get().await.unwrap());
    }
    let mut pids = HashSet::new();
    for connection in &borrowed {
        pids.insert(backend(connection).await);
    }
    pids
}

/// The client backends the server has, asked on a connection of the test's own (left out).
async fn server_backends(server: &PostgresServer) -> HashSet<i32> {
    let (client, connection) = tokio_postgres::connect(&server.config(), NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    rows.iter().map(|row| row.get(0)).collect()
}

fn on_runtime(test: impl std::future::Future<Output = ()>) {
    common::on_runtime("simulate", test);
}

#[test]
fn every_backend_ends_before_the_checkpoint_and_the_restored_pool_has_new_ones() {
    on_runtime(async {
        let server = PostgresServer::start();
        let pool = pool(server.config(), 3).await;
        let before = backends_of(&pool, 3).await;
        assert_eq!(server_backends(&server).await, before);
        crac::tokio::checkpoint_restore().await.unwrap();
        for _ in 0..100 {
            if pool.size() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let open = server_backends(&server).await;
        assert!(
            before.is_disjoint(&open),
            "the old backends ended: {before:?} {open:?}"
        );
        assert_eq!(backends_of(&pool, 3).await, open, "made again at once");
        let connection = pool.get().await.unwrap();
        let row = connection.0.query_one("SELECT 6 * 7", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
    });
}

#[test]
fn a_connection_a_server_restart_broke_is_discarded_and_made_again() {
    on_runtime(async {
        let server = PostgresServer::start();
        let pool = pool(server.config(), 2).await;
        let before = backend(&pool.get().await.unwrap()).await;
        let port = server.port;
        drop(server);
        let server = PostgresServer::start_on(port);
        let broken = pool.get().await.unwrap();
        assert!(broken.0.query_one("SELECT 1", &[]).await.is_err());
        Pooled::discard(broken);
        let after = backend(&pool.get().await.unwrap()).await;
        assert_ne!(before, after);
        assert_eq!(server_backends(&server).await, HashSet::from([after]));
    });
}

#[test]
fn a_left_running_checkpoint_keeps_every_backend_and_queries_go_on() {
    on_runtime(async {
        let server = PostgresServer::start();
        let pool = pool(server.config(), 2).await;
        let before = backends_of(&pool, 2).await;
        let (during, runtime) = (pool.clone(), tokio::runtime::Handle::current());
        let (sender, seen) = std::sync::mpsc::channel();
        *leaving::DURING.lock().unwrap() = Some(Box::new(move || {
            let one = async {
                let connection = during.get().await.unwrap();
                tokio::time::timeout(Duration::from_secs(2), backend(&connection)).await
            };
            sender.send(runtime.block_on(one)).unwrap();
        }));
        crac::use_engine("leaving").unwrap();
        let restore = crac::tokio::checkpoint_restore().await.unwrap();
        crac::use_engine("simulate").unwrap();
        assert_eq!(restore.outcome(), crac::Outcome::LeftRunning);
        assert_eq!(
            leaving::claimed_by("a connection of pool `postgres`").len(),
            2
        );
        let during = seen.recv().unwrap().expect("queries do not wait");
        assert!(before.contains(&during), "{during} of {before:?}");
        assert_eq!(backends_of(&pool, 2).await, before, "the same backends");
        assert_eq!(server_backends(&server).await, before, "none ended");
    });
}
