#[crac::on_restore(depends_on(missing, String))]
fn reconnect() {}

fn main() {}
