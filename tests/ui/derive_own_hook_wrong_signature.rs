use crac::{Checkpoint, Checkpointable};

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::flush, after_restore = Self::missing)]
struct Cache;

impl Cache {
    fn flush(&self, _: &Checkpoint) -> u32 {
        0
    }
}

fn main() {}
