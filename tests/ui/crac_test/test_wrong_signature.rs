use crac::testing::Trial;

#[crac::test]
fn without_the_trial() {}

#[crac::test]
fn with_more(_trial: Trial, _extra: u32) {}

#[crac::test]
async fn asynchronous(_trial: Trial) {}

#[crac::test]
fn generic<T>(_trial: Trial) {}

#[crac::test]
#[test]
fn twice_a_test(_trial: Trial) {}

struct Suite;

impl Suite {
    #[crac::test]
    fn method(&self, _trial: Trial) {}
}


#[crac::test(copies = 2)]
fn takes_a_number(_copies: usize) {}
fn main() {}
