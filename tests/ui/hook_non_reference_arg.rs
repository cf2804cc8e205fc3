use crac::{Checkpoint, Restore};

#[crac::before_checkpoint]
fn flush(_: Checkpoint) {}

#[crac::on_restore]
fn reload(_: &mut Restore) {}

fn main() {}
