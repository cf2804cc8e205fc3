//! A redis-server of the test's own on a free loopback port (from Debian's package,
//! which `scripts/install-servers.sh` installs), killed when dropped. Shared by the
//! client tests and the CRIU end-to-end tests of services.
#![allow(dead_code)] // each test binary uses a different part of it

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct RedisServer {
    pub(crate) port: u16,
    process: Child,
}

impl RedisServer {
    pub(crate) fn start_on(port: u16) -> RedisServer {
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): scripts/test.sh installs it \
                     (apt-get install redis-server)"
                )
            });
        let server = RedisServer { port, process };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub(crate) fn start() -> RedisServer {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        RedisServer::start_on(port)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
