#[crac::on_restore]
async fn reconnect() {}

fn main() {}
