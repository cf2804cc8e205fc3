use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
#[crac(name = "nested")]
struct Nested;

#[derive(Checkpointable)]
struct Cache {
    #[crac(resource, secret)]
    a: Mutex<String>,
    #[crac(skip)]
    #[crac(reseed)]
    b: Mutex<u32>,
    #[crac(reseed, secret)]
    c: Mutex<u32>,
    #[crac(reload = Self::load)]
    d: Mutex<String>,
    #[crac(resource, with = module)]
    e: Nested,
}

fn main() {}
