use std::sync::Mutex;

use crac::Checkpointable;

struct Endpoint;

#[derive(Checkpointable)]
struct Config {
    #[crac(restore_env = "PORT")]
    port: u16,
    #[crac(restore_env = "ENDPOINT")]
    endpoint: Mutex<Endpoint>,
}

fn main() {}
