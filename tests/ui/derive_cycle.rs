use crac::Checkpointable;

#[derive(Checkpointable)]
#[crac(depends_on(B))]
struct A;

#[derive(Checkpointable)]
#[crac(depends_on(C))]
struct B;

#[derive(Checkpointable)]
#[crac(depends_on(A))]
struct C;

fn main() {}
