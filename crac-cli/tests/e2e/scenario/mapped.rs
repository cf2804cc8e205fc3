//! `mapped`: a warmed state in `crac::MappedHeap` (this executable's global allocator,
//! on when the test sets `CRAC_MAPPED_HEAP=on`): `CRAC_E2E_STATE_MB` of a known
//! pattern, and `CRAC_E2E_WRITERS` threads that keep allocating and writing while the
//! checkpoint seals the heap, each reading back every round it wrote.
//!
//! With `CRAC_E2E_CYCLES=N` (and `CRAC_LEAVE_RUNNING=1`) it first takes N left-running
//! checkpoints, as `crac run --every` does, allocating and freeing between them, and
//! prints what the store holds on disk after each. With `CRAC_E2E_BEFORE` set it waits
//! for that file before checkpointing; a refused checkpoint is printed with a check of
//! the state, and tried again once `CRAC_E2E_GO` exists.
//!
//! After the restore it does what `CRAC_E2E_ACTION` (given at restore with `--env`) says:
//! - `verify` (the default): checks the state and the writers, prints, exits 7;
//! - `overwrite`: writes its whole state anew, checks it, prints, waits for the file
//!   `CRAC_E2E_GO`, checks again, prints, exits 7;
//! - `wait`: checks, prints, waits for `CRAC_E2E_GO`, checks again, prints, exits 7;
//! - `grow`: allocates `CRAC_E2E_GROW_MB` more of another pattern, checks both, and
//!   checkpoints again (to the `CRAC_CHECKPOINT_TO` the restore gave); that copy's own
//!   restore checks both and exits 7.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::say;

/// The value at `i` of the pattern `seed`.
fn pattern(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A block of the pattern `seed`, and a check of it.
struct Block {
    seed: u64,
    values: Vec<u64>,
}

impl Block {
    fn new(seed: u64, mb: usize) -> Block {
        let len = mb << 17;
        Block {
            seed,
            values: (0..len as u64).map(|i| pattern(seed, i)).collect(),
        }
    }

    fn overwrite(&mut self, seed: u64) {
        self.seed = seed;
        for (i, v) in self.values.iter_mut().enumerate() {
            *v = pattern(seed, i as u64);
        }
    }

    /// `ok`, or where the first wrong value is.
    fn check(&self) -> String {
        match (0..self.values.len()).find(|&i| self.values[i] != pattern(self.seed, i as u64)) {
            None => "ok".into(),
            Some(i) => format!("wrong-at-{i}-of-{}", self.values.len()),
        }
    }
}

/// Writer threads: each writes rounds of a pattern into its block and allocates and
/// frees as it goes, reading back each round; a value not as written is a lost write.
struct Writers {
    lost: AtomicUsize,
    rounds: AtomicU64,
    pause: AtomicBool,
    paused: AtomicUsize,
    count: usize,
}

impl Writers {
    fn start(count: usize) -> Arc<Writers> {
        let writers = Arc::new(Writers {
            lost: AtomicUsize::new(0),
            rounds: AtomicU64::new(0),
            pause: AtomicBool::new(false),
            paused: AtomicUsize::new(0),
            count,
        });
        for w in 0..count {
            let writers = writers.clone();
            std::thread::spawn(move || writers.write(w as u64));
        }
        writers
    }

    fn write(&self, w: u64) {
        let block: Vec<AtomicU64> = (0..1 << 16).map(|_| AtomicU64::new(0)).collect();
        let mut kept: Vec<Vec<u64>> = Vec::new();
        for round in 1u64.. {
            let seed = w << 40 | round;
            for (i, v) in block.iter().enumerate() {
                v.store(pattern(seed, i as u64), Ordering::Relaxed);
            }
            // churn: a new allocation each round, the oldest of sixteen freed
            kept.push(vec![seed; 1 + (pattern(seed, 0) % 50_000) as usize]);
            if kept.len() > 16 {
                kept.remove(0);
            }
            let block_ok = block
                .iter()
                .enumerate()
                .all(|(i, v)| v.load(Ordering::Relaxed) == pattern(seed, i as u64));
            let kept_ok = kept.iter().all(|k| k.iter().all(|&x| x == k[0]));
            if !block_ok || !kept_ok {
                self.lost.fetch_add(1, Ordering::SeqCst);
            }
            self.rounds.fetch_add(1, Ordering::Relaxed);
            if self.pause.load(Ordering::SeqCst) {
                self.paused.fetch_add(1, Ordering::SeqCst);
                loop {
                    std::thread::park();
                }
            }
        }
    }

    /// Stops every writer at the end of a round; what they lost by then.
    fn stop(&self) -> String {
        self.pause.store(true, Ordering::SeqCst);
        while self.paused.load(Ordering::SeqCst) < self.count {
            std::thread::sleep(Duration::from_millis(1));
        }
        format!(
            "writers {} rounds {} lost {}",
            self.count,
            self.rounds.load(Ordering::SeqCst),
            self.lost.load(Ordering::SeqCst)
        )
    }
}

/// Left-running checkpoints, each after a round of allocations of changing sizes that
/// replace the previous round's: the heap's high-water mark moves, and then stays.
fn left_running_cycles(cycles: u64) {
    let store = format!("{}.heap", std::env::var("CRAC_CHECKPOINT_TO").unwrap());
    let mut churn: Vec<Block> = Vec::new();
    for cycle in 1..=cycles {
        churn.clear();
        let mb = 1 + pattern(9, cycle) as usize % 16;
        churn.push(Block::new(cycle, mb));
        let restore = crac::checkpoint_restore().unwrap();
        let (files, bytes) = disk_use(&store);
        say(&format!(
            "mapped cycle {cycle} {:?} {} files {files} bytes {bytes}",
            restore.outcome(),
            churn[0].check()
        ));
    }
}

/// Heap segment files in `store`, and the disk they take.
fn disk_use(store: &str) -> (usize, u64) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(store)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".heap"))
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(n, b), m| (n + 1, b + m.blocks() * 512))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().unwrap())
}

fn wait_for(file: &str) {
    while !std::path::Path::new(file).exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_for_go() {
    wait_for(&std::env::var("CRAC_E2E_GO").unwrap());
}

pub(super) fn run() -> ! {
    let state = Mutex::new(Block::new(1, env_number("CRAC_E2E_STATE_MB", 64)));
    let writers = Writers::start(env_number("CRAC_E2E_WRITERS", 0));
    say(&format!("mapped warm {}", state.lock().unwrap().check()));
    if let Ok(cycles) = std::env::var("CRAC_E2E_CYCLES") {
        left_running_cycles(cycles.parse().unwrap());
    }
    if let Ok(before) = std::env::var("CRAC_E2E_BEFORE") {
        wait_for(&before);
    }
    let restore = crac::checkpoint_restore().unwrap_or_else(|e| {
        say(&format!("mapped refused {e}"));
        say(&format!("mapped still {}", state.lock().unwrap().check()));
        wait_for_go();
        crac::checkpoint_restore().unwrap()
    });
    say(&format!("mapped outcome {:?}", restore.outcome()));
    let action = std::env::var("CRAC_E2E_ACTION").unwrap_or_else(|_| "verify".into());
    let mut state = state.lock().unwrap();
    match action.as_str() {
        "verify" => say(&format!(
            "mapped verify {} {}",
            state.check(),
            writers.stop()
        )),
        "overwrite" => {
            state.overwrite(2);
            say(&format!("mapped overwritten {}", state.check()));
            wait_for_go();
            say(&format!("mapped overwritten again {}", state.check()));
        }
        "wait" => {
            say(&format!("mapped verify {}", state.check()));
            wait_for_go();
            say(&format!("mapped verify again {}", state.check()));
        }
        "grow" => {
            let grown = Block::new(3, env_number("CRAC_E2E_GROW_MB", 16));
            say(&format!("mapped grown {} {}", state.check(), grown.check()));
            let again = crac::checkpoint_restore().unwrap();
            say(&format!(
                "mapped grown {:?} {} {}",
                again.outcome(),
                state.check(),
                grown.check()
            ));
        }
        other => panic!("unknown CRAC_E2E_ACTION {other}"),
    }
    std::process::exit(7);
}
