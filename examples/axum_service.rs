//! An axum service with a warm in-memory cache and a redis connection, made
//! checkpointable with crac-rs. The lines that are crac's are marked `// crac`: the
//! listener, the redis client and the point where the service is warm.
//!
//! `ADDR` (default 127.0.0.1:3000), `REDIS_URL` (default redis://127.0.0.1:6379/),
//! `CACHE_MB` (default 100) and `TOKIO_RUNTIME` (`multi_thread`, the default, or
//! `current_thread`) configure it. Run it under `crac run`: the first run warms
//! the cache, is checkpointed at `ready()` and restored at once; every later run (and
//! every concurrent copy, each given its own `--env PORT=...`) starts from the image.
//!
//! ```sh
//! cargo build --release --features axum --example axum_service
//! crac run --image /var/lib/svc/image -- target/release/examples/axum_service
//! curl 127.0.0.1:3000/item/42
//! ```
//!
//! `GET /item/{n}` answers from the cache and counts the hit in redis:
//! `item 42 = <value> (hits 1, instance <id>)`; 503 while redis is unreachable.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use crac::tokio::{Client, Listener};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

struct Service {
    cache: Vec<u64>,
    redis: Client<MultiplexedConnection>,
}

/// The expensive warm-up: a table of values, `CACHE_MB` megabytes of them.
fn warm_cache() -> Vec<u64> {
    let megabytes: usize = std::env::var("CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..megabytes << 17)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .collect()
}

async fn item(
    State(service): State<Arc<Service>>,
    Path(n): Path<usize>,
) -> Result<String, (StatusCode, String)> {
    let value = service.cache[n % service.cache.len()];
    let unavailable = |e: crac::BoxError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    // borrowed for the whole request: a checkpoint waits for it
    let borrowed = service.redis.get().await.map_err(unavailable)?; // crac
    let counted = borrowed.clone().incr(format!("hits:{n}"), 1).await;
    drop(borrowed);
    let hits: u64 = match counted {
        Ok(hits) => hits,
        Err(e) => {
            service.redis.reset().await; // crac: the next request connects again
            return Err(unavailable(e.into()));
        }
    };
    Ok(format!(
        "item {n} = {value} (hits {hits}, instance {:08x})\n",
        crac::instance_id() as u32
    ))
}

fn main() -> Result<(), crac::BoxError> {
    let mut runtime = match std::env::var("TOKIO_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().build()?.block_on(serve())
}

async fn serve() -> Result<(), crac::BoxError> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let started = std::time::Instant::now();
    let cache = warm_cache();
    // crac: the connect function, called again after every restore
    let redis = Client::connect("redis", move || {
        let client = redis::Client::open(url.clone());
        async move { Ok(client?.get_multiplexed_async_connection().await?) }
    })
    .await?;
    let listener = Listener::bind(&addr).await?.restore_address_from("PORT"); // crac
    eprintln!(
        "axum_service: warm in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let restored = crac::tokio::ready().await?; // crac: the image is taken here under `crac run`
    if restored.is_some_and(|r| r.monotonic_time_kept == Some(false)) {
        // crac: a restore-only container: `Instant`s taken before the checkpoint are as
        // old as the image (this service keeps none across it)
        eprintln!("axum_service: restored where Instant counts the time in the image");
    }
    eprintln!("axum_service: serving on {}", listener.local_addr()?);
    // crac: under `crac run --every N`, a left-running checkpoint at most every N s; the
    // listener keeps serving through it
    tokio::spawn(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Err(e) = crac::tokio::at_consistent_point().await {
                eprintln!("axum_service: periodic checkpoint failed: {e}");
            }
        }
    });
    let app = Router::new()
        .route("/item/{n}", get(item))
        .with_state(Arc::new(Service { cache, redis }));
    axum::serve(listener, app).await?;
    Ok(())
}
