//! Coordination cost with the `simulate` engine (no image is taken): what crac-rs itself
//! adds to a checkpoint, and what registering a resource costs on the hot path.
//!
//! Run: `cargo bench --bench coordination`.

use std::sync::Arc;

use crac::{BoxError, Checkpoint, Resource, Restore};

struct Trivial;

impl Resource for Trivial {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        Ok(())
    }
}

fn main() {
    crac::use_engine("simulate").expect("simulate engine is compiled in");
    divan::main();
}

/// One full `checkpoint_restore()` over N registered resources with trivial hooks.
#[divan::bench(args = [100, 10_000])]
fn checkpoint_restore(bencher: divan::Bencher, n: usize) {
    let context = Arc::new(crac::Context::new("bench"));
    let resources: Vec<_> = (0..n).map(|_| Arc::new(Trivial)).collect();
    for r in &resources {
        context.register(r);
    }
    crac::register(&context);
    bencher.bench(|| crac::checkpoint_restore().unwrap());
}

/// Registering one resource into the global context (the `Arc` is made outside timing).
#[divan::bench]
fn register(bencher: divan::Bencher) {
    bencher
        .with_inputs(|| Arc::new(Trivial))
        .bench_local_values(|r| {
            crac::register(&r);
            r
        });
}

/// One operation through an open `Gate`: enter, then leave (the quiesce point's hot path).
#[divan::bench]
fn gate_pass(bencher: divan::Bencher) {
    let gate = crac::Gate::new("bench");
    bencher.bench(|| drop(divan::black_box(&gate).enter()));
}
