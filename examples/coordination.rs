//! The coordination protocol end to end with the `simulate` engine (no CRIU needed):
//! derived resources with dependencies, hook functions, a nested context, and a
//! checkpoint refused by a resource, with the error it produces.
//!
//! Run: `cargo run --example coordination`

use std::sync::{Arc, Mutex};

use crac::{BoxError, Checkpoint, Checkpointable, Context, Restore};

/// Freed memory is zeroed, so no dropped copy of the signing key reaches an image
/// (without it, a checkpoint that wipes a `#[crac(secret)]` field is refused).
#[global_allocator]
static ALLOC: crac::ScrubbingAlloc = crac::ScrubbingAlloc::new(std::alloc::System);

/// A connection pool: closes its connections before a checkpoint, reopens after.
#[derive(Checkpointable)]
#[crac(name = "db-pool", before_checkpoint = Self::close, after_restore = Self::reopen)]
struct Pool {
    open: Mutex<usize>,
}

impl Pool {
    fn close(&self, _: &Checkpoint) -> Result<(), BoxError> {
        println!(
            "  db-pool: closing {} connections",
            self.open.lock().unwrap()
        );
        *self.open.lock().unwrap() = 0;
        Ok(())
    }

    fn reopen(&self, restore: &Restore) -> Result<(), BoxError> {
        *self.open.lock().unwrap() = 4;
        println!(
            "  db-pool: reopened 4 connections ({:?})",
            restore.outcome()
        );
        Ok(())
    }
}

/// A session store that uses the pool, holds a signing key, and a random generator.
#[derive(Checkpointable)]
#[crac(name = "sessions", depends_on(Pool))]
struct Sessions {
    #[crac(secret, reload = Self::load_key)]
    signing_key: Mutex<String>,
    #[crac(reseed)]
    ids: Mutex<rand::rngs::StdRng>,
}

impl Sessions {
    fn load_key(&self) -> Result<String, BoxError> {
        println!("  sessions: reloading the signing key");
        Ok("key-from-the-vault".to_string())
    }
}

/// Runs after every participant it depends on has been restored.
#[crac::on_restore(depends_on(Sessions))]
fn announce(restore: &Restore) {
    println!(
        "  announce: serving again ({:?}; restored {} times so far)",
        restore.outcome(),
        restore.generation
    );
}

#[crac::before_checkpoint]
fn flush_logs() {
    println!("  flush_logs: flushed");
}

/// Refuses the checkpoint while it has a request in flight.
struct Uploader {
    busy: bool,
}

impl crac::Resource for Uploader {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        if self.busy {
            return Err("an upload is in flight; retry when it completes".into());
        }
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        Ok(())
    }
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "uploader".into()
    }
}

fn main() -> Result<(), crac::Error> {
    crac::use_engine("simulate")?;

    let pool = Arc::new(Pool {
        open: Mutex::new(4),
    });
    let sessions = Arc::new(Sessions {
        signing_key: Mutex::new("key-from-the-vault".to_string()),
        ids: Mutex::new(rand::make_rng()),
    });
    let storage = Arc::new(Context::new("storage"));
    storage.register(&pool);
    storage.register(&sessions);
    crac::register(&storage);

    println!("plan:\n{}", crac::plan());

    println!("checkpoint:");
    let restore = crac::checkpoint_restore()?;
    println!(
        "-> {:?}, generation {}\n",
        restore.outcome(),
        restore.generation
    );

    let uploader = Arc::new(Uploader { busy: true });
    crac::register(&uploader);
    println!("checkpoint with an upload in flight:");
    match crac::checkpoint_restore() {
        Ok(_) => unreachable!("the uploader refuses"),
        Err(err) => println!("-> error: {err}"),
    }
    Ok(())
}
