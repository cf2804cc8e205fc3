//! The macros' compile errors: each `tests/ui/*.rs` must fail to compile with exactly
//! the messages of its `.stderr` snapshot (regenerate with `TRYBUILD=overwrite`, then
//! read every diff: messages must be clear and point at the user's tokens).
//!
//! The snapshots compile against crac with this run's features: `#[crac::test]`'s
//! mistakes (`ui/crac_test/`) need its `testing` feature; without it, the one error is
//! the one naming the feature (`ui/without_testing/`). `scripts/test.sh` runs both ways.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    if cfg!(feature = "testing") {
        t.compile_fail("tests/ui/crac_test/*.rs");
    } else {
        t.compile_fail("tests/ui/without_testing/*.rs");
    }
}
