#[derive(crac::Checkpointable)]
#[crac(deadline = "2 parsecs")]
struct Slow {
    #[crac(deadline = "1s")]
    field: u8,
}

#[derive(crac::Checkpointable)]
#[crac(deadline = "0ms", deadline = 5)]
struct Zero;

#[crac::before_checkpoint(deadline = "1.5s")]
fn flush() {}

#[crac::on_restore(deadline = "1m", deadline = "2m")]
fn reconnect() {}

fn main() {}
