//! A pool across periodic checkpoints, for the end-to-end test `pools::` (it prints what
//! it sees): a `crac::tokio::Pool` of three raw connections to the redis-server on
//! 127.0.0.1:`REDIS_PORT`, a consistent point every 200 ms; after each checkpoint it
//! prints the redis client ids of its three connections (`LeftRunning ids [..]`: the
//! same ones, kept across left-running checkpoints), crashes after two left-running
//! ones, and exits 7 once restored (`Restored ids [..]`: new ones, the restored copies
//! of the old ones being closed).
//!
//! ```sh
//! cargo build --features tokio --example pool_periodic
//! REDIS_PORT=6379 crac run --image /tmp/img --on request --every 1 -- \
//!     target/debug/examples/pool_periodic
//! ```

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The ids of the pool's three connections, borrowed at once (`CLIENT ID` on each).
async fn pooled_ids(pool: &crac::tokio::Pool<tokio::net::TcpStream>) -> Vec<i64> {
    let mut borrowed = Vec::new();
    for _ in 0..3 {
        borrowed.push(pool.get().await.unwrap());
    }
    let mut ids = Vec::new();
    for connection in &mut borrowed {
        connection.write_all(b"CLIENT ID\r\n").await.unwrap();
        let mut reply = [0u8; 32];
        let n = connection.read(&mut reply).await.unwrap();
        let reply = std::str::from_utf8(&reply[..n]).unwrap();
        ids.push(reply.trim()[1..].parse().unwrap());
    }
    ids
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("REDIS_PORT").unwrap().parse().unwrap();
    let pool = crac::tokio::Pool::connect("redis", 3, move || async move {
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await?)
    })
    .await
    .unwrap();
    println!("warm ids {:?}", pooled_ids(&pool).await);
    let mut images = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let Some(restore) = crac::tokio::at_consistent_point().await.unwrap() else {
            continue;
        };
        println!("{:?} ids {:?}", restore.outcome(), pooled_ids(&pool).await);
        if restore.is_restored() {
            std::process::exit(7);
        }
        images += 1;
        if images == 2 {
            std::process::abort();
        }
    }
}
