//! Property: over random dependency graphs registered in random order, the checkpoint
//! order respects every edge, equal ranks go newest first, and restore is the exact
//! reverse of checkpoint.

mod common;

use common::{Behaviour, Log, Recorder, serial};
use proptest::prelude::*;

/// A random DAG: node `i` may depend only on nodes `< i`, then registration shuffles them.
fn graph() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<usize>)> {
    (1usize..24).prop_flat_map(|n| {
        let deps = (0..n)
            .map(|i| {
                proptest::collection::vec(0..i.max(1), 0..=i.min(3))
                    .prop_map(move |d| if i == 0 { vec![] } else { d })
            })
            .collect::<Vec<_>>();
        (deps, Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn order_respects_every_edge((deps, registration) in graph()) {
        let _serial = serial();
        crac::use_engine("simulate").unwrap();
        let mut ranks = vec![0u32; deps.len()];
        for i in 0..deps.len() {
            ranks[i] = crac::rank_after(&deps[i].iter().map(|&d| ranks[d]).collect::<Vec<_>>());
        }
        let log = Log::default();
        let nodes: Vec<_> = (0..deps.len())
            .map(|i| Recorder::with(&i.to_string(), ranks[i], Behaviour::Ok, &log))
            .collect();
        for &i in &registration {
            crac::register(&nodes[i]);
        }
        crac::checkpoint_restore().unwrap();

        let calls = log.take();
        let (checkpoint, restore) = calls.split_at(deps.len());
        let pos = |phase: &[String], node: usize| {
            phase.iter().position(|c| c.split(':').next() == Some(&node.to_string())).unwrap()
        };
        for (a, a_deps) in deps.iter().enumerate() {
            for &b in a_deps {
                prop_assert!(pos(checkpoint, a) < pos(checkpoint, b), "{a} uses {b}: {calls:?}");
                prop_assert!(pos(restore, b) < pos(restore, a), "{a} uses {b}: {calls:?}");
            }
        }
        for a in 0..deps.len() {
            for b in 0..deps.len() {
                let registered_later = registration.iter().position(|&x| x == a) > registration.iter().position(|&x| x == b);
                if ranks[a] == ranks[b] && registered_later {
                    prop_assert!(pos(checkpoint, a) < pos(checkpoint, b), "equal rank, newest first");
                }
            }
        }
        let names = |phase: &[String]| phase.iter().map(|c| c.split(':').next().unwrap().to_string()).collect::<Vec<_>>();
        let mut reversed = names(checkpoint);
        reversed.reverse();
        prop_assert_eq!(reversed, names(restore));
    }
}
