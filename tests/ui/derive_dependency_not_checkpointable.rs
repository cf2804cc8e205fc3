use crac::Checkpointable;

fn helper() {}

#[derive(Checkpointable)]
#[crac(depends_on(String, Vec<u8>))]
struct Cache;

fn main() {
    helper();
}
