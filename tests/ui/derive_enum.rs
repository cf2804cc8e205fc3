use crac::Checkpointable;

#[derive(Checkpointable)]
enum Connection {
    Open(u32),
    Closed,
}

fn main() {
    let _ = (Connection::Open(1), Connection::Closed);
}
