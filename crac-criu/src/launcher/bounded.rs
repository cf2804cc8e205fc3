//! Checking an image within bounds: a hostile or broken image can make reading it slow
//! (a huge file, a hung network mount), and neither a restore's `--timeout` nor a stop
//! signal may have to wait for that. The check runs on a thread of its own while the
//! caller waits for it, the deadline or a stop signal, whichever comes first; a check cut
//! short is left to end with the process, which only reports and exits.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::launcher::supervise;

/// Signals that stop a check (a terminal's Ctrl-C, `docker stop`, a closed terminal).
const STOPS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Why a check was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// It had not finished when the time allowed, this long, was up.
    TimedOut(Duration),
    /// This stop signal came first.
    Signal(libc::c_int),
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::TimedOut(allowed) => write!(
                f,
                "its check had not finished when the {} s allowed were up",
                allowed.as_secs_f64()
            ),
            Cut::Signal(signal) => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map_or_else(|_| signal.to_string(), |s| s.as_str().to_string());
                write!(f, "signal {name} came while it was being checked")
            }
        }
    }
}

impl Cut {
    /// Said with `setting`, the option that allows more time, when it timed out.
    pub(crate) fn said(&self, setting: &str) -> String {
        match self {
            Cut::TimedOut(_) => format!("{self} ({setting} SECS allows more)"),
            Cut::Signal(_) => self.to_string(),
        }
    }
}

/// How long a check may take, and whether stop signals cut it short.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// When the time allowed is up.
    pub(crate) deadline: Instant,
    /// The time allowed in all, for the message.
    pub(crate) allowed: Duration,
    /// Whether the signals [`STOPS`] names end the wait (the caller must have started
    /// receiving them: `supervise::forward_to`).
    pub(crate) stop_on_signals: bool,
}

impl Bounds {
    /// `allowed` from now; stop signals end the wait if `stop_on_signals`.
    pub(crate) fn from_now(allowed: Duration, stop_on_signals: bool) -> Bounds {
        Bounds {
            deadline: Instant::now()
                .checked_add(allowed)
                .unwrap_or_else(far_future),
            allowed,
            stop_on_signals,
        }
    }

    /// Runs `check` on a thread of its own and returns what it returned, unless the
    /// deadline or a stop signal comes first.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Cut> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(check()));
        loop {
            if let Some(cut) = self.cut() {
                return Err(cut);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            // short waits: a signal is noticed within a few milliseconds
            match rx.recv_timeout(left.min(Duration::from_millis(5))) {
                Ok(done) => return Ok(done),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // the check panicked; its message is already printed
                    panic!("the image check panicked")
                }
            }
        }
    }

    /// Why to stop waiting now, if there is a reason.
    fn cut(&self) -> Option<Cut> {
        if self.stop_on_signals
            && let Some(signal) = STOPS.into_iter().find(|&s| supervise::was_received(s))
        {
            return Some(Cut::Signal(signal));
        }
        (Instant::now() >= self.deadline).then_some(Cut::TimedOut(self.allowed))
    }
}

/// An instant no deadline reaches (a timeout of about 10^19 s).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_ends_or_is_cut_at_the_deadline() {
        let bounds = Bounds::from_now(Duration::from_millis(200), false);
        assert_eq!(bounds.run(|| 7), Ok(7));
        let started = Instant::now();
        let cut = bounds.run(|| std::thread::sleep(Duration::from_secs(60)));
        assert_eq!(cut, Err(Cut::TimedOut(Duration::from_millis(200))));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            cut.unwrap_err().to_string(),
            "its check had not finished when the 0.2 s allowed were up"
        );
        assert_eq!(
            Cut::Signal(libc::SIGTERM).to_string(),
            "signal SIGTERM came while it was being checked"
        );
        let never = Bounds::from_now(Duration::MAX, false);
        assert_eq!(never.run(|| 8), Ok(8));
    }
}
