use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
#[crac(nmae = "cache")]
#[crac(resource)]
struct Cache {
    #[crac(resourse)]
    a: Mutex<u32>,
    #[crac(name = "b")]
    b: Mutex<u32>,
}

fn main() {}
