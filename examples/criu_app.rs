//! The program the CRIU end-to-end tests checkpoint and restore (tests/criu_e2e.rs).
//!
//! It warms real state, registers resources that report their hooks on stdout, then
//! checkpoints according to its first argument, and after the checkpoint prints what it
//! observes so the test can compare both sides of the image.
//!
//! `criu_app SCENARIO` with SCENARIO one of: `plain`, `hook-error`, `open-file`,
//! `tcp`, `twice`, `request`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use crac::{BoxError, Checkpoint, Checkpointable, Restore};

#[derive(Checkpointable)]
#[crac(name = "index", before_checkpoint = Self::park, after_restore = Self::resume)]
struct Index {
    entries: Mutex<HashMap<u64, u64>>,
}

impl Index {
    fn park(&self, _: &Checkpoint) -> Result<(), BoxError> {
        say("hook index before_checkpoint");
        Ok(())
    }
    fn resume(&self, restore: &Restore) -> Result<(), BoxError> {
        say(&format!("hook index after_restore {:?}", restore.outcome()));
        Ok(())
    }
    fn checksum(&self) -> u64 {
        let entries = self.entries.lock().unwrap();
        entries.iter().fold(0u64, |acc, (k, v)| acc.wrapping_add(k.wrapping_mul(31) ^ v))
    }
}

#[derive(Checkpointable)]
#[crac(name = "server", depends_on(Index), before_checkpoint = Self::close, after_restore = Self::open)]
struct Server {
    refuse: bool,
}

impl Server {
    fn close(&self, _: &Checkpoint) -> Result<(), BoxError> {
        say("hook server before_checkpoint");
        if self.refuse {
            return Err("requests still in flight".into());
        }
        Ok(())
    }
    fn open(&self, restore: &Restore) -> Result<(), BoxError> {
        say(&format!("hook server after_restore {:?}", restore.outcome()));
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "plain".into());
    let index = Arc::new(Index {
        entries: Mutex::new((0..200_000u64).map(|i| (i, i.wrapping_mul(2654435761) % 1_000_003)).collect()),
    });
    let server = Arc::new(Server {
        refuse: scenario == "hook-error",
    });
    crac::register(&index);
    crac::register(&server);
    say(&format!("pid {} checksum {}", std::process::id(), index.checksum()));

    // Held across the checkpoint on purpose, for the open-resource check to find.
    let _file = (scenario == "open-file").then(|| std::fs::File::open("/etc/hostname").unwrap());
    let _tcp = (scenario == "tcp").then(|| {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let _claim = crac::claim_fd(&server, "test listener");
        (server, client, _claim)
    });

    let rounds = if scenario == "twice" { 2 } else { 1 };
    for round in 1..=rounds {
        match crac::checkpoint_restore() {
            Ok(restore) => say(&format!(
                "round {round} outcome {:?} generation {} checksum {}",
                restore.outcome(),
                restore.generation,
                index.checksum()
            )),
            Err(e) => {
                say(&format!("round {round} error {e}"));
                say(&format!("still running checksum {}", index.checksum()));
                std::process::exit(3);
            }
        }
    }
    say("exiting 7");
    std::process::exit(7);
}
