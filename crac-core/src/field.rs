//! What `#[derive(Checkpointable)]` needs of a field, one trait per field attribute.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::error::{BoxError, Failure, Failures, Phase, catch_panic};
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;

mod restore_env;

#[cfg(target_os = "linux")]
pub use crate::resources::reopen::Reopen;
#[doc(hidden)]
#[cfg(target_os = "linux")]
pub use crate::resources::reopen::{ReopenOptions, as_reopen, detach_file, reopen_file};
pub use restore_env::RestoreEnv;
#[doc(hidden)]
pub use restore_env::apply_restore_env;

/// A field marked `#[crac(resource)]`: a [`Resource`] (`dyn Resource` included), directly
/// or inside `Arc`, `Option`, `Mutex` or `RwLock`, e.g. `Arc<dyn Resource>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used with `#[crac(resource)]`",
    label = "not a `crac::Resource`",
    note = "the field must implement `crac::Resource` (derive `Checkpointable`), \
            possibly inside `Arc`, `Option`, `Mutex` or `RwLock`"
)]
pub trait Delegate {
    /// Forwards `before_checkpoint`.
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError>;
    /// Forwards `after_restore`.
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError>;
}

impl<R: Resource + ?Sized> Delegate for R {
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        Resource::before_checkpoint(self, event)
    }
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        Resource::after_restore(self, event)
    }
}

impl<T: Delegate + ?Sized> Delegate for Arc<T> {
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        (**self).before_checkpoint(event)
    }
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        (**self).after_restore(event)
    }
}

impl<T: Delegate> Delegate for Option<T> {
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        self.as_ref()
            .map_or(Ok(()), |inner| inner.before_checkpoint(event))
    }
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        self.as_ref()
            .map_or(Ok(()), |inner| inner.after_restore(event))
    }
}

impl<T: Delegate + ?Sized> Delegate for Mutex<T> {
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .before_checkpoint(event)
    }
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .after_restore(event)
    }
}

impl<T: Delegate + ?Sized> Delegate for RwLock<T> {
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError> {
        self.read()
            .unwrap_or_else(PoisonError::into_inner)
            .before_checkpoint(event)
    }
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError> {
        self.read()
            .unwrap_or_else(PoisonError::into_inner)
            .after_restore(event)
    }
}

/// A field marked `#[crac(reseed)]`: a random generator re-seeded from OS entropy after
/// restore, so copies restored from one image do not produce the same numbers.
///
/// With the `rand` feature, implemented for `Mutex<R>` and `RwLock<R>` where `R` is any
/// `rand_core` 0.10 `SeedableRng` (rand 0.10's `StdRng`, `SmallRng`, ...).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used with `#[crac(reseed)]`",
    label = "not a reseedable random generator",
    note = "use `Mutex<R>` or `RwLock<R>` where `R: rand_core::SeedableRng` (crac feature `rand`), \
            or implement `crac::field::Reseed`"
)]
pub trait Reseed {
    /// Replaces the generator's state with fresh OS entropy.
    fn reseed(&self) -> Result<(), BoxError>;
}

/// A field marked `#[crac(secret)]`: wiped before checkpoint so the value never reaches
/// the image, and with `reload = ...` replaced after restore. The copies the program
/// freed are zeroed by [`ScrubbingAlloc`](crate::ScrubbingAlloc), which the checkpoint
/// requires as the global allocator.
///
/// With the `zeroize` feature, implemented for `Mutex<Z>` and `RwLock<Z>` where
/// `Z: zeroize::Zeroize` (`String`, `Vec<u8>`, arrays, `Option<Z>`, ...).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used with `#[crac(secret)]`",
    label = "not a wipeable secret",
    note = "use `Mutex<Z>` or `RwLock<Z>` where `Z: zeroize::Zeroize` (crac feature `zeroize`), \
            or implement `crac::field::Secret`"
)]
pub trait Secret {
    /// The value `reload` produces.
    type Value;
    /// Overwrites the secret in memory.
    fn wipe(&self);
    /// Installs a freshly obtained value.
    fn replace(&self, value: Self::Value);
}

/// What `#[crac(secret)]` does before a checkpoint once the field is wiped: refuses the
/// checkpoint if freed copies of the secret could still be in the heap (the global
/// allocator is not a [`ScrubbingAlloc`](crate::ScrubbingAlloc)).
#[doc(hidden)]
pub fn secret_wiped() -> Result<(), BoxError> {
    crate::scrub::require_scrubbing("this #[crac(secret)] field")?;
    Ok(())
}

#[cfg(feature = "rand")]
mod rand_impls {
    use super::*;
    use rand_core::SeedableRng;

    fn from_os_entropy<R: SeedableRng>() -> Result<R, BoxError> {
        let mut seed = R::Seed::default();
        getrandom::fill(seed.as_mut()).map_err(|e| format!("reading OS entropy: {e}"))?;
        Ok(R::from_seed(seed))
    }

    impl<R: SeedableRng + Send> Reseed for Mutex<R> {
        fn reseed(&self) -> Result<(), BoxError> {
            let fresh = from_os_entropy()?;
            *self.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
            Ok(())
        }
    }

    impl<R: SeedableRng + Send + Sync> Reseed for RwLock<R> {
        fn reseed(&self) -> Result<(), BoxError> {
            let fresh = from_os_entropy()?;
            *self.write().unwrap_or_else(PoisonError::into_inner) = fresh;
            Ok(())
        }
    }
}

#[cfg(feature = "zeroize")]
mod zeroize_impls {
    use super::*;
    use zeroize::Zeroize;

    impl<Z: Zeroize> Secret for Mutex<Z> {
        type Value = Z;
        fn wipe(&self) {
            self.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .zeroize();
        }
        fn replace(&self, value: Z) {
            let mut guard = self.lock().unwrap_or_else(PoisonError::into_inner);
            guard.zeroize();
            *guard = value;
        }
    }

    impl<Z: Zeroize> Secret for RwLock<Z> {
        type Value = Z;
        fn wipe(&self) {
            self.write()
                .unwrap_or_else(PoisonError::into_inner)
                .zeroize();
        }
        fn replace(&self, value: Z) {
            let mut guard = self.write().unwrap_or_else(PoisonError::into_inner);
            guard.zeroize();
            *guard = value;
        }
    }
}

/// The steps of one derived hook: each runs even if an earlier one failed, and the
/// failures come back as one error naming `Type.field`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Steps<'a> {
    owner: Cow<'a, str>,
    phase: Phase,
    failures: Failures,
}

impl<'a> Steps<'a> {
    /// Starts collecting for the resource `owner`.
    pub fn new(owner: Cow<'a, str>, phase: Phase) -> Self {
        Steps {
            owner,
            phase,
            failures: Failures::default(),
        }
    }

    /// Runs one step; `part` is the field name, or empty for the type's own hook.
    pub fn run(&mut self, part: &str, step: impl FnOnce() -> Result<(), BoxError>) {
        if let Err(error) = catch_panic(step) {
            let resource = if part.is_empty() {
                self.owner.to_string()
            } else {
                format!("{}.{part}", self.owner)
            };
            self.failures.0.push(Failure {
                resource,
                phase: self.phase,
                error,
            });
        }
    }

    /// `Ok`, the single error of the type's own hook, or all failures.
    pub fn finish(mut self) -> Result<(), BoxError> {
        if self.failures.0.len() == 1 && self.failures.0[0].resource == self.owner {
            return Err(self.failures.0.pop().expect("one failure").error);
        }
        self.failures.into_result()
    }
}
