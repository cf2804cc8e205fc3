// `#[crac::test]` in a crate that did not enable crac's `testing` feature: one error,
// at the attribute, naming the feature and how to enable it.
use crac::testing::Trial;

#[crac::test]
fn checkpointed(trial: Trial) {
    trial.run(|| (), |(), _| ());
}

fn main() {}
