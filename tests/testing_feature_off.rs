//! Without crac's `testing` feature, `#[crac::test]` is a compile error naming the
//! feature and how to enable it. The snapshot compiles against crac with this run's
//! features, so `scripts/test.sh` runs this file alone, where nothing enables `testing`.
#![cfg(not(feature = "testing"))]

#[test]
fn crac_test_without_the_testing_feature_names_it() {
    trybuild::TestCases::new().compile_fail("tests/ui-without-testing/*.rs");
}
