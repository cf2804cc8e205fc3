// A random generator held without `reseed` or `same_in_every_copy`: every restored copy
// would draw the same numbers. The error names the field, its type and both options.
use std::sync::Mutex;

use crac::Checkpointable;

mod rand {
    pub mod rngs {
        pub struct SmallRng;
    }
}
mod fastrand {
    pub struct Rng;
}

#[derive(Checkpointable)]
struct Tokens {
    rng: ::rand::rngs::StdRng,
}

#[derive(Checkpointable)]
struct Sampler {
    label: String,
    picks: Mutex<rand::rngs::SmallRng>,
}

#[derive(Checkpointable)]
struct Shuffler(fastrand::Rng);

#[derive(Checkpointable)]
struct Skipped {
    #[crac(skip)]
    jitter: Option<Box<fastrand::Rng>>,
}

fn main() {}
