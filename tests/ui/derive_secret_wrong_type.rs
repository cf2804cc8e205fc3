use crac::Checkpointable;

#[derive(Checkpointable)]
struct Vault {
    #[crac(secret)]
    key: u32,
}

fn main() {}
