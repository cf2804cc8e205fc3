//! The registry: weak references to registered resources, with their rank and order.
//!
//! Registration is the only cost a resource pays until a checkpoint happens, so it is a
//! push under a short lock. Resources the user dropped are pruned lazily: when the list
//! has doubled since the last prune, and whenever a checkpoint reads it.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::ordering::Seq;
use crate::participant::Ranked;
use crate::resource::Resource;

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
    resource: Weak<dyn Resource>,
    rank: u32,
    seq: u64,
}

impl Registry {
    pub const fn new() -> Self {
        Registry {
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                next_seq: 0,
                prune_at: FIRST_PRUNE,
            }),
        }
    }

    pub fn register(&self, resource: Weak<dyn Resource>, rank: u32) {
        let mut inner = self.lock();
        if inner.entries.len() >= inner.prune_at {
            inner.prune();
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.entries.push(Entry {
            resource,
            rank,
            seq,
        });
    }

    /// The resources still alive, in registration order. A resource registered more than
    /// once counts once, at its first registration (dropping the duplicates here keeps
    /// registration itself a plain push).
    pub fn live(&self) -> Vec<Ranked> {
        let mut inner = self.lock();
        let mut live = Vec::with_capacity(inner.entries.len());
        let mut seen: HashSet<usize, BuildHasherDefault<AddressHasher>> =
            HashSet::with_capacity_and_hasher(inner.entries.len(), Default::default());
        inner
            .entries
            .retain(|entry| match entry.resource.upgrade() {
                Some(resource) if !seen.insert(Arc::as_ptr(&resource) as *const () as usize) => {
                    false
                }
                Some(resource) => {
                    live.push(Ranked::resource(
                        resource,
                        entry.rank,
                        Seq::Dynamic(entry.seq),
                    ));
                    true
                }
                None => false,
            });
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
        self.entries
            .retain(|entry| entry.resource.strong_count() > 0);
        self.prune_at = (self.entries.len() * 2).max(FIRST_PRUNE);
    }
}
