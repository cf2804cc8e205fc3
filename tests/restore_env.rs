//! `#[crac(restore_env = "NAME")]` through checkpoints with the `restoring` engine, which
//! passes variables as `crac restore IMAGE --env NAME=VALUE` does: fields are parsed
//! and stored before the type's own `after_restore`; a value that does not parse, or a
//! required one that is missing, fails the restore naming the variable (and the value
//! and type), and leaves the field as it was.

mod common;
// in its own module: only these tests register the engine
#[path = "common/restoring.rs"]
mod restoring;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use common::serial;
use crac::{Checkpointable, Error, Restore};
use restoring::ENV;

#[derive(Checkpointable)]
#[crac(name = "config", after_restore = Self::seen)]
struct Config {
    #[crac(restore_env = "APP_PORT")]
    port: Mutex<u16>,
    #[crac(restore_env("APP_UPSTREAM"))]
    upstream: RwLock<SocketAddr>,
    #[crac(restore_env("APP_WORKERS", required))]
    workers: AtomicU32,
    #[crac(restore_env = "APP_VERBOSE")]
    verbose: AtomicBool,
    #[crac(restore_env = "APP_REGION")]
    region: Mutex<String>,
    /// What the type's own `after_restore` saw of `port`.
    port_seen: Mutex<Option<u16>>,
}

impl Config {
    fn new() -> Arc<Config> {
        Arc::new(Config {
            port: Mutex::new(8080),
            upstream: RwLock::new("127.0.0.1:6379".parse().unwrap()),
            workers: AtomicU32::new(4),
            verbose: AtomicBool::new(false),
            region: Mutex::new("eu".into()),
            port_seen: Mutex::new(None),
        })
    }

    fn seen(&self, _: &Restore) {
        *self.port_seen.lock().unwrap() = Some(*self.port.lock().unwrap());
    }

    fn state(&self) -> (u16, SocketAddr, u32, bool, String) {
        (
            *self.port.lock().unwrap(),
            *self.upstream.read().unwrap(),
            self.workers.load(Ordering::SeqCst),
            self.verbose.load(Ordering::SeqCst),
            self.region.lock().unwrap().clone(),
        )
    }
}

fn restore_with(env: &[(&str, &str)]) -> Result<Restore, Error> {
    *ENV.lock().unwrap() = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let result = crac::checkpoint_restore();
    ENV.lock().unwrap().clear();
    result
}

#[test]
fn variables_the_restorer_passes_are_parsed_into_the_fields_before_the_own_hook() {
    let _serial = serial();
    crac::use_engine("restoring").unwrap();
    let config = Config::new();
    crac::register(&config);

    restore_with(&[
        ("APP_PORT", "9090"),
        ("APP_UPSTREAM", "10.0.0.7:6380"),
        ("APP_WORKERS", "16"),
        ("APP_VERBOSE", "true"),
        ("APP_REGION", "us-east"),
        ("APP_PORT", "9091"), // the last one wins, as in an environment
    ])
    .unwrap();
    assert_eq!(
        config.state(),
        (
            9091,
            "10.0.0.7:6380".parse().unwrap(),
            16,
            true,
            "us-east".into()
        )
    );
    assert_eq!(*config.port_seen.lock().unwrap(), Some(9091));

    // absent optional variables leave their fields alone
    restore_with(&[("APP_WORKERS", "2")]).unwrap();
    assert_eq!(
        config.state(),
        (
            9091,
            "10.0.0.7:6380".parse().unwrap(),
            2,
            true,
            "us-east".into()
        )
    );
}

#[test]
fn a_value_that_does_not_parse_fails_the_restore_naming_variable_value_and_type() {
    let _serial = serial();
    crac::use_engine("restoring").unwrap();
    let config = Config::new();
    crac::register(&config);

    let error = restore_with(&[
        ("APP_PORT", "eighty"),
        ("APP_UPSTREAM", "nowhere"),
        ("APP_WORKERS", "8"),
    ])
    .unwrap_err();
    let Error::RestoreFailed { failures, .. } = &error else {
        panic!("a restore failure: {error}");
    };
    let failures: Vec<_> = failures.0.iter().map(ToString::to_string).collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let message = &failures[0];
    for expected in [
        "`config.port` failed in after_restore",
        "APP_PORT=\"eighty\" is not a valid `u16` (invalid digit found in string)",
        "`config.upstream` failed in after_restore",
        "APP_UPSTREAM=\"nowhere\" is not a valid `core::net::socket_addr::SocketAddr` \
         (invalid socket address syntax)",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    // the fields that failed keep their value; the others are set
    assert_eq!(
        config.state(),
        (
            8080,
            "127.0.0.1:6379".parse().unwrap(),
            8,
            false,
            "eu".into()
        )
    );
}

#[test]
fn a_required_variable_the_restorer_did_not_pass_fails_the_restore_and_says_how_to_pass_it() {
    let _serial = serial();
    crac::use_engine("restoring").unwrap();
    let config = Config::new();
    crac::register(&config);

    let error = restore_with(&[("APP_PORT", "9000")]).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "`config.workers` failed in after_restore: the restore-time variable APP_WORKERS is \
             required but the restorer did not pass it: restore with \
             `crac restore IMAGE --env APP_WORKERS=VALUE`"
        ),
        "{message}"
    );
    assert_eq!(config.state().0, 9000, "the other fields are still set");
}

#[test]
fn a_rollback_changes_nothing_and_requires_nothing() {
    let _serial = serial();
    // `simulate` reports a restore with no variables: a required one fails it
    crac::use_engine("simulate").unwrap();
    let config = Config::new();
    crac::register(&config);
    assert!(crac::checkpoint_restore().is_err());

    let refuse = Arc::new(Refuse);
    crac::register(&refuse);
    let error = crac::checkpoint_restore().unwrap_err();
    assert!(
        matches!(&error, Error::CheckpointRefused { failures } if failures.0.len() == 1),
        "only the refusal, no complaint about APP_WORKERS on rollback: {error}"
    );
    assert_eq!(config.state().2, 4);
}

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::refuse)]
struct Refuse;

impl Refuse {
    fn refuse(&self, _: &crac::Checkpoint) -> Result<(), crac::BoxError> {
        Err("not now".into())
    }
}
