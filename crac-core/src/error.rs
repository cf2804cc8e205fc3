//! Errors: what failed, in which phase, for which resource — all of them, with causes.

use std::fmt;

use crate::event::Restore;

/// The error a hook returns: any error, boxed, so that hooks can use `?` freely.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The hook a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `before_checkpoint`.
    BeforeCheckpoint,
    /// `after_restore` (after a restore, a left-running checkpoint or on rollback).
    AfterRestore,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::BeforeCheckpoint => "before_checkpoint",
            Phase::AfterRestore => "after_restore",
        })
    }
}

/// One participant's failure.
#[derive(Debug)]
pub struct Failure {
    /// The participant's [`name`](crate::Resource::name).
    pub resource: String,
    /// The hook that failed.
    pub phase: Phase,
    /// What the hook returned (a panic becomes an error saying so).
    pub error: BoxError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` failed in {}: {}",
            self.resource, self.phase, self.error
        )?;
        let mut cause = self.error.source();
        while let Some(err) = cause {
            write!(f, "\n  caused by: {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// Every failure of one checkpoint/restore pass, in the order they happened.
///
/// Also the error a [`Context`](crate::Context) or a derived resource returns when some
/// of its members fail, so nested failures keep every name.
#[derive(Debug, Default)]
pub struct Failures(pub Vec<Failure>);

impl Failures {
    /// True when nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing failed, otherwise these failures as one error.
    pub fn into_result(self) -> Result<(), BoxError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Box::new(self))
        }
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} failure{}:", if n == 1 { "" } else { "s" })?;
        // Nested contexts fail with a `Failures` of their own: indenting every
        // continuation line keeps each level visibly inside its parent.
        for failure in &self.0 {
            let text = failure.to_string();
            let mut lines = text.lines();
            write!(f, "\n  - {}", lines.next().unwrap_or(""))?;
            for line in lines {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

/// Why [`checkpoint_restore`](crate::checkpoint_restore) did not succeed.
///
/// `Debug` prints the message, as `Display` does, so that `fn main() -> Result<(),
/// crac::Error>` reports what failed rather than a structure dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `before_checkpoint` hook refused: no image was taken, every participant was
    /// rolled back, and the process continues. `failures` also lists rollback failures.
    #[error("checkpoint refused, no image taken, resources rolled back; {failures}")]
    CheckpointRefused {
        /// What failed, checkpoint hooks first, then any rollback failure.
        failures: Failures,
    },
    /// The engine could not take the image: every participant was rolled back and the
    /// process continues.
    #[error("checkpoint failed in engine `{engine}`, resources rolled back: {reason}{}", rollback_note(.rollback))]
    EngineFailed {
        /// The engine's name.
        engine: &'static str,
        /// The engine's reason (a panic of the engine becomes one too).
        reason: BoxError,
        /// Failures while rolling back, if any.
        rollback: Failures,
    },
    /// The image was taken (and restored, or left running) but some `after_restore`
    /// hooks failed. The process runs; the failed resources may need attention.
    #[error("after restore, {failures}")]
    RestoreFailed {
        /// The failed `after_restore` hooks.
        failures: Failures,
        /// The event the hooks received.
        restore: Box<Restore>,
    },
    /// No engine is compiled in or selected.
    #[error(
        "no checkpoint engine is configured: build with crac's `criu` feature on Linux, or set \
         CRAC_ENGINE=simulate to run the protocol without taking an image"
    )]
    NoEngine,
    /// `CRAC_ENGINE` (or [`use_engine`](crate::use_engine)) names an engine that is not compiled in.
    #[error("unknown checkpoint engine `{requested}` (from {origin}); available: {}", available.join(", "))]
    UnknownEngine {
        /// The name asked for.
        requested: String,
        /// Where it was asked for (`CRAC_ENGINE` or `crac::use_engine`).
        origin: &'static str,
        /// The engines compiled in.
        available: Vec<&'static str>,
    },
    /// The engine cannot work here (missing tool, privilege, platform); nothing was run.
    #[error("checkpoint engine `{engine}` is unavailable: {reason}")]
    Unsupported {
        /// The engine's name.
        engine: &'static str,
        /// Why, and what to do about it.
        reason: BoxError,
    },
    /// A setting read from the environment is malformed; no hook ran.
    #[error("checkpoint refused before any hook ran: {variable}={value:?} is invalid: {reason}")]
    InvalidSetting {
        /// The variable, e.g. `CRAC_HOOK_DEADLINE`.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it, and what is expected.
        reason: String,
    },
    /// `checkpoint_restore` was called from inside a checkpoint hook.
    #[error(
        "checkpoint_restore() called from inside a checkpoint/restore hook; request the \
         checkpoint after the hook returns"
    )]
    Reentrant,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn rollback_note(rollback: &Failures) -> String {
    if rollback.is_empty() {
        String::new()
    } else {
        format!("; rollback: {rollback}")
    }
}

impl Error {
    /// The failed participants this error names (empty for configuration errors).
    pub fn failures(&self) -> &[Failure] {
        match self {
            Error::CheckpointRefused { failures } | Error::RestoreFailed { failures, .. } => {
                &failures.0
            }
            Error::EngineFailed { rollback, .. } => &rollback.0,
            _ => &[],
        }
    }
}

/// Runs one hook (or the engine); a panic becomes its error instead of unwinding
/// through the protocol and leaving other resources un-notified or un-rolled-back.
pub(crate) fn catch_panic<T>(hook: impl FnOnce() -> Result<T, BoxError>) -> Result<T, BoxError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            Err(format!("panicked: {message}").into())
        }
    }
}
