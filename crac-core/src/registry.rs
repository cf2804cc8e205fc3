//! The registry: weak references to registered participants, with their rank and order.
//!
//! Registration is the only cost a resource pays until a checkpoint happens, so it is a
//! push under a short lock. Resources the user dropped are pruned lazily: when the list
//! has doubled since the last prune, and whenever a checkpoint reads it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::participant::{Participant, RankedParticipant, WeakParticipant};

const FIRST_PRUNE: usize = 64;

pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

struct Inner {
    entries: Vec<Entry>,
    next_seq: u64,
    prune_at: usize,
}

struct Entry {
    participant: WeakParticipant,
    rank: u32,
    seq: u64,
    location: &'static Location<'static>,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                next_seq: 0,
                prune_at: FIRST_PRUNE,
            }),
        }
    }

    pub(crate) fn register(
        &self,
        participant: WeakParticipant,
        rank: u32,
        location: &'static Location<'static>,
    ) {
        let mut inner = self.lock();
        if inner.entries.len() >= inner.prune_at {
            inner.prune();
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.entries.push(Entry {
            participant,
            rank,
            seq,
            location,
        });
    }

    /// The participants still alive, in registration order. One registered more than
    /// once counts once, at its first registration (dropping the duplicates here keeps
    /// registration itself a plain push).
    pub(crate) fn live(&self) -> Vec<RankedParticipant> {
        let mut inner = self.lock();
        let mut live = Vec::with_capacity(inner.entries.len());
        // Strong references released only after the lock: if one is the last, the
        // user's `Drop` runs, and it may register.
        let mut duplicates: Vec<Participant> = Vec::new();
        let mut seen: HashSet<usize, BuildHasherDefault<AddressHasher>> =
            HashSet::with_capacity_and_hasher(inner.entries.len(), Default::default());
        inner
            .entries
            .retain(|entry| match entry.participant.upgrade() {
                Some(participant) if !seen.insert(participant.address()) => {
                    duplicates.push(participant);
                    false
                }
                Some(participant) => {
                    live.push(RankedParticipant::registered(
                        participant,
                        entry.rank,
                        entry.seq,
                        entry.location,
                    ));
                    true
                }
                None => false,
            });
        drop(inner);
        drop(duplicates);
        live
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Hooks never run under this lock, so poisoning can only come from an allocation
        // failure; the list itself is always consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hashes addresses: already unique, they only need spreading.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, address: usize) {
        self.0 = (address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Inner {
    fn prune(&mut self) {
        self.entries.retain(|entry| !entry.participant.is_dropped());
        self.prune_at = (self.entries.len() * 2).max(FIRST_PRUNE);
    }
}
