//! Async hooks on the application's tokio runtime (feature `tokio`), with the `simulate`
//! engine: every combination of runtime flavor and caller (the runtime's `block_on`, a
//! spawned task) checkpoints without a panic or a deadlock, while a hook waits for a
//! task of that runtime — the case that deadlocks when a hook blocks a runtime thread.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Log, serial};
use crac::{BoxError, Checkpoint, Checkpointable, Outcome, Restore};
use tokio::sync::{mpsc, oneshot};

/// A server task on the runtime; the hooks stop it (waiting for its answer) and start
/// it again, as a listener that drains would.
#[derive(Checkpointable)]
#[crac(name = "server", before_checkpoint = Self::stop, after_restore = Self::start)]
struct Server {
    control: Mutex<Option<mpsc::Sender<oneshot::Sender<&'static str>>>>,
    log: Log,
}

impl Server {
    fn new(log: &Log) -> Arc<Server> {
        let server = Arc::new(Server {
            control: Mutex::new(None),
            log: log.clone(),
        });
        server.spawn_task();
        server
    }

    fn spawn_task(&self) {
        let (control, mut requests) = mpsc::channel::<oneshot::Sender<&'static str>>(1);
        tokio::spawn(async move {
            while let Some(reply) = requests.recv().await {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = reply.send("stopped");
            }
        });
        *self.control.lock().unwrap() = Some(control);
    }

    async fn stop(&self, _: &Checkpoint) -> Result<(), BoxError> {
        let control = self.control.lock().unwrap().take().ok_or("not running")?;
        let (reply, answer) = oneshot::channel();
        control.send(reply).await?;
        self.log.push(format!("server {}", answer.await?));
        Ok(())
    }

    async fn start(&self, restore: &Restore) {
        self.spawn_task();
        self.log
            .push(format!("server started ({:?})", restore.outcome()));
    }
}

static HOOK_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[crac::before_checkpoint(depends_on(Server))]
async fn flush_metrics(event: &Checkpoint) {
    tokio::time::sleep(Duration::from_millis(1)).await;
    HOOK_LOG
        .lock()
        .unwrap()
        .push(format!("metrics flushed for {}", event.engine));
}

fn runtime(flavor: &str) -> tokio::runtime::Runtime {
    match flavor {
        "multi" => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .unwrap()
}

/// Runs `test` on a thread of its own and fails if it has not finished in 20 s: a
/// deadlock is a failure, not a hung test run.
fn within_deadline(test: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => thread.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("deadlocked"),
    }
}

async fn checkpoint_with_a_server_task(log: Log) -> Vec<String> {
    let server = Server::new(&log);
    crac::register(&server);
    HOOK_LOG.lock().unwrap().clear();
    let restore = crac::tokio::checkpoint_restore().await.unwrap();
    assert_eq!(restore.outcome(), Outcome::Restored);
    // the task the hooks stopped and started runs on the same runtime afterwards
    let control = server.control.lock().unwrap().clone().unwrap();
    let (reply, answer) = oneshot::channel();
    control.send(reply).await.unwrap();
    assert_eq!(answer.await.unwrap(), "stopped");
    let mut entries = log.take();
    entries.extend(HOOK_LOG.lock().unwrap().drain(..));
    entries
}

fn matrix_case(flavor: &'static str, from_a_task: bool) {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    within_deadline(move || {
        let runtime = runtime(flavor);
        let log = Log::default();
        let entries = if from_a_task {
            runtime
                .block_on(runtime.spawn(checkpoint_with_a_server_task(log)))
                .unwrap()
        } else {
            runtime.block_on(checkpoint_with_a_server_task(log))
        };
        assert_eq!(
            entries,
            [
                "server stopped",
                "server started (Restored)",
                "metrics flushed for simulate"
            ],
            "{flavor} runtime, from a task: {from_a_task}"
        );
    });
}

#[test]
fn current_thread_runtime_from_block_on() {
    matrix_case("current", false);
}

#[test]
fn current_thread_runtime_from_a_spawned_task() {
    matrix_case("current", true);
}

#[test]
fn multi_thread_runtime_from_block_on() {
    matrix_case("multi", false);
}

#[test]
fn multi_thread_runtime_from_a_spawned_task() {
    matrix_case("multi", true);
}

#[test]
fn a_blocking_checkpoint_on_a_runtime_thread_is_refused_with_the_fix_not_a_panic() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    within_deadline(|| {
        let runtime = runtime("current");
        let log = Log::default();
        let error = runtime.block_on(async {
            let server = Server::new(&log);
            crac::register(&server);
            let error = crac::checkpoint_restore().unwrap_err();
            drop(server);
            error
        });
        let text = error.to_string();
        assert!(
            text.starts_with("checkpoint refused")
                && text.contains("start it with crac::tokio::checkpoint_restore().await"),
            "{text}"
        );
    });
}

#[test]
fn sync_hooks_keep_working_next_to_async_ones() {
    #[derive(Checkpointable)]
    #[crac(before_checkpoint = Self::before)]
    struct Plain(Log);
    impl Plain {
        fn before(&self, _: &Checkpoint) {
            self.0.push("plain before".into());
        }
    }
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    within_deadline(|| {
        let log = Log::default();
        let plain = Arc::new(Plain(log.clone()));
        crac::register(&plain);
        runtime("multi")
            .block_on(crac::tokio::checkpoint_restore())
            .unwrap();
        assert_eq!(log.take(), ["plain before"]);
    });
}

/// An async hook under a deadline: it waits for a task of the application's runtime.
#[derive(Checkpointable)]
#[crac(name = "slow async", deadline = "150ms")]
#[crac(before_checkpoint = Self::close, after_restore = Self::open)]
struct SlowAsync {
    server: Arc<Server>,
    sleep_ms: u64,
}

impl SlowAsync {
    async fn close(&self, event: &Checkpoint) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        self.server.stop(event).await
    }

    async fn open(&self, restore: &Restore) {
        self.server.start(restore).await;
    }
}

#[test]
fn async_hooks_keep_their_deadlines_on_either_runtime_flavor() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    for flavor in ["current", "multi"] {
        within_deadline(move || {
            let runtime = runtime(flavor);
            let log = Log::default();
            let (within, overrun) = runtime.block_on(async {
                let server = Server::new(&log);
                let quick = Arc::new(SlowAsync {
                    server: Arc::clone(&server),
                    sleep_ms: 1,
                });
                crac::register(&quick);
                let within = crac::tokio::checkpoint_restore().await;
                drop(quick);
                // Over its deadline, but within it again by the time the rollback's
                // after_restore (which waits for it) is due: the protocol returns with
                // both finished, before the runtime is dropped.
                let slow = Arc::new(SlowAsync {
                    server,
                    sleep_ms: 250,
                });
                crac::register(&slow);
                let overrun = crac::tokio::checkpoint_restore().await;
                (within, overrun)
            });
            assert_eq!(within.unwrap().outcome(), Outcome::Restored, "{flavor}");
            let error = overrun.unwrap_err().to_string();
            assert!(
                error.contains(
                    "`slow async` failed in before_checkpoint: did not finish within its \
                     deadline of 150ms"
                ),
                "{flavor}: {error}"
            );
            // The late hook finished on the runtime (stopping the server task) before
            // the rollback started it again.
            assert_eq!(
                log.take(),
                [
                    "server stopped",
                    "server started (Restored)",
                    "server stopped",
                    "server started (RolledBack)"
                ],
                "{flavor}"
            );
        });
    }
}
