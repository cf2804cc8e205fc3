use crac::Checkpointable;

#[derive(Checkpointable)]
struct Borrowed<'a, T> {
    name: &'a str,
    value: T,
}

fn main() {}
