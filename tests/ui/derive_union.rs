use crac::Checkpointable;

#[derive(Checkpointable)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
