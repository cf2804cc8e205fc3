//! A long lineage: one process checkpointed and restored again and again keeps its
//! state, and what it holds (fds, threads, resident memory) stays flat.

use crate::harness::{Run, checksum_of, killed_by_sigkill, lines, restore, setup, tests, text};

tests![a_hundred_checkpoint_restore_cycles_keep_state_and_resources_flat];

const CYCLES: u64 = 100;
/// Resident memory may wander by allocator noise, not grow per cycle.
const RSS_SLACK_KB: u64 = 4096;

fn a_hundred_checkpoint_restore_cycles_keep_state_and_resources_flat() {
    let (_, image) = setup("soak");
    let first = Run::new("soak", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let checksum = checksum_of(lines(&text(&first.stdout))[0]).to_string();
    let mut baseline: Option<(u64, u64, u64)> = None;
    for generation in 1..=CYCLES {
        let out = restore(&image);
        // each copy checkpoints again, and the dump stops it
        assert_eq!(
            out.status.code(),
            Some(128 + 9),
            "cycle {generation}: {out:?}"
        );
        let stdout = text(&out.stdout);
        let line = lines(&stdout)
            .into_iter()
            .find(|l| l.starts_with("soak generation "))
            .unwrap_or_else(|| panic!("cycle {generation}: {out:?}"))
            .to_string();
        let field = |name: &str| -> u64 {
            let words: Vec<&str> = line.split(' ').collect();
            let at = words.iter().position(|w| *w == name).unwrap();
            words[at + 1].parse().unwrap()
        };
        assert_eq!(field("generation"), generation, "{line}");
        assert_eq!(checksum_of(&line), checksum, "the state survives: {line}");
        let now = (field("fds"), field("threads"), field("rss_kb"));
        let (fds, threads, rss) = *baseline.get_or_insert(now);
        assert_eq!(now.0, fds, "fds stay flat (cycle {generation}): {line}");
        assert_eq!(
            now.1, threads,
            "threads stay flat (cycle {generation}): {line}"
        );
        assert!(
            now.2 <= rss + RSS_SLACK_KB,
            "resident memory stays flat (cycle {generation}, first {rss} kB): {line}"
        );
    }
}
