use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
#[crac(name = "a", depends_on())]
#[crac(name = "b", depends_on())]
struct Cache {
    #[crac(secret, secret)]
    key: Mutex<String>,
}

fn main() {}
