use std::fs::File;
use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
struct Journal {
    #[crac(reopen)]
    path: Mutex<String>,
    #[crac(reopen)]
    log: File,
}

fn main() {}
