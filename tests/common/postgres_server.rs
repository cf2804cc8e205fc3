//! A PostgreSQL server of the test's own (Debian's `postgresql` package, which
//! `scripts/install-servers.sh` installs): a cluster made with `initdb` in a temp
//! directory, run as the `postgres` user on a free loopback port with its socket in that
//! directory, trusting local connections; stopped and removed when dropped.
#![allow(dead_code)] // each test binary uses a different part of it

use std::os::unix::fs::{PermissionsExt as _, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct PostgresServer {
    pub(crate) port: u16,
    dir: PathBuf,
}

/// `initdb` and `pg_ctl` of the newest installed major version.
fn bin(tool: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").unwrap_or_else(|e| {
        panic!(
            "/usr/lib/postgresql: {e}: scripts/install-servers.sh installs PostgreSQL \
             (apt-get install postgresql)"
        )
    });
    let newest = versions
        .filter_map(|v| v.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("no version under /usr/lib/postgresql");
    Path::new("/usr/lib/postgresql")
        .join(newest.to_string())
        .join("bin")
        .join(tool)
}

/// `tool args` as the `postgres` user (the server refuses to run as root).
fn as_postgres(tool: &str, args: &[&str]) -> std::process::ExitStatus {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin(tool))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("runuser -u postgres -- {tool}: {e}"))
}

impl PostgresServer {
    pub(crate) fn start() -> PostgresServer {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        PostgresServer::start_on(port)
    }

    /// A new cluster on `port` (a server "restarted" there).
    pub(crate) fn start_on(port: u16) -> PostgresServer {
        let dir = std::env::temp_dir().join(format!("crac-postgres-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // the postgres user owns the cluster; the directories above must let it in
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let owner = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&owner.stdout)
            .trim()
            .parse()
            .unwrap();
        chown(&dir, Some(uid), None).unwrap();
        let data = dir.join("data");
        let data = data.to_str().unwrap();
        let status = as_postgres("initdb", &["-D", data, "-A", "trust", "-U", "postgres"]);
        assert!(status.success(), "initdb -D {data} failed: {status}");
        let options = format!("-k {} -p {port} -h 127.0.0.1", dir.display());
        let log = dir.join("log");
        let log_path = log.to_str().unwrap();
        let status = as_postgres(
            "pg_ctl",
            &["-D", data, "-o", &options, "-l", log_path, "-w", "start"],
        );
        assert!(
            status.success(),
            "pg_ctl start failed ({status}): see {log_path}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start: see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PostgresServer { port, dir }
    }

    /// A libpq-style configuration string for `tokio_postgres::connect`.
    pub(crate) fn config(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let data = data.to_str().unwrap();
        let _ = as_postgres("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
