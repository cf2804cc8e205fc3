use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
struct Config {
    #[crac(restore_env)]
    a: Mutex<u16>,
    #[crac(restore_env(name = "PORT", required))]
    b: Mutex<u16>,
    #[crac(restore_env("PORT", requird))]
    c: Mutex<u16>,
    #[crac(restore_env = "")]
    d: Mutex<u16>,
    #[crac(restore_env("PORT", required, required))]
    e: Mutex<u16>,
    #[crac(restore_env = PORT)]
    f: Mutex<u16>,
    #[crac(restore_env = "A=B")]
    g: Mutex<u16>,
    #[crac(restore_env("PORT", required = true))]
    h: Mutex<u16>,
    #[crac(restore_env = "PORT", reseed)]
    i: Mutex<u16>,
}

fn main() {}
