use crac::{Checkpoint, Checkpointable};

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::drain)]
struct Pool;

impl Pool {
    async fn drain(&self, _: &Checkpoint) {}
}

fn main() {}
