//! An async hook in a program without a tokio runtime (feature `tokio`): the blocking
//! `checkpoint_restore()` runs it on a private current-thread runtime. In a file of its
//! own: no other test's runtime may have been remembered as the application's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crac::{Checkpoint, Checkpointable};

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::flush)]
struct Buffer(AtomicBool);

impl Buffer {
    async fn flush(&self, _: &Checkpoint) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn an_async_hook_runs_on_a_private_runtime_when_the_program_has_none() {
    crac::use_engine("simulate").unwrap();
    let buffer = Arc::new(Buffer(AtomicBool::new(false)));
    crac::register(&buffer);
    crac::checkpoint_restore().unwrap();
    assert!(buffer.0.load(Ordering::SeqCst));
}
