//! `crac::tokio::Client` with a real redis server (feature `tokio`): the connection is
//! closed before the checkpoint and made again after it (a new redis client id); a
//! server down at restore time does not fail the restore — the first use connects once
//! it is back — unless the connection is required; a connection borrowed past the
//! drain deadline refuses the checkpoint. A left-running checkpoint keeps the
//! connection (its socket is claimed) and users do not wait for it; in a copy restored
//! from its image, a user before the copy's `after_restore` waits for the new connection. `scripts/test.sh`
//! installs `redis-server`; each test starts its own on a free loopback port.

mod common;
// in its own module: only these tests register the engine
#[path = "common/leaving.rs"]
mod leaving;

use common::redis_server::RedisServer;
use crac::tokio::Client;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

async fn client(url: String) -> Result<Client<MultiplexedConnection>, crac::BoxError> {
    Client::connect("redis", move || {
        let url = url.clone();
        async move {
            let client = redis::Client::open(url)?;
            Ok(client.get_multiplexed_async_connection().await?)
        }
    })
    .await
}

async fn ping(redis: &Client<MultiplexedConnection>) -> String {
    let mut connection = redis.get().await.unwrap().clone();
    redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap()
}

async fn client_id(redis: &Client<MultiplexedConnection>) -> i64 {
    let mut connection = redis.get().await.unwrap().clone();
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut connection)
        .await
        .unwrap()
}

fn on_runtime(test: impl std::future::Future<Output = ()>) {
    common::on_runtime("simulate", test);
}

#[test]
fn the_connection_is_closed_before_the_checkpoint_and_made_again_after() {
    on_runtime(async {
        let server = RedisServer::start();
        let redis = client(server.url()).await.unwrap();
        let mut connection = redis.get().await.unwrap().clone();
        let () = connection.set("warm", 42).await.unwrap();
        drop(connection);
        let before = client_id(&redis).await;
        crac::tokio::checkpoint_restore().await.unwrap();
        let after = client_id(&redis).await;
        assert_ne!(before, after, "a new connection after the restore");
        let mut connection = redis.get().await.unwrap().clone();
        let warm: i64 = connection.get("warm").await.unwrap();
        assert_eq!(warm, 42);
    });
}

#[test]
fn a_required_connection_down_at_restore_fails_the_restore_by_name() {
    on_runtime(async {
        let server = RedisServer::start();
        let redis = client(server.url())
            .await
            .unwrap()
            .require_connection_at_restore();
        drop(server);
        let error = crac::tokio::checkpoint_restore().await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("after restore, 1 failure:")
                && text.contains("`redis` failed in after_restore: connecting `redis` again:")
                && text.contains("require_connection_at_restore()"),
            "{text}"
        );
        drop(redis);
    });
}

#[test]
fn a_restore_with_the_server_down_succeeds_and_the_first_use_connects_once_it_is_back() {
    on_runtime(async {
        let server = RedisServer::start();
        let port = server.port;
        let redis = client(server.url()).await.unwrap();
        drop(server);
        crac::tokio::checkpoint_restore().await.unwrap();
        let down = redis.get().await.map(|_| ()).unwrap_err();
        assert!(
            down.to_string().starts_with("connecting `redis`: "),
            "{down}"
        );
        let server = RedisServer::start_on(port);
        assert_eq!(ping(&redis).await, "PONG");
        // the server restarts: the old connection is broken until reset
        drop(server);
        let _server = RedisServer::start_on(port);
        redis.reset().await;
        assert_eq!(ping(&redis).await, "PONG");
    });
}

#[test]
fn a_connection_borrowed_past_the_deadline_refuses_the_checkpoint_by_name() {
    on_runtime(async {
        let server = RedisServer::start();
        let redis = client(server.url())
            .await
            .unwrap()
            .with_drain_deadline(std::time::Duration::from_millis(50));
        let borrowed = redis.get().await.unwrap();
        let error = crac::tokio::checkpoint_restore().await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`redis`: a borrowed connection was not given back within 50ms"),
            "{error}"
        );
        drop(borrowed);
        assert_eq!(ping(&redis).await, "PONG", "rolled back: connected");
    });
}

#[test]
fn a_left_running_checkpoint_keeps_the_connection_and_users_do_not_wait() {
    on_runtime(async {
        let server = RedisServer::start();
        let redis = std::sync::Arc::new(client(server.url()).await.unwrap());
        let before = client_id(&redis).await;
        let (during, runtime) = (
            std::sync::Arc::clone(&redis),
            tokio::runtime::Handle::current(),
        );
        let (sender, seen) = std::sync::mpsc::channel();
        *leaving::DURING.lock().unwrap() = Some(Box::new(move || {
            let id = async {
                tokio::time::timeout(std::time::Duration::from_secs(2), client_id(&during)).await
            };
            sender.send(runtime.block_on(id)).unwrap();
        }));
        crac::use_engine("leaving").unwrap();
        let restore = crac::tokio::checkpoint_restore().await.unwrap();
        crac::use_engine("simulate").unwrap();
        assert_eq!(restore.outcome(), crac::Outcome::LeftRunning);
        assert_eq!(
            leaving::claimed_by("the connection of client `redis`").len(),
            1,
            "its socket"
        );
        let during = seen.recv().unwrap().expect("users do not wait");
        assert_eq!(
            during, before,
            "the same connection while the checkpoint ran"
        );
        assert_eq!(client_id(&redis).await, before, "and after it");
        assert!(crac::claimed_fds().is_empty(), "claims withdrawn after it");
    });
}

#[test]
fn in_a_copy_of_a_left_running_image_no_user_gets_the_dead_connection() {
    on_runtime(async {
        let server = RedisServer::start();
        let redis = std::sync::Arc::new(client(server.url()).await.unwrap());
        let before = client_id(&redis).await;
        let (early, runtime) = (
            std::sync::Arc::clone(&redis),
            tokio::runtime::Handle::current(),
        );
        let (sender, first) = tokio::sync::oneshot::channel();
        *leaving::DURING.lock().unwrap() = Some(Box::new(move || {
            // a task of the copy that runs before its `after_restore`
            runtime.spawn(async move {
                let mut connection = early.get().await.unwrap().clone();
                let id = redis::cmd("CLIENT")
                    .arg("ID")
                    .query_async::<i64>(&mut connection)
                    .await;
                sender.send(id).unwrap();
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
        }));
        leaving::AS_COPY.store(true, std::sync::atomic::Ordering::SeqCst);
        crac::use_engine("leaving").unwrap();
        let restore = crac::tokio::checkpoint_restore().await.unwrap();
        crac::use_engine("simulate").unwrap();
        assert!(restore.is_restored());
        let id = first.await.unwrap().expect("the first request succeeds");
        assert_ne!(id, before, "a new connection");
        assert_eq!(client_id(&redis).await, id);
    });
}
