//! `#[crac::test]` on the field attributes whose point is what differs between restored
//! copies and what survives into them: `#[crac(reseed)]`, `instance_id`,
//! `#[crac(restore_env)]`. Each test really checkpoints with CRIU and restores three
//! concurrent copies (it is ignored, with the reason, where CRIU cannot run; under
//! `CI=true` it fails instead).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use crac::Checkpointable;
use crac::testing::Trial;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const SEED: u64 = 7;

#[derive(Checkpointable)]
struct Dice {
    #[crac(reseed)]
    rng: Mutex<StdRng>,
    /// Warm state the copies must find as it was.
    rolls: Vec<u64>,
}

#[crac::test(copies = 3)]
fn reseeded_generators_draw_differently_in_every_copy(trial: Trial) {
    let draws: Vec<(u64, Vec<u64>)> = trial.run(
        || {
            let mut rng = StdRng::seed_from_u64(SEED);
            let rolls = (0..1000).map(|_| rng.random()).collect();
            let dice = Arc::new(Dice {
                rng: Mutex::new(rng),
                rolls,
            });
            crac::register(&dice);
            dice
        },
        |dice, _| (dice.rng.lock().unwrap().random(), dice.rolls.clone()),
    );
    // What every copy would draw had the generator not been reseeded.
    let mut unseeded = StdRng::seed_from_u64(SEED);
    let warm: Vec<u64> = (0..1000).map(|_| unseeded.random()).collect();
    let next: u64 = unseeded.random();

    assert_eq!(draws.len(), 3);
    let distinct: HashSet<u64> = draws.iter().map(|(draw, _)| *draw).collect();
    assert_eq!(distinct.len(), 3, "copies drew the same number: {draws:?}");
    assert!(
        !distinct.contains(&next),
        "a copy drew the image's next number"
    );
    for (_, rolls) in &draws {
        assert_eq!(rolls, &warm, "the warm state did not survive");
    }
}

#[crac::test(copies = 3)]
fn every_copy_has_an_instance_id_of_its_own(trial: Trial) {
    let ids: Vec<(u128, u128, u128, u64)> = trial.run(crac::instance_id, |before, restore| {
        (
            before,
            crac::instance_id(),
            restore.instance_id,
            restore.generation,
        )
    });
    let checkpointed = ids[0].0;
    let fresh: HashSet<u128> = ids.iter().map(|(_, now, _, _)| *now).collect();
    assert_eq!(fresh.len(), 3, "copies share an instance id: {ids:?}");
    assert!(!fresh.contains(&checkpointed));
    for (before, now, told, generation) in ids {
        assert_eq!(before, checkpointed, "the image's id is one");
        assert_eq!(now, told, "Restore::instance_id is crac::instance_id()");
        assert_eq!(generation, 1);
    }
}

#[derive(Checkpointable)]
struct Server {
    #[crac(restore_env = "PORT")]
    port: AtomicU16,
    #[crac(restore_env = "GREETING")]
    greeting: Mutex<String>,
}

impl Server {
    fn registered() -> Arc<Server> {
        let server = Arc::new(Server {
            port: AtomicU16::new(80),
            greeting: Mutex::new("hello".into()),
        });
        crac::register(&server);
        server
    }
}

#[crac::test(copies = 3)]
fn restore_env_fields_take_each_copys_value_and_keep_theirs_without_one(trial: Trial) {
    let trial = trial.env("PORT", |copy| (8000 + copy).to_string());
    let seen: Vec<(u16, String)> = trial.run(Server::registered, |server, _| {
        let greeting = server.greeting.lock().unwrap().clone();
        (server.port.load(Ordering::SeqCst), greeting)
    });
    assert_eq!(
        seen,
        [8000, 8001, 8002].map(|port| (port, "hello".to_string()))
    );
}

#[crac::test]
#[should_panic(expected = "PORT=\"eighty\" is not a valid `u16`")]
fn a_restore_env_value_that_does_not_parse_fails_the_copy_naming_it(trial: Trial) {
    trial
        .env("PORT", |_| "eighty".into())
        .run(Server::registered, |server, _| {
            server.port.load(Ordering::SeqCst)
        });
}

/// Copies are numbered from 0, as `Trial::env` numbers them; the copy's own panic
/// location is reported, not the trial's.
#[crac::test(copies = 2)]
#[should_panic(
    expected = "copy 1 (of 0..2) panicked at tests/restored_copies.rs:133:17: the second copy fails"
)]
fn a_copy_that_panics_fails_the_test_naming_the_copy(trial: Trial) {
    trial.env("COPY", |copy| copy.to_string()).run(
        || (),
        |(), restore| {
            let copy = restore.env.iter().find(|(name, _)| name == "COPY").unwrap();
            if copy.1 == "1" {
                panic!("the second copy fails");
            }
        },
    );
}
