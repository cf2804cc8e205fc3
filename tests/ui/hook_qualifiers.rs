#[crac::before_checkpoint]
const fn a() {}

#[crac::before_checkpoint]
unsafe fn b() {}

#[crac::before_checkpoint]
extern "C" fn c() {}

fn main() {}
