use std::fs::File;
use std::sync::Mutex;

use crac::Checkpointable;

#[derive(Checkpointable)]
struct Journal {
    #[crac(reopen = true)]
    a: Mutex<File>,
    #[crac(reopen(creat))]
    b: Mutex<File>,
    #[crac(reopen(path_env))]
    c: Mutex<File>,
    #[crac(reopen(path_env = "", create, create))]
    d: Mutex<File>,
    #[crac(reopen(path_env = "A", path_env = "B"))]
    e: Mutex<File>,
    #[crac(reopen, skip)]
    f: Mutex<File>,
}

fn main() {}
