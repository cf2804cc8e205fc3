//! End to end with real CRIU: a program warms state, checkpoints itself, is killed, and
//! `crac restore` brings it back; both sides print what they observe and the tests
//! compare. They live beside the `crac` binary so that cargo builds it for them.
//!
//! Layout:
//! - `main.rs`: this entry; runs the scenario, or the tests with libtest-mimic.
//! - `scenario.rs`: the program under test. It is this executable itself, started with
//!   `CRAC_E2E_SCENARIO=<name>`: `main` then runs that scenario and never the tests.
//! - `harness.rs`: scratch directories, starting the scenario and `crac`, reading output.
//! - one module per topic, each exporting its `TESTS`: `restore.rs` (`crac restore`),
//!   `restorer.rs` (the restorer killed, timed out or interrupted),
//!   `run.rs` (`crac run` and launchers), `request.rs` (`crac checkpoint PID`),
//!   `inspect.rs` (`crac inspect`), `pack.rs` (`crac pack`,
//!   `crac unpack`: images as one file, heap segments included), `faults.rs` (refusals and failures), `integrity.rs`
//!   (damaged and edited images), `lazy.rs` (`crac restore --lazy`), `mapped_heap.rs`
//!   (`crac::MappedHeap`: restores that map the warmed heap, damaged segments, isolation,
//!   growth, collection), `fields.rs` (field
//!   attributes: `restore_env`, `reopen`),
//!   `runtime_fds.rs` (async runtimes' fds, peers and inherited fds in the fd check),
//!   `secrets.rs` (no secret in the image's bytes, secret environment given again),
//!   `hostile_images.rs` (FIFOs, links, paths, huge manifests and escapes planted in an
//!   image: refused by name, promptly, printed escaped),
//!   `security.rs` (what another local user can do to an image; `attacker.rs` is that
//!   user), `sealing.rs` (images sealed with the host's key, and the key's file),
//!   `ownership.rs` (images another user owns or can write refused, private
//!   modes, requests for another user's process denied),
//!   `services.rs` (`examples/axum_service.rs` with a real redis-server under `crac run`),
//!   `pools.rs` (`examples/pool_service.rs`: a pool of redis connections under `crac run`;
//!   `examples/pool_periodic.rs` across left-running checkpoints and a crash),
//!   `keep_serving.rs` (that service answers every request across periodic checkpoints),
//!   `soak.rs` (a hundred cycles of one lineage), `storage.rs` (full and read-only disks),
//!   `temp_files.rs` (another user's files in the temp directory during a restore; the
//!   secrets `crac __wait` does not carry),
//!   `containers.rs` (`examples/container/` in podman: restarts, the pod spec, privileges),
//!   `rootless.rs` (`crac doctor`; an ordinary user's `crac run`, `crac inspect`,
//!   concurrent restores and `#[crac::test]`s through a user namespace).
//!
//! Tests are named `topic::test`, and the usual test arguments work: run a subset with
//! `cargo test -p crac-cli --test e2e -- restore::` (or any part of a name), list them
//! with `-- --list`.
//!
//! Needs root and CRIU 4.1+ (`scripts/install-criu.sh`); `containers::` also podman
//! (`scripts/install-containers.sh`). Without them the tests are reported as ignored
//! and the reason printed once; with `CI=true` they fail with the reason instead.

mod attacker;
mod harness;
#[path = "../../../tests/common/postgres_server.rs"]
mod postgres_server;
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;
mod scenario;

mod containers;
mod faults;
mod fields;
mod hostile_images;
mod inspect;
mod integrity;
mod keep_serving;
mod lazy;
mod mapped_heap;
mod ownership;
mod pack;
mod pools;
mod request;
mod restore;
mod restorer;
mod rootless;
mod run;
mod runtime_fds;
mod sealing;
mod secrets;
mod security;
mod services;
mod soak;
mod storage;
mod temp_files;

use libtest_mimic::{Arguments, Completion, Trial};

/// The scenarios hold `#[crac(secret)]` fields and secret environment variables: freed
/// memory must be scrubbed (`secrets.rs` checks it is, in the image's bytes). Their heap
/// is a `crac::MappedHeap`, off (`CRAC_MAPPED_HEAP=off`, set in `main` for every process
/// the tests start) unless a test turns it on (`mapped_heap.rs`, `secrets.rs`).
#[global_allocator]
static ALLOC: crac::ScrubbingAlloc<crac::MappedHeap> =
    crac::ScrubbingAlloc::new(crac::MappedHeap::new());

fn main() {
    if let Ok(name) = std::env::var("CRAC_E2E_SCENARIO") {
        scenario::run(&name);
    }
    let args = Arguments::from_args();
    harness::use_own_temp_dir();
    // SAFETY: still a single thread, as for `use_own_temp_dir`.
    unsafe { std::env::set_var("CRAC_MAPPED_HEAP", "off") };
    // Listing runs nothing, so it needs no CRIU.
    let problem = if args.list {
        None
    } else {
        harness::criu_problem().map(|why| format!("{why} (run scripts/install-criu.sh as root)"))
    };
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if let Some(why) = &problem
        && !ci
    {
        eprintln!("CRIU end-to-end tests ignored: {why}");
    }
    // The container tests need a container runtime besides CRIU.
    let container_problem = match &problem {
        None if !args.list => containers::problem()
            .map(|why| format!("{why} (run scripts/install-containers.sh as root)")),
        _ => None,
    };
    if let Some(why) = &container_problem
        && !ci
    {
        eprintln!("container end-to-end tests ignored: {why}");
    }
    let topics = [
        ("restore", restore::TESTS),
        ("restorer", restorer::TESTS),
        ("run", run::TESTS),
        ("request", request::TESTS),
        ("inspect", inspect::TESTS),
        ("pack", pack::TESTS),
        ("hostile_images", hostile_images::TESTS),
        ("faults", faults::TESTS),
        ("fields", fields::TESTS),
        ("integrity", integrity::TESTS),
        ("lazy", lazy::TESTS),
        ("mapped_heap", mapped_heap::TESTS),
        ("runtime_fds", runtime_fds::TESTS),
        ("secrets", secrets::TESTS),
        ("security", security::TESTS),
        ("sealing", sealing::TESTS),
        ("ownership", ownership::TESTS),
        ("services", services::TESTS),
        ("pools", pools::TESTS),
        ("keep_serving", keep_serving::TESTS),
        ("soak", soak::TESTS),
        ("storage", storage::TESTS),
        ("temp_files", temp_files::TESTS),
        ("rootless", rootless::TESTS),
        ("containers", containers::TESTS),
    ];
    let trials = topics
        .into_iter()
        .flat_map(|(topic, tests)| tests.iter().map(move |&(name, test)| (topic, name, test)))
        .map(|(topic, name, test)| {
            let name = format!("{topic}::{name}");
            let problem = match topic {
                "containers" => problem.clone().or_else(|| container_problem.clone()),
                _ => problem.clone(),
            };
            match problem {
                None => Trial::test(name, move || {
                    test();
                    Ok(())
                }),
                Some(why) if ci => Trial::test(name, move || {
                    Err(
                        format!("end-to-end test cannot run: {why} (CI=true: this is a failure)")
                            .into(),
                    )
                }),
                // Ignored when run, not flagged: `--include-ignored` cannot make it fail.
                Some(_) => Trial::ignorable_test(name, || Ok(Completion::ignored())),
            }
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // a failed run keeps its images and logs to look at
    if !conclusion.has_failed() {
        harness::remove_scratch();
    }
    conclusion.exit();
}
