//! [`Gate`]: the quiesce point of KIP-921's producer. In-flight operations hold a
//! [`Pass`]; before a checkpoint the gate closes, waits for the passes out to come back
//! and parks new operations until the process runs again.
//!
//! The hot path is one atomic add when entering and one atomic subtract when leaving:
//! the count and the closed flag share a word, so an uncontended pass costs a few
//! nanoseconds (`cargo bench --bench coordination`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;

/// Set in the state word while the gate is closed; the low bits count passes out.
const CLOSED: u64 = 1 << 63;

/// A gate in-flight operations pass through; register it (or make it a
/// `#[crac(resource)]` field) and it drains them before every checkpoint.
///
/// ```
/// use std::sync::Arc;
///
/// let sends = Arc::new(crac::Gate::new("producer sends"));
/// crac::register(&sends);
/// {
///     let _pass = sends.enter(); // parks here while a checkpoint is under way
///     // ... hand a batch to the broker and wait for its acknowledgement ...
/// } // the checkpoint waits for this
/// ```
#[derive(Debug)]
pub struct Gate {
    name: Cow<'static, str>,
    state: AtomicU64,
    drain_deadline: Duration,
    /// Guards nothing but the waits: the closer waits for the count to reach zero,
    /// parked operations wait for the gate to open.
    lock: Mutex<()>,
    changed: Condvar,
    #[cfg(feature = "tokio")]
    opened: tokio::sync::Notify,
}

/// One operation in flight through a [`Gate`]; dropping it lets the operation out.
#[must_use = "the operation counts as in flight only while the pass is held"]
#[derive(Debug)]
pub struct Pass<'a> {
    gate: &'a Gate,
}

impl Gate {
    /// An open gate; `name` appears in plans and errors. Draining waits at most 30 s.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Gate {
        Gate {
            name: name.into(),
            state: AtomicU64::new(0),
            drain_deadline: Duration::from_secs(30),
            lock: Mutex::new(()),
            changed: Condvar::new(),
            #[cfg(feature = "tokio")]
            opened: tokio::sync::Notify::new(),
        }
    }

    /// How long `before_checkpoint` waits for passes out before refusing the checkpoint.
    pub fn with_drain_deadline(mut self, deadline: Duration) -> Gate {
        self.drain_deadline = deadline;
        self
    }

    /// Enters, waiting (blocking the thread) while the gate is closed.
    pub fn enter(&self) -> Pass<'_> {
        loop {
            if let Some(pass) = self.try_enter() {
                return pass;
            }
            let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            let _open = self
                .changed
                .wait_while(guard, |_| self.is_closed())
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Enters, waiting (without blocking a thread) while the gate is closed.
    #[cfg(feature = "tokio")]
    pub async fn enter_async(&self) -> Pass<'_> {
        loop {
            let opened = self.opened.notified();
            if let Some(pass) = self.try_enter() {
                return pass;
            }
            opened.await;
        }
    }

    /// Enters if the gate is open.
    pub fn try_enter(&self) -> Option<Pass<'_>> {
        if self.state.fetch_add(1, Ordering::Acquire) & CLOSED == 0 {
            return Some(Pass { gate: self });
        }
        self.leave();
        None
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> u64 {
        self.state.load(Ordering::Acquire) & !CLOSED
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    fn leave(&self) {
        let before = self.state.fetch_sub(1, Ordering::Release);
        if before == CLOSED | 1 {
            // the last pass out of a closed gate: the closer may be waiting
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.changed.notify_all();
        }
    }

    fn open(&self) {
        self.state.fetch_and(!CLOSED, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
        #[cfg(feature = "tokio")]
        self.opened.notify_waiters();
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

impl Resource for Gate {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        #[cfg(feature = "tokio")]
        crate::async_hooks::refuse_on_runtime_thread()?;
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        let deadline = Instant::now() + self.drain_deadline;
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while self.in_flight() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} operation(s) still in flight through `{}` after {:?}",
                    self.in_flight(),
                    self.name,
                    self.drain_deadline
                )
                .into());
            }
            guard = self
                .changed
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        self.open();
        Ok(())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }

    /// Above the clients the operations use (rank 0): the gate drains first, while
    /// they are still connected, and opens after they are back.
    fn rank(&self) -> u32 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            generation: 1,
            engine: "test",
            hook_deadline: None,
            leaves_running: false,
        }
    }

    fn restore() -> Restore {
        Restore {
            outcome: crate::event::Outcome::Restored,
            generation: 1,
            engine: "test",
            checkpointed_for: None,
            instance_id: 0,
            args: Vec::new(),
            env: Vec::new(),
            monotonic_time_kept: None,
            hook_deadline: None,
        }
    }

    #[test]
    fn closing_waits_for_passes_out_and_parks_new_ones_until_restore() {
        let gate = Arc::new(Gate::new("sends"));
        let pass = gate.enter();
        let closer = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.before_checkpoint(&checkpoint()))
        };
        while !gate.is_closed() {
            std::thread::yield_now();
        }
        assert!(gate.try_enter().is_none(), "closed to new operations");
        std::thread::sleep(Duration::from_millis(20));
        assert!(!closer.is_finished(), "waits for the pass out");
        drop(pass);
        closer.join().unwrap().unwrap();
        let parked = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || drop(gate.enter()))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!parked.is_finished(), "parked while closed");
        gate.after_restore(&restore()).unwrap();
        parked.join().unwrap();
        assert_eq!(gate.in_flight(), 0);
    }

    #[test]
    fn a_pass_held_past_the_deadline_refuses_the_checkpoint_by_name() {
        let gate = Gate::new("sends").with_drain_deadline(Duration::from_millis(10));
        let _pass = gate.enter();
        let error = gate.before_checkpoint(&checkpoint()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "1 operation(s) still in flight through `sends` after 10ms"
        );
        gate.after_restore(&restore()).unwrap();
        assert!(gate.try_enter().is_some(), "rolled back: open again");
    }
}
