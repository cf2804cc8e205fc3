//! A pool across periodic checkpoints, for the end-to-end test `pools::` (it prints what
//! it sees): a `crac::tokio::Pool` of three connections — raw ones to the redis-server on
//! 127.0.0.1:`REDIS_PORT`, or `tokio-postgres` ones to the PostgreSQL server `PG_CONFIG`
//! names when it is set — and a consistent point every 200 ms. After each checkpoint it
//! prints the server-side ids of its three connections (redis client ids, PostgreSQL
//! backend pids): `LeftRunning ids [..]`, the same ones, kept across left-running
//! checkpoints; it crashes after two of them, and exits 7 once restored
//! (`Restored ids [..]`: new ones, the restored copies of the old ones being closed).
//!
//! ```sh
//! cargo build --features tokio --example pool_periodic
//! REDIS_PORT=6379 crac run --image /tmp/img --on request --every 1 -- \
//!     target/debug/examples/pool_periodic
//! ```

use crac::tokio::Pool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A PostgreSQL connection: the client and the task driving its socket.
type Postgres = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

enum Connections {
    Redis(Pool<TcpStream>),
    Postgres(Pool<Postgres>),
}

impl Connections {
    async fn connect() -> Connections {
        if let Ok(config) = std::env::var("PG_CONFIG") {
            let pool = Pool::connect("postgres", 3, move || {
                let config = config.clone();
                async move {
                    let (client, connection) =
                        tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
                    Ok((client, tokio::spawn(async move { drop(connection.await) })))
                }
            });
            return Connections::Postgres(pool.await.unwrap());
        }
        let port: u16 = std::env::var("REDIS_PORT").unwrap().parse().unwrap();
        let pool = Pool::connect("redis", 3, move || async move {
            Ok(TcpStream::connect(("127.0.0.1", port)).await?)
        });
        Connections::Redis(pool.await.unwrap())
    }

    /// The server-side ids of the pool's three connections, borrowed at once.
    async fn ids(&self) -> Vec<i64> {
        let mut ids = Vec::new();
        match self {
            Connections::Redis(pool) => {
                let mut borrowed = Vec::new();
                for _ in 0..3 {
                    borrowed.push(pool.get().await.unwrap());
                }
                for connection in &mut borrowed {
                    connection.write_all(b"CLIENT ID\r\n").await.unwrap();
                    let mut reply = [0u8; 32];
                    let n = connection.read(&mut reply).await.unwrap();
                    let reply = std::str::from_utf8(&reply[..n]).unwrap();
                    ids.push(reply.trim()[1..].parse().unwrap());
                }
            }
            Connections::Postgres(pool) => {
                let mut borrowed = Vec::new();
                for _ in 0..3 {
                    borrowed.push(pool.get().await.unwrap());
                }
                for connection in &borrowed {
                    let query = "SELECT pg_backend_pid()";
                    let row = connection.0.query_one(query, &[]).await.unwrap();
                    ids.push(i64::from(row.get::<_, i32>(0)));
                }
            }
        }
        ids
    }
}

#[tokio::main]
async fn main() {
    let pool = Connections::connect().await;
    println!("warm ids {:?}", pool.ids().await);
    let mut images = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let Some(restore) = crac::tokio::at_consistent_point().await.unwrap() else {
            continue;
        };
        println!("{:?} ids {:?}", restore.outcome(), pool.ids().await);
        if restore.is_restored() {
            std::process::exit(7);
        }
        images += 1;
        if images == 2 {
            std::process::abort();
        }
    }
}
