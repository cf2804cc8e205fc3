#[crac::before_checkpoint(depends_on(b))]
fn a() {}

#[crac::before_checkpoint(depends_on(a))]
fn b() {}

fn main() {}
