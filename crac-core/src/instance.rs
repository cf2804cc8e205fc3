//! Instance identity: copies restored from one image share every byte of memory,
//! including anything that was meant to tell them apart. The instance id is drawn from
//! OS entropy when first asked for and again in every restored copy, before any
//! `after_restore` hook runs.

use std::sync::{Mutex, PoisonError};

static CURRENT: Mutex<Option<u128>> = Mutex::new(None);

/// This process's instance id: random, and different in every copy restored from an
/// image (also when several copies are restored from the same image).
pub fn instance_id() -> u128 {
    current(false)
}

/// The current id, drawn anew when `renew` (a restore) or when none exists yet.
pub(crate) fn current(renew: bool) -> u128 {
    let mut id = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    match *id {
        Some(current) if !renew => current,
        _ => *id.insert(fresh()),
    }
}

#[cfg(unix)]
fn fresh() -> u128 {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u128::from_ne_bytes(bytes),
        Err(_) => fallback(),
    }
}

#[cfg(not(unix))]
fn fresh() -> u128 {
    fallback()
}

/// Without an entropy source: time and process id, distinct enough between copies
/// restored at different moments.
fn fallback() -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    nanos ^ ((std::process::id() as u128) << 96)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_until_renewed() {
        let first = instance_id();
        assert_eq!(instance_id(), first);
        let renewed = current(true);
        assert_ne!(renewed, first);
        assert_eq!(instance_id(), renewed);
    }
}
