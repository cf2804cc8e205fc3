//! A long lineage: one process checkpointed and restored again and again keeps its
//! state, and what it holds (fds, threads, resident memory) stays flat.

use crate::harness::{Run, checksum_of, killed_by_sigkill, lines, restore, setup, tests, text};

tests![
    a_hundred_checkpoint_restore_cycles_keep_state_and_resources_flat,
    thirty_cycles_with_a_mapped_heap_keep_disk_use_bounded,
];

const CYCLES: u64 = 100;
/// Resident memory may wander by allocator noise, not grow per cycle.
const RSS_SLACK_KB: u64 = 4096;

fn a_hundred_checkpoint_restore_cycles_keep_state_and_resources_flat() {
    let (_, image) = setup("soak");
    cycles(Run::new("soak", &image), &image, CYCLES, |_| {});
}

/// With the heap in segments, each image lists every segment its heap maps and the
/// store keeps no other: what it holds on disk does not grow with the cycles (a third of
/// them: `mapped_heap::` takes a hundred left-running checkpoints).
fn thirty_cycles_with_a_mapped_heap_keep_disk_use_bounded() {
    let (_, image) = setup("soak-mapped");
    let store = crate::mapped_heap::store(&image);
    let mut first: Option<u64> = None;
    cycles(
        Run::new("soak", &image).env("CRAC_MAPPED_HEAP", "on"),
        &image,
        30,
        |generation| {
            let bytes = disk_bytes(&store);
            let first = *first.get_or_insert(bytes);
            assert!(bytes > 0, "the heap is in segments");
            assert!(
                bytes <= first + (64 << 20),
                "cycle {generation}: the store holds {bytes} bytes, {first} after the first"
            );
        },
    );
}

/// The bytes of disk the files in `dir` take.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `first`, then restores its image `count` times, each copy checkpointing again;
/// `each` looks at what the cycle left.
fn cycles(first: Run, image: &std::path::Path, count: u64, mut each: impl FnMut(u64)) {
    let first = first.output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let checksum = checksum_of(lines(&text(&first.stdout))[0]).to_string();
    let mut baseline: Option<(u64, u64, u64)> = None;
    for generation in 1..=count {
        let out = restore(image);
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
        each(generation);
    }
}
