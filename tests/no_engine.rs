//! Without an engine, registration works and a checkpoint says how to enable one
//! (the org.crac no-op facade). Its own binary: no engine may be selected here. With
//! the default `criu` feature there is always an engine, so `scripts/test.sh` runs this
//! file with `--no-default-features`.
#![cfg(not(feature = "criu"))]

mod common;

#[test]
fn without_an_engine_a_checkpoint_explains_how_to_enable_one() {
    // SAFETY: the only test of this binary; nothing else reads the environment meanwhile.
    unsafe { std::env::remove_var("CRAC_ENGINE") };
    let log = common::Log::default();
    let r = common::Recorder::new("r", &log);
    crac::register(&r);
    assert_eq!(crac::plan().names(), ["r"]);

    let err = crac::checkpoint_restore().unwrap_err();
    assert!(matches!(err, crac::Error::NoEngine));
    assert_eq!(
        err.to_string(),
        "no checkpoint engine is configured: build with crac's `criu` feature on Linux, or set \
         CRAC_ENGINE=simulate to run the protocol without taking an image"
    );
    assert!(log.take().is_empty(), "no hook runs without an engine");
}
