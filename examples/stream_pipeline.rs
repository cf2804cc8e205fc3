//! The seeds' two Kafka workloads on Redis Streams, checkpointable with crac-rs.
//!
//! `stream_pipeline produce` (KIP-921's producer): sends `MESSAGES` numbered messages to
//! the stream `STREAM` in batches, several in flight at once, and is checkpointed half
//! way (`crac::tokio::ready()`, under `crac run`) while batches are in flight. The batches
//! pass through a `crac::Gate`: the checkpoint waits for the ones in flight to be
//! acknowledged and parks new ones, so none is lost and none is sent twice.
//!
//! `stream_pipeline consume` (Kafka Streams' state store with a checkpoint interval):
//! reads the stream from its committed offset, counts messages per key, and offers a
//! checkpoint after every batch (`crac::tokio::at_consistent_point()`), where store and
//! offset agree. Under `crac run --every SECS` a crash restarts it from the last such
//! image, which resumes from that image's offset: nothing after it is counted twice.
//! `CRASH_AFTER=N` (with a `CRASH_MARKER` file, so that it happens once) crashes it
//! after N messages and at least one image; `PAUSE_MS` (default 10) is the time spent
//! on each batch.
//!
//! Both print one line at the end: `produced N` or `consumed N counts k0=…,k1=…`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crac::Gate;
use crac::tokio::Client;
use redis::aio::MultiplexedConnection;

type Redis = Client<MultiplexedConnection>;

const BATCH: u64 = 10;
const KEYS: u64 = 7;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

async fn connect() -> Result<Redis, crac::BoxError> {
    let url = setting("REDIS_URL", "redis://127.0.0.1:6379/");
    Client::connect("redis", move || {
        let client = redis::Client::open(url.clone());
        async move { Ok(client?.get_multiplexed_async_connection().await?) }
    })
    .await
}

/// Sends one batch through the gate: the pass is held until redis acknowledged it.
/// A broker farther away than loopback is simulated by a few milliseconds of latency,
/// so that batches are really in flight when the checkpoint comes.
async fn send_batch(
    redis: &Redis,
    sends: &Gate,
    stream: &str,
    first: u64,
    end: u64,
) -> Result<(), crac::BoxError> {
    let _pass = sends.enter_async().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let borrowed = redis.get().await?;
    let mut pipeline = redis::pipe();
    for seq in first..end {
        pipeline
            .cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("seq")
            .arg(seq)
            .ignore();
    }
    pipeline.query_async::<()>(&mut borrowed.clone()).await?;
    Ok(())
}

async fn produce(stream: String, messages: u64) -> Result<(), crac::BoxError> {
    let redis = Arc::new(connect().await?);
    // A gate drains before the clients it uses are closed: its rank is above theirs.
    let sends = Arc::new(Gate::new("producer sends"));
    crac::register(&sends);
    let stream = Arc::new(stream);
    let mut in_flight = tokio::task::JoinSet::new();
    for first in (0..messages).step_by(BATCH as usize) {
        if first == messages / 2 / BATCH * BATCH {
            // half way, once a batch is on the wire: the image (under crac run)
            for _ in 0..100 {
                if sends.in_flight() > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            println!("in flight at the checkpoint: {}", sends.in_flight());
            crac::tokio::ready().await?;
        }
        while in_flight.len() >= 4 {
            in_flight.join_next().await.expect("a task")??;
        }
        let (redis, sends, stream) = (redis.clone(), sends.clone(), stream.clone());
        let end = (first + BATCH).min(messages);
        in_flight.spawn(async move { send_batch(&redis, &sends, &stream, first, end).await });
    }
    while let Some(sent) = in_flight.join_next().await {
        sent??;
    }
    println!("produced {messages}");
    Ok(())
}

/// The state store: counts per key, and the offset they include everything up to.
struct Store {
    counts: BTreeMap<u64, u64>,
    offset: String,
    consumed: u64,
}

async fn consume(stream: String, messages: u64) -> Result<(), crac::BoxError> {
    let redis = connect().await?;
    let crash_after: Option<u64> = std::env::var("CRASH_AFTER")
        .ok()
        .and_then(|n| n.parse().ok());
    let marker = std::env::var_os("CRASH_MARKER");
    let pause = Duration::from_millis(setting("PAUSE_MS", "10").parse()?);
    let mut store = Store {
        counts: BTreeMap::new(),
        offset: "0".to_string(),
        consumed: 0,
    };
    let mut images = 0;
    while store.consumed < messages {
        let reply: redis::streams::StreamReadReply = {
            let borrowed = redis.get().await?;
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&store.offset)
                .query_async(&mut borrowed.clone())
                .await?
        };
        let entries: Vec<_> = reply.keys.into_iter().flat_map(|key| key.ids).collect();
        if entries.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for entry in entries {
            let seq: u64 = entry.get("seq").ok_or("a message without seq")?;
            *store.counts.entry(seq % KEYS).or_default() += 1;
            store.consumed += 1;
            store.offset = entry.id;
        }
        // store and offset agree here: a consistent point
        if let Some(restore) = crac::tokio::at_consistent_point().await? {
            if restore.is_restored() {
                println!(
                    "resumed at offset {} after {} messages",
                    store.offset, store.consumed
                );
            } else {
                images += 1;
            }
        }
        if let (Some(after), Some(marker)) = (crash_after, &marker)
            && store.consumed >= after
            && images > 0
            && std::fs::metadata(marker).is_err()
        {
            std::fs::write(marker, b"")?;
            println!("crashing after {} messages", store.consumed);
            std::process::abort();
        }
        tokio::time::sleep(pause).await;
    }
    let counts: Vec<String> = store
        .counts
        .iter()
        .map(|(k, n)| format!("k{k}={n}"))
        .collect();
    println!("consumed {} counts {}", store.consumed, counts.join(","));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), crac::BoxError> {
    let stream = setting("STREAM", "events");
    let messages: u64 = setting("MESSAGES", "1000").parse()?;
    match std::env::args().nth(1).as_deref() {
        Some("produce") => produce(stream, messages).await,
        Some("consume") => consume(stream, messages).await,
        _ => Err("usage: stream_pipeline produce|consume".into()),
    }
}
