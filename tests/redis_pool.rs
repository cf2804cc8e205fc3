//! `crac::tokio::Pool` with a real redis server (feature `tokio`): every connection is
//! given back and closed before the checkpoint (the server sees them go), checkouts wait
//! while it runs, and the restored pool makes as many again at once (new redis client
//! ids); the size bound holds; a connection borrowed past the drain deadline refuses the
//! checkpoint by name and the pool goes on; connections still being made again (a
//! server that does not answer) do not hold up the next checkpoint. A left-running
//! checkpoint keeps every connection, idle or borrowed (their sockets are claimed), and
//! checkouts go on while it runs; in a copy restored from its image, a checkout made
//! before the copy's `after_restore` waits for a new connection rather than get a dead one. Each test starts its own redis-server on a free
//! loopback port (`scripts/install-servers.sh` installs it).

mod common;
// in its own module: only these tests register the engine
#[path = "common/leaving.rs"]
mod leaving;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::redis_server::RedisServer;
use crac::tokio::Pool;
use redis::aio::MultiplexedConnection;

async fn pool(url: String, size: u32) -> Pool<MultiplexedConnection> {
    Pool::connect("redis pool", size, move || {
        let url = url.clone();
        async move {
            let client = redis::Client::open(url)?;
            Ok(client.get_multiplexed_async_connection().await?)
        }
    })
    .await
    .unwrap()
}

async fn client_id(connection: &mut MultiplexedConnection) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(connection)
        .await
        .unwrap()
}

/// The ids of `n` connections borrowed at once.
async fn ids_of(pool: &Pool<MultiplexedConnection>, n: usize) -> HashSet<i64> {
    let mut borrowed = Vec::new();
    for _ in 0..n {
        borrowed.push(pool.get().await.unwrap());
    }
    let mut ids = HashSet::new();
    for connection in &mut borrowed {
        ids.insert(client_id(connection).await);
    }
    ids
}

/// The ids of the server's clients, asked on a connection of the test's own (left out).
async fn server_clients(url: &str) -> HashSet<i64> {
    let mut own = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut own)
        .await
        .unwrap();
    let own = client_id(&mut own).await;
    list.split_whitespace()
        .filter_map(|field| field.strip_prefix("id="))
        .map(|id| id.parse().unwrap())
        .filter(|id| *id != own)
        .collect()
}

fn on_runtime(test: impl std::future::Future<Output = ()>) {
    common::on_runtime("simulate", test);
}

#[test]
fn every_connection_is_closed_before_the_checkpoint_and_fresh_ones_are_made_after() {
    on_runtime(async {
        let server = RedisServer::start();
        let closed = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&closed);
        let pool = pool(server.url(), 4).await.close_with(move |connection| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { drop(connection) }
        });
        let before = ids_of(&pool, 3).await;
        assert_eq!((before.len(), pool.size()), (3, 3));
        assert_eq!(server_clients(&server.url()).await, before);
        // a task holding a connection while the checkpoint starts: the drain waits for it
        let held = pool.get().await.unwrap();
        let holder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(held);
        });
        crac::tokio::checkpoint_restore().await.unwrap();
        holder.await.unwrap();
        assert_eq!(
            closed.load(Ordering::SeqCst),
            3,
            "each connection closed, the held one too"
        );
        // as many made again at once, in the background
        for _ in 0..50 {
            if pool.size() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let open = server_clients(&server.url()).await;
        assert!(
            before.is_disjoint(&open),
            "the server saw them go: {before:?} {open:?}"
        );
        assert_eq!((open.len(), pool.size()), (3, 3), "made again: {open:?}");
        assert_eq!(ids_of(&pool, 3).await, open, "the pool uses the new ones");
    });
}

#[test]
fn checkouts_wait_while_the_checkpoint_runs_and_the_size_bound_holds() {
    on_runtime(async {
        let server = RedisServer::start();
        let pool = pool(server.url(), 2).await;
        let first = pool.get().await.unwrap();
        let second = pool.get().await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(100), pool.get()).await;
        assert!(
            third.is_err(),
            "a third connection waits for one to come back"
        );
        drop(first);
        // a checkout made while the checkpoint drains gets a connection made after it
        let (started, waiting) = (Arc::new(tokio::sync::Notify::new()), pool.clone());
        let signal = Arc::clone(&started);
        let late = tokio::spawn(async move {
            signal.notified().await;
            let mut connection = waiting.get().await.unwrap();
            client_id(&mut connection).await
        });
        let checkpoint = tokio::spawn(crac::tokio::checkpoint_restore());
        tokio::time::sleep(Duration::from_millis(100)).await;
        started.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!late.is_finished(), "parked while the checkpoint runs");
        let mut second = second;
        let old = client_id(&mut second).await;
        drop(second);
        checkpoint.await.unwrap().unwrap();
        let new = late.await.unwrap();
        assert!(
            new > old,
            "connected after the checkpoint: {new} after {old}"
        );
    });
}

#[test]
fn a_connection_borrowed_past_the_deadline_refuses_the_checkpoint_by_name() {
    on_runtime(async {
        let server = RedisServer::start();
        let pool = pool(server.url(), 3)
            .await
            .with_drain_deadline(Duration::from_millis(50));
        let mut borrowed = pool.get().await.unwrap();
        let error = crac::tokio::checkpoint_restore().await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`redis pool`: 1 borrowed connection(s) not given back within 50ms"),
            "{error}"
        );
        let id = client_id(&mut borrowed).await;
        drop(borrowed);
        let mut again = pool.get().await.unwrap();
        assert_eq!(
            client_id(&mut again).await,
            id,
            "rolled back: the same connection"
        );
    });
}

#[test]
fn connections_still_being_made_again_do_not_hold_up_the_next_checkpoint() {
    on_runtime(async {
        let server = RedisServer::start();
        let url = server.url();
        let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hangs = Arc::clone(&hang);
        let pool = Pool::connect("redis pool", 2, move || {
            let (url, hangs) = (url.clone(), Arc::clone(&hangs));
            async move {
                if hangs.load(Ordering::SeqCst) {
                    // a server that accepts and never answers
                    std::future::pending::<()>().await;
                }
                let client = redis::Client::open(url)?;
                Ok(client.get_multiplexed_async_connection().await?)
            }
        })
        .await
        .unwrap()
        .with_drain_deadline(Duration::from_millis(500));
        ids_of(&pool, 2).await;
        hang.store(true, Ordering::SeqCst);
        crac::tokio::checkpoint_restore().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // both tasks that make the connections again are stuck connecting
        crac::tokio::checkpoint_restore().await.unwrap();
        hang.store(false, Ordering::SeqCst);
        assert_eq!(ids_of(&pool, 2).await.len(), 2);
    });
}

#[test]
fn a_left_running_checkpoint_keeps_every_connection_and_checkouts_go_on() {
    on_runtime(async {
        let server = RedisServer::start();
        let pool = pool(server.url(), 3).await;
        let before = ids_of(&pool, 3).await;
        let mut borrowed = pool.get().await.unwrap();
        let (during, runtime) = (pool.clone(), tokio::runtime::Handle::current());
        *leaving::DURING.lock().unwrap() = Some(Box::new(move || {
            let two =
                async { tokio::time::timeout(Duration::from_secs(2), ids_of(&during, 2)).await };
            let ids = runtime.block_on(two);
            *SEEN_DURING.lock().unwrap() = Some(ids.expect("checkouts do not wait"));
        }));
        crac::use_engine("leaving").unwrap();
        let restore = crac::tokio::checkpoint_restore().await.unwrap();
        crac::use_engine("simulate").unwrap();
        assert_eq!(restore.outcome(), crac::Outcome::LeftRunning);
        let claimed = leaving::claimed_by("a connection of pool `redis pool`");
        assert_eq!(
            claimed.len(),
            3,
            "each connection's socket, the borrowed one too"
        );
        let during = SEEN_DURING.lock().unwrap().take().unwrap();
        assert!(during.is_subset(&before), "{during:?} of {before:?}");
        assert!(before.contains(&client_id(&mut borrowed).await));
        drop(borrowed);
        assert_eq!(ids_of(&pool, 3).await, before, "the same connections");
        assert_eq!(server_clients(&server.url()).await, before, "none closed");
        assert!(
            crac::claimed_fds().is_empty(),
            "claims withdrawn after the checkpoint"
        );
    });
}

static SEEN_DURING: std::sync::Mutex<Option<HashSet<i64>>> = std::sync::Mutex::new(None);

#[test]
fn in_a_copy_of_a_left_running_image_no_checkout_gets_a_dead_connection() {
    on_runtime(async {
        let server = RedisServer::start();
        let pool = pool(server.url(), 2).await;
        let before = ids_of(&pool, 2).await;
        let (early, runtime) = (pool.clone(), tokio::runtime::Handle::current());
        let (sender, first) = tokio::sync::oneshot::channel();
        *leaving::DURING.lock().unwrap() = Some(Box::new(move || {
            // a task of the copy that runs before its `after_restore`
            runtime.spawn(async move {
                let mut connection = early.get().await.unwrap();
                let id = redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async::<i64>(&mut *connection)
                    .await;
                sender.send(id).unwrap();
            });
            std::thread::sleep(Duration::from_millis(200)); // it checks out meanwhile
        }));
        leaving::AS_COPY.store(true, Ordering::SeqCst);
        crac::use_engine("leaving").unwrap();
        let restore = crac::tokio::checkpoint_restore().await.unwrap();
        crac::use_engine("simulate").unwrap();
        assert!(restore.is_restored());
        let id = first.await.unwrap().expect("the first request succeeds");
        assert!(
            !before.contains(&id),
            "a new connection: {id} (dead: {before:?})"
        );
        let after = ids_of(&pool, 2).await;
        assert!(after.is_disjoint(&before), "{after:?} {before:?}");
    });
}
