use crac::testing::Trial;

#[crac::test(copies = 0)]
fn no_copies(_trial: Trial) {}

#[crac::test(copies = "3")]
fn copies_as_text(_trial: Trial) {}

#[crac::test(copies = 2, copies = 3)]
fn copies_twice(_trial: Trial) {}

#[crac::test(timeout = 5)]
fn unknown_option(_trial: Trial) {}

fn main() {}
