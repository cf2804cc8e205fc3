//! The macros' compile errors: each `tests/ui/*.rs` must fail to compile with exactly
//! the messages of its `.stderr` snapshot (regenerate with `TRYBUILD=overwrite`, then
//! read every diff: messages must be clear and point at the user's tokens).

#[test]
fn compile_fail() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
