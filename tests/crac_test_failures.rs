//! How a `#[crac::test]` fails: every way it can go wrong ends the test with the reason,
//! never a pass, a hang or a process left behind. Real CRIU, as in `restored_copies.rs`.

use std::process::Command;
use std::time::Duration;

use crac::testing::Trial;

#[crac::test]
#[should_panic(
    expected = "no image was written: setup panicked at tests/crac_test_failures.rs:15:18: \
                setup fails on purpose"
)]
fn a_setup_that_panics_fails_the_test(trial: Trial) {
    trial.run(|| panic!("setup fails on purpose"), |(), _| ());
}

#[crac::test]
#[should_panic(expected = "crac-test-open-file-marker")]
fn a_checkpoint_refused_for_an_open_file_fails_the_test_naming_the_file(trial: Trial) {
    trial.run(
        || {
            let path = std::env::temp_dir()
                .join(format!("crac-test-open-file-marker-{}", std::process::id()));
            let file = std::fs::File::create(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            file
        },
        |_, _| (),
    );
}

#[crac::test]
#[should_panic(expected = "was still running at its deadline (Trial::timeout) and was killed")]
fn a_setup_over_its_timeout_is_killed_and_fails_the_test(trial: Trial) {
    trial
        .timeout(Duration::from_millis(500))
        .run(|| std::thread::sleep(Duration::from_secs(60)), |(), _| ());
}

#[crac::test]
#[should_panic(expected = "the test ended without calling trial.run(setup, each)")]
fn a_test_that_never_runs_its_trial_fails(trial: Trial) {
    let _ = trial.copies();
}

mod nested {
    use crac::testing::Trial;

    /// A raw identifier in a nested module: the checkpointed process finds the test by
    /// libtest's name for it, `nested::r#loop`.
    #[crac::test(copies = 2)]
    fn r#loop(trial: Trial) {
        let generations: Vec<u64> = trial.run(|| (), |(), restore| restore.generation);
        assert_eq!(generations, [1, 1]);
    }
}

/// Run as a user would, alone, with a `CRAC_CLI` that points nowhere: the failure names
/// the variable and its path (before anything is started, so without root too), and
/// is reported at the test's `trial.run`, not inside crac.
#[test]
fn a_crac_cli_that_points_nowhere_fails_the_test_naming_it_at_the_trial() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "nested::r#loop",
            "--exact",
            "--include-ignored",
            "--nocapture",
        ])
        .env("CRAC_CLI", "/nowhere/crac")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("panicked at tests/crac_test_failures.rs:54:43:\ncrac::test nested::r#loop: CRAC_CLI=/nowhere/crac names no file"),
        "{stderr}"
    );
}
