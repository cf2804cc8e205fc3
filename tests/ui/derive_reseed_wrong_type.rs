use crac::Checkpointable;

#[derive(Checkpointable)]
struct Ids {
    #[crac(reseed)]
    next: u32,
}

fn main() {}
