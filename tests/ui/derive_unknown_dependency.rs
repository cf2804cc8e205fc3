use crac::Checkpointable;

#[derive(Checkpointable)]
#[crac(depends_on(Database, storage::Missing))]
struct Cache;

mod storage {}

fn main() {}
