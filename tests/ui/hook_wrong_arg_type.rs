use crac::{Checkpoint, Restore};

#[crac::before_checkpoint]
fn flush(_: &String) {}

#[crac::on_restore]
fn reload(_: &Checkpoint) {}

#[crac::before_checkpoint]
fn close(_: &crac::Restore) {}

fn main() {
    let _ = std::mem::size_of::<Restore>();
}
