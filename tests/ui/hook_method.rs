use crac::Checkpoint;

struct Cache;

impl Cache {
    #[crac::before_checkpoint]
    fn flush(&self, _: &Checkpoint) {}
}

fn main() {}
