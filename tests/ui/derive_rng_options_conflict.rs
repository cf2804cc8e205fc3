// `same_in_every_copy` is a field's one role, like `reseed`: the two conflict, and it
// takes no value.
use std::sync::Mutex;

use crac::Checkpointable;
use rand::rngs::StdRng;

#[derive(Checkpointable)]
struct Both {
    #[crac(reseed, same_in_every_copy)]
    rng: Mutex<StdRng>,
}

#[derive(Checkpointable)]
struct Valued {
    #[crac(same_in_every_copy = "test fixtures")]
    rng: Mutex<StdRng>,
}

fn main() {}
