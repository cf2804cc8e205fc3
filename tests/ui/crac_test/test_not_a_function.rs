#[crac::test]
struct NotATest;

fn main() {}
