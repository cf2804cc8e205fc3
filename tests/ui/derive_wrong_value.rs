use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
#[crac(name = 5)]
#[crac(before_checkpoint = "flush", after_restore)]
#[crac(depends_on = Other)]
struct Cache {
    #[crac(resource = true)]
    a: Mutex<u32>,
    #[crac(with = 5, reseed(fast))]
    b: Mutex<u32>,
    #[crac(secret, reload = Self::load())]
    c: Mutex<String>,
}

fn main() {}
