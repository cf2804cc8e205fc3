use std::sync::Mutex;

use crac::{Checkpoint, Checkpointable};

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::flush, after_restore = Self::reopen)]
struct Cache {
    #[crac(secret, reload = Self::load_key)]
    key: Mutex<String>,
}

impl Cache {
    fn flush(&self, _: &Checkpoint) -> u32 {
        0
    }
    fn reopen(&self) {}
    fn load_key(&self) -> Result<Vec<u8>, std::io::Error> {
        Ok(Vec::new())
    }
}

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::missing, after_restore = Self::flush)]
struct Store {
    #[crac(with = empty)]
    entries: u32,
}

mod empty {}

impl Store {
    fn flush(&self, _: &String) {}
}

fn main() {}
