//! An axum service on a pool of redis connections, made checkpointable with crac-rs. The
//! lines that are crac's are marked `// crac` (six of them): the pool, the listener, the
//! point where the service is warm, and what a request does with a broken connection.
//!
//! `ADDR` (default 127.0.0.1:3000), `REDIS_URL` (default redis://127.0.0.1:6379/) and
//! `POOL_SIZE` (default 4) configure it. Run it under `crac run`: the first run opens
//! every connection of the pool, is checkpointed at `ready()` — the pool is emptied for
//! the image — and restored at once; every later run starts from the image and connects
//! afresh on first use.
//!
//! ```sh
//! cargo build --release --features axum --example pool_service
//! crac run --image /var/lib/svc/image -- target/release/examples/pool_service
//! curl 127.0.0.1:3000/item/42
//! ```
//!
//! `GET /item/{n}` counts the hit in redis on a pooled connection:
//! `item 42: hits 1, connection <redis client id>`; 503 while redis is unreachable.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use crac::tokio::{Listener, Pool, Pooled}; // crac
use redis::aio::MultiplexedConnection;

type Redis = Pool<MultiplexedConnection>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn item(
    State(redis): State<Redis>,
    Path(n): Path<u64>,
) -> Result<String, (StatusCode, String)> {
    let unavailable = |e: BoxError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let mut connection = redis.get().await.map_err(unavailable)?; // crac: a checkpoint waits for it
    let counted = redis::pipe()
        .incr(format!("hits:{n}"), 1)
        .cmd("CLIENT")
        .arg("ID")
        .query_async(&mut *connection)
        .await;
    let (hits, id): (u64, i64) = match counted {
        Ok(answer) => answer,
        Err(e) => {
            Pooled::discard(connection); // crac: the next checkout connects again
            return Err(unavailable(e.into()));
        }
    };
    Ok(format!("item {n}: hits {hits}, connection {id}\n"))
}

/// Borrows every connection of the pool at once, as a busy service would have them open.
async fn warm(redis: &Redis, size: u32) -> Result<(), BoxError> {
    let mut borrowed = Vec::new();
    for _ in 0..size {
        let mut connection = redis.get().await?;
        let () = redis::cmd("PING").query_async(&mut *connection).await?;
        borrowed.push(connection);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let size = std::env::var("POOL_SIZE").map_or(Ok(4), |v| v.parse())?;
    let redis = Pool::connect("redis", size, move || {
        let client = redis::Client::open(url.clone());
        async move { Ok(client?.get_multiplexed_async_connection().await?) }
    })
    .await?; // crac: the pool; the function above is called again after every restore
    warm(&redis, size).await?;
    let listener = Listener::bind(&addr).await?.restore_address_from("PORT"); // crac

    crac::tokio::ready().await?; // crac: the image is taken here under `crac run`
    eprintln!("pool_service: serving on {}", listener.local_addr()?);
    let app = Router::new()
        .route("/item/{n}", get(item))
        .with_state(redis);
    axum::serve(listener, app).await?;
    Ok(())
}
