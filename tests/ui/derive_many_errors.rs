use std::sync::Mutex;

use crac::Checkpointable;

// Every mistake is reported at once, and the type still implements `Resource`, so its
// use below adds no error.
#[derive(Checkpointable)]
#[crac(name = 5, colour = "blue")]
struct Cache {
    #[crac(skip, resource)]
    a: Mutex<u32>,
    #[crac(reload = Self::load)]
    b: Mutex<String>,
    #[crac(secret, secret)]
    c: Mutex<String>,
}

fn main() {
    let cache = std::sync::Arc::new(Cache {
        a: Mutex::new(0),
        b: Mutex::new(String::new()),
        c: Mutex::new(String::new()),
    });
    crac::register(&cache);
}
