//! Hook deadlines: a hook that has one runs on a thread of its own and is given up on
//! when it overruns; a hook without one runs inline on the protocol's thread, as if
//! deadlines did not exist.
//!
//! A thread cannot be killed, so an overrunning hook keeps running. What keeps it from
//! corrupting the protocol: its result is ignored, and every later hook of the same
//! participant waits for it first (on a thread of its own, within its own deadline), so
//! one participant's hooks never overlap and always run in protocol order — a rollback's
//! `after_restore` never runs while that participant's `before_checkpoint` still does.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{BoxError, Error, Phase, catch_panic};

/// The variable that sets a deadline for every hook that has none of its own.
pub(crate) use crate::env::HOOK_DEADLINE as ENV;

/// The error of a hook that did not finish within its deadline: the checkpoint is
/// refused (a `before_checkpoint`) or the restore reported failed (an `after_restore`).
///
/// The hook keeps running on its own thread; what it returns then is ignored, and the
/// participant's next hook waits for it to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// The hook's deadline.
    pub deadline: Duration,
    /// How long the protocol waited for it before giving up.
    pub ran: Duration,
    /// False when the hook never started: it was still waiting for an earlier hook of
    /// the same participant that had overrun.
    pub started: bool,
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "did not finish within its deadline of {} (gave up after {} ms",
            Show(self.deadline),
            self.ran.as_millis()
        )?;
        if !self.started {
            f.write_str(", still waiting for its earlier hook that overran")?;
        }
        f.write_str("); it keeps running on its own thread and its result will be ignored")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A duration as the deadline syntax writes it.
struct Show(Duration);

impl fmt::Display for Show {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        // A `Resource::deadline` in finer units than the syntax has.
        if ms == 0 || !self.0.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{:?}", self.0);
        }
        match ms {
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// Parses a deadline: a whole, non-zero number of milliseconds (`500ms`), seconds (`2s`)
/// or minutes (`1m`), the grammar the derive macros check at compile time.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    crac_shared::deadline::parse_millis(text)
        .map(Duration::from_millis)
        .map_err(|malformed| malformed.to_string())
}

/// `CRAC_HOOK_DEADLINE`, read once per checkpoint; unset or empty means no default.
pub(crate) fn process_default() -> Result<Option<Duration>, Error> {
    match std::env::var(ENV) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => parse(&value)
            .map(Some)
            .map_err(|reason| Error::InvalidSetting {
                variable: ENV,
                value,
                reason,
            }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(Error::InvalidSetting {
            variable: ENV,
            value: value.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        }),
    }
}

thread_local! {
    /// Set on the threads hooks with a deadline run on: `checkpoint_restore()` there is
    /// re-entry, as it is on the protocol's own thread.
    static ON_HOOK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// True on a thread running a hook under a deadline.
pub(crate) fn on_hook_thread() -> bool {
    ON_HOOK_THREAD.get()
}

/// A hook thread's end, for the participant's next hook to wait on.
#[derive(Default)]
struct Finished {
    done: Mutex<bool>,
    changed: Condvar,
}

impl Finished {
    fn set(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            self.changed
                .wait_while(done, |done| !*done)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

/// The last hook thread started for each participant (by address) that has not finished.
static RUNNING: Mutex<Vec<(usize, Arc<Finished>)>> = Mutex::new(Vec::new());
/// `RUNNING.len()`, read without the lock: hooks without deadlines look no further
/// while nothing has overrun.
static RUNNING_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Registers `finished` as the participant's latest hook; returns the one before it.
fn enqueue(participant: usize, finished: Arc<Finished>) -> Option<Arc<Finished>> {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    match running.iter_mut().find(|(p, _)| *p == participant) {
        Some((_, last)) => Some(std::mem::replace(last, finished)),
        None => {
            running.push((participant, finished));
            RUNNING_COUNT.store(running.len(), Ordering::Release);
            None
        }
    }
}

/// Marks `finished` done, and forgets it unless a later hook was queued behind it.
fn dequeue(participant: usize, finished: &Arc<Finished>) {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    running.retain(|(p, last)| !(*p == participant && Arc::ptr_eq(last, finished)));
    RUNNING_COUNT.store(running.len(), Ordering::Release);
    drop(running);
    finished.set();
}

/// Runs a hook without a deadline, inline; first waits for the participant's hook that
/// overran, if one still runs.
pub(crate) fn run_inline(
    participant: usize,
    hook: impl FnOnce() -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    if RUNNING_COUNT.load(Ordering::Acquire) != 0 {
        let earlier = RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(p, _)| *p == participant)
            .map(|(_, finished)| Arc::clone(finished));
        if let Some(earlier) = earlier {
            earlier.wait();
        }
    }
    catch_panic(hook)
}

/// Runs `hook` on a thread of its own, after the participant's earlier hook if that one
/// still runs, and waits for it at most `deadline`.
pub(crate) fn run_within(
    participant: usize,
    name: &str,
    phase: Phase,
    deadline: Duration,
    hook: impl FnOnce() -> Result<(), BoxError> + Send + 'static,
) -> Result<(), BoxError> {
    let began = Instant::now();
    let finished = Arc::new(Finished::default());
    let earlier = enqueue(participant, Arc::clone(&finished));
    let (result_tx, result_rx) = mpsc::sync_channel(1);
    let (started_tx, started_rx) = mpsc::sync_channel(1);
    let late_name = name.to_owned();
    let mine = Arc::clone(&finished);
    let spawned = std::thread::Builder::new()
        .name("crac-hook".into())
        .spawn(move || {
            ON_HOOK_THREAD.set(true);
            if let Some(earlier) = earlier {
                earlier.wait();
            }
            let _ = started_tx.send(());
            let result = catch_panic(hook);
            // Forgotten before the result is sent: the protocol's next hook for this
            // participant does not wait for a thread that is done.
            dequeue(participant, &finished);
            if result_tx.send(result).is_err() {
                tracing::warn!(
                    participant = late_name,
                    %phase,
                    ms = began.elapsed().as_millis() as u64,
                    "hook finished after its deadline; its result is ignored"
                );
            }
        });
    let thread = match spawned {
        Ok(thread) => thread,
        Err(error) => {
            // Never started: nothing to wait for.
            dequeue(participant, &mine);
            return Err(
                format!("could not start a thread to run it under its deadline: {error}").into(),
            );
        }
    };
    match result_rx.recv_timeout(deadline) {
        Ok(result) => {
            // It returned: the thread ends at once. Joined so that no thread of a
            // hook is still alive when the image is taken.
            let _ = thread.join();
            result
        }
        Err(RecvTimeoutError::Timeout) => Err(Box::new(DeadlineExceeded {
            deadline,
            ran: began.elapsed(),
            started: started_rx.try_recv().is_ok(),
        })),
        Err(RecvTimeoutError::Disconnected) => {
            unreachable!("the hook thread catches panics and always sends its result")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_the_shared_grammar() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse("0ms"),
            Err("a deadline must be longer than zero".to_string())
        );
    }

    #[test]
    fn shows_durations_in_the_same_syntax() {
        assert_eq!(Show(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Show(Duration::from_secs(2)).to_string(), "2s");
        assert_eq!(Show(Duration::from_secs(120)).to_string(), "2m");
        assert_eq!(Show(Duration::from_micros(1500)).to_string(), "1.5ms");
    }
}
