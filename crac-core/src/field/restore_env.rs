//! `#[crac(restore_env = "NAME")]`: a field set from a variable the restorer passes
//! (`crac restore IMAGE --env NAME=VALUE`), parsed with `FromStr`.
//!
//! Read from [`Restore::env`], never from the process environment: a restored process
//! keeps the environment it had at checkpoint, so only the restorer's variables say
//! anything about the restore.

use std::fmt::Display;
use std::str::FromStr;
use std::sync::atomic::{self, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use crate::error::BoxError;
use crate::event::{Outcome, Restore};

/// A field marked `#[crac(restore_env = "NAME")]`: it can hold a value parsed from a
/// restore-time variable, and be set through `&self`.
///
/// Implemented for `Mutex<T>` and `RwLock<T>` where `T: FromStr` (with a `Display`
/// error: a value that does not parse is reported with it), and for the atomic integers
/// and `AtomicBool`.
///
/// ```
/// use std::net::SocketAddr;
/// use std::sync::{Mutex, atomic::AtomicU16};
///
/// #[derive(crac::Checkpointable)]
/// struct Server {
///     #[crac(restore_env = "PORT")]                  // `crac restore IMAGE --env PORT=8081`
///     port: AtomicU16,
///     #[crac(restore_env("UPSTREAM", required))]     // a restore without it fails
///     upstream: Mutex<SocketAddr>,
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used with `#[crac(restore_env)]`",
    label = "cannot be set from a restore-time variable through `&self`",
    note = "use `Mutex<T>` or `RwLock<T>` where `T: FromStr` (and `T::Err: Display`), \
            an atomic integer or `AtomicBool`, or implement `crac::field::RestoreEnv`"
)]
pub trait RestoreEnv {
    /// What the variable's value is parsed into.
    type Value: FromStr<Err: Display>;
    /// Replaces the field's value.
    fn store(&self, value: Self::Value);
}

impl<T: FromStr<Err: Display>> RestoreEnv for Mutex<T> {
    type Value = T;
    fn store(&self, value: T) {
        *self.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

impl<T: FromStr<Err: Display>> RestoreEnv for RwLock<T> {
    type Value = T;
    fn store(&self, value: T) {
        *self.write().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

macro_rules! atomics {
    ($($atomic:ident: $value:ty),* $(,)?) => {$(
        impl RestoreEnv for atomic::$atomic {
            type Value = $value;
            fn store(&self, value: $value) {
                atomic::$atomic::store(self, value, Ordering::SeqCst);
            }
        }
    )*};
}

atomics!(
    AtomicBool: bool,
    AtomicI8: i8,
    AtomicI16: i16,
    AtomicI32: i32,
    AtomicI64: i64,
    AtomicIsize: isize,
    AtomicU8: u8,
    AtomicU16: u16,
    AtomicU32: u32,
    AtomicU64: u64,
    AtomicUsize: usize,
);

/// The `after_restore` step of a `restore_env` field. Only a restore passes variables:
/// after a rollback or a left-running checkpoint the field keeps its value.
#[doc(hidden)]
pub fn apply_restore_env<F: RestoreEnv + ?Sized>(
    field: &F,
    name: &str,
    required: bool,
    event: &Restore,
) -> Result<(), BoxError> {
    if event.outcome != Outcome::Restored {
        return Ok(());
    }
    // The last one wins, as in an environment built from `--env` options in order.
    let Some((_, text)) = event.env.iter().rev().find(|(key, _)| key == name) else {
        return if required {
            Err(format!(
                "the restore-time variable {name} is required but the restorer did not pass \
                 it: restore with `crac restore IMAGE --env {name}=VALUE`"
            )
            .into())
        } else {
            Ok(())
        };
    };
    match text.parse::<F::Value>() {
        Ok(value) => {
            field.store(value);
            Ok(())
        }
        Err(error) => Err(format!(
            "the restore-time variable {name}={text:?} is not a valid `{}` ({error}): pass a \
             value that parses as one with `--env {name}=...`",
            std::any::type_name::<F::Value>()
        )
        .into()),
    }
}
