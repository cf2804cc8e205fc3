use crac::Checkpointable;

#[derive(Checkpointable)]
struct Pool {
    #[crac(resource)]
    size: u32,
}

fn main() {}
