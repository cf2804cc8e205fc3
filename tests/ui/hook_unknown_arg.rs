#[crac::before_checkpoint(depends_on(flush), nmae = "x", name = 5)]
fn close() {}

#[crac::before_checkpoint]
fn flush() {}

#[crac::on_restore]
struct NotAFunction;

fn main() {}
