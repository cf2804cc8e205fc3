use crac::Restore;

#[crac::on_restore]
fn reconnect<T: Default>() {}

#[crac::on_restore]
fn reopen<'a>(_: &'a Restore) {}

fn main() {}
