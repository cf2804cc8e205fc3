//! The ordering: compile-time ranks and the runtime sort that turns them into a plan.
//!
//! "A depends on B" means A uses B, so A must release its state before B at checkpoint
//! and re-create it after B at restore. Ranks encode that graph: `RANK(A) = 1 + max RANK`
//! over A's dependencies, computed by the compiler (a cycle is a const-evaluation cycle,
//! error E0391). At runtime ordering is then a sort: higher rank first at checkpoint,
//! and among equal ranks the most recently registered first (CRaC's rule). Restore runs
//! the exact reverse.

/// A participant's place in the dependency graph, known at compile time.
///
/// Implemented by `#[derive(Checkpointable)]`, `#[before_checkpoint]` and `#[on_restore]`;
/// naming a type in `depends_on(...)` requires it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a checkpoint dependency: it is not a crac participant",
    label = "not `Checkpointable` and not a crac hook function",
    note = "derive `crac::Checkpointable` for it, or mark the function with \
            `#[crac::before_checkpoint]` / `#[crac::on_restore]`"
)]
pub trait Ranked {
    /// 0 without dependencies, otherwise one more than the highest dependency.
    const RANK: u32;
}

/// `1 + max(deps)`, or 0 without dependencies; usable in `const` items.
pub const fn rank_after(deps: &[u32]) -> u32 {
    let mut rank = 0;
    let mut i = 0;
    while i < deps.len() {
        if deps[i] + 1 > rank {
            rank = deps[i] + 1;
        }
        i += 1;
    }
    rank
}

/// Registration order. Link-time hooks count as registered before anything registered
/// at runtime, among themselves in order of their full path (`inventory` gives no
/// stable order of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RegistrationOrder {
    Static(usize),
    Dynamic(u64),
}

/// Sorts participants into checkpoint order; restore order is its reverse.
///
/// `items` must come newest first (descending [`RegistrationOrder`]): a stable sort by rank then
/// keeps that order within each rank, in linear time when ranks are mostly equal.
pub(crate) fn sort_for_checkpoint<T>(
    items: &mut [T],
    key: impl Fn(&T) -> (u32, RegistrationOrder),
) {
    debug_assert!(
        items.is_sorted_by(|a, b| key(a).1 >= key(b).1),
        "newest first"
    );
    items.sort_by_key(|item| std::cmp::Reverse(key(item).0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_after_is_one_more_than_the_highest_dependency() {
        assert_eq!(rank_after(&[]), 0);
        assert_eq!(rank_after(&[0]), 1);
        assert_eq!(rank_after(&[3, 0, 7, 2]), 8);
    }

    #[test]
    fn checkpoint_order_is_rank_descending_then_newest_first() {
        let mut items = vec![
            (0, RegistrationOrder::Dynamic(2)),
            (0, RegistrationOrder::Dynamic(1)),
            (1, RegistrationOrder::Dynamic(0)),
            (0, RegistrationOrder::Static(5)),
            (1, RegistrationOrder::Static(0)),
        ];
        sort_for_checkpoint(&mut items, |&x| x);
        assert_eq!(
            items,
            [
                (1, RegistrationOrder::Dynamic(0)),
                (1, RegistrationOrder::Static(0)),
                (0, RegistrationOrder::Dynamic(2)),
                (0, RegistrationOrder::Dynamic(1)),
                (0, RegistrationOrder::Static(5)),
            ]
        );
    }
}
