//! Every way to get `examples/search_service.rs` answering, side by side in one run, at
//! several corpus sizes: (a) a cold start, (b) a full restore (`crac restore`), (c) a
//! lazy restore (`crac restore --lazy`), (d) loading the index saved with serde +
//! bincode, (e) mapping an rkyv archive of it and querying it in place, (f) a full
//! restore of an image taken with the service's `crac::MappedHeap` on (the heap mapped
//! from its segment files; (b) and (c) restore an image taken with `CRAC_MAPPED_HEAP=off`).
//!
//! `restore_bench SERVICE CRAC WORK_DIR OUT_DIR RUNS DOCS...` — `scripts/bench.sh` builds
//! both in release mode and runs this. Needs root and CRIU. For each corpus size (in
//! documents) it measures each way RUNS times, interleaved, to the first answer and to
//! the answer of `checksum` (a walk of the whole index, which a lazy restore can only
//! answer once every page is in), asserting that every answer and checksum equals the
//! cold start's; a first request that reads 2,000 documents spread over the index
//! (`touch-pages`) after (b), (c) and (f); then eight concurrent copies of (b)–(f), the
//! checkpoint of both images, and a second checkpoint of an (f) copy after it changed 1%
//! of its documents. Prints a Markdown table and a headline, and writes
//! `OUT_DIR/results.md` and `OUT_DIR/latency.tsv` (the plot's data).
//!
//! The service is checkpointed in a private PID namespace (as `crac run` does), so its
//! image can also be restored as concurrent copies, each told its own port at restore
//! time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a single copy listens.
const ADDR: &str = "127.0.0.1:17878";
/// How many copies start at once, and the first of their ports.
const COPIES: usize = 8;
const FIRST_COPY_PORT: u16 = 17900;
/// The query whose answer counts as "the first answer".
const QUERY: &str = "search ka";
/// A first request that reads a little of the state everywhere: 2,000 documents spread
/// evenly over the index, each on pages of its own.
const TOUCH: &str = "touch-pages 2000";
/// The ways whose first answer to [`TOUCH`] is measured too.
const TOUCH_WAYS: [Way; 3] = [Way::Full, Way::Lazy, Way::Mapped];
/// The ways started as eight copies at once, and plotted.
const RESTORE_WAYS: [Way; 5] = [Way::Full, Way::Lazy, Way::Bincode, Way::Rkyv, Way::Mapped];
/// The share of the documents (%) an (f) copy changes before its second checkpoint.
const CHANGED_PERCENT: u32 = 1;
/// Longest wait for a cold start to answer (a gigabyte corpus on a busy machine).
const COLD_DEADLINE: Duration = Duration::from_secs(900);

/// The ways to get the service answering.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Way {
    Cold,
    Full,
    Lazy,
    Bincode,
    Rkyv,
    Mapped,
}

impl Way {
    const ALL: [Way; 6] = [
        Way::Cold,
        Way::Full,
        Way::Lazy,
        Way::Bincode,
        Way::Rkyv,
        Way::Mapped,
    ];

    fn label(self) -> &'static str {
        match self {
            Way::Cold => "(a) cold start",
            Way::Full => "(b) full restore (`crac restore`)",
            Way::Lazy => "(c) lazy restore (`crac restore --lazy`)",
            Way::Bincode => "(d) serde + bincode load",
            Way::Rkyv => "(e) rkyv archive, mapped (zero-copy)",
            Way::Mapped => "(f) mapped-heap restore (`MappedHeap`, `crac restore`)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Way::Cold => "cold start",
            Way::Full => "full restore",
            Way::Lazy => "lazy restore",
            Way::Bincode => "bincode load",
            Way::Rkyv => "rkyv mmap",
            Way::Mapped => "mapped heap",
        }
    }
}

/// The programs and files of one corpus size.
struct Setup {
    service: PathBuf,
    crac: PathBuf,
    docs: u32,
    /// The image of (b) and (c), taken with `CRAC_MAPPED_HEAP=off`.
    image: PathBuf,
    /// The image of (f), taken with the mapped heap on (its segments in `<image>.heap`).
    mapped_image: PathBuf,
    /// The second checkpoint of an (f) copy.
    second_image: PathBuf,
    bincode: PathBuf,
    rkyv: PathBuf,
    /// Where each start's stderr goes, shown if it fails.
    logs: PathBuf,
}

impl Setup {
    /// The command that starts the service the `way` way, listening on `addr`.
    fn command(&self, way: Way, addr: &str) -> Command {
        let mut cmd;
        match way {
            Way::Cold => {
                cmd = Command::new(&self.service);
                cmd.arg(addr).env("SEARCH_DOCS", self.docs.to_string());
            }
            Way::Full | Way::Lazy | Way::Mapped => {
                cmd = Command::new(&self.crac);
                // `-v`: the restore's phases in the log, after the process runs
                cmd.args(["restore", "-v"]);
                if way == Way::Lazy {
                    cmd.arg("--lazy");
                }
                let image = if way == Way::Mapped {
                    &self.mapped_image
                } else {
                    &self.image
                };
                cmd.arg(image)
                    .arg("--env")
                    .arg(format!("SEARCH_ADDR={addr}"));
            }
            Way::Bincode => {
                cmd = Command::new(&self.service);
                cmd.arg(addr).arg("--load-bincode").arg(&self.bincode);
            }
            Way::Rkyv => {
                cmd = Command::new(&self.service);
                cmd.arg(addr).arg("--load-rkyv").arg(&self.rkyv);
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd
    }

    /// Starts the service the `way` way on `addr`, its stderr kept in a log of its own.
    fn start(&self, way: Way, addr: &str) -> Started {
        self.start_command(self.command(way, addr), way, addr)
    }

    fn start_command(&self, mut cmd: Command, way: Way, addr: &str) -> Started {
        let port = addr.rsplit(':').next().unwrap();
        let log = self.logs.join(format!(
            "{}-{}-{port}.log",
            self.docs,
            way.short().replace(' ', "-")
        ));
        cmd.stderr(std::fs::File::create(&log).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Started {
            watch: Watch {
                pid: child.id(),
                log,
                addr: addr.to_string(),
            },
            child,
        }
    }
}

/// What every copy must answer: the cold build's answers.
struct Expected {
    answer: String,
    checksum: String,
    /// The answer to [`TOUCH`].
    touched: String,
}

/// A started service (or `crac restore`), killed if the benchmark fails before it is
/// told to quit: a failed run leaves no copy holding a port. Killing `crac restore`
/// takes its copy down with it.
struct Started {
    child: Child,
    watch: Watch,
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What asking a started process needs (and a thread can hold): its address, and how
/// to tell that it is gone and why.
#[derive(Clone)]
struct Watch {
    pid: u32,
    log: PathBuf,
    addr: String,
}

impl Watch {
    /// Sends `command` once the service listens, retrying until `deadline` passes or
    /// the process has exited, and returns the answer line.
    fn ask(&self, command: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let mut line = String::new();
            if let Ok(mut stream) = TcpStream::connect(&self.addr)
                && stream.write_all(format!("{command}\n").as_bytes()).is_ok()
                && BufReader::new(&stream).read_line(&mut line).is_ok()
                && !line.is_empty()
            {
                return line;
            }
            // not reaped until `quit`: an exited process stays a zombie
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid));
            let exited = stat.map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            });
            let failed = if exited {
                "exited before answering"
            } else if start.elapsed() > deadline {
                "did not answer in time"
            } else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            panic!(
                "process {} (for {}) {failed}; its stderr ({}):\n{}",
                self.pid,
                self.addr,
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Tells the service to quit and checks that it (and `crac restore`) exit cleanly.
fn quit(mut started: Started) {
    let watch = started.watch.clone();
    if let Ok(mut stream) = TcpStream::connect(&watch.addr) {
        let _ = stream.write_all(b"quit\n");
    }
    let status = started.child.wait().unwrap();
    assert!(
        status.success(),
        "the service at {} ended with {status}; its stderr:\n{}",
        watch.addr,
        std::fs::read_to_string(&watch.log).unwrap_or_default()
    );
}

/// One start: the time to the first answer, and to the checksum's.
#[derive(Clone, Copy)]
struct Timing {
    first: Duration,
    checksum: Duration,
    /// The service's PSS once it answered the checksum (alone on the machine).
    pss_bytes: u64,
}

/// Starts the service one way, asks the query and the checksum, checks both, stops it.
fn run_once(setup: &Setup, way: Way, expected: &Expected) -> Timing {
    let deadline = if way == Way::Cold {
        COLD_DEADLINE
    } else {
        Duration::from_secs(120)
    };
    let start = Instant::now();
    let started = setup.start(way, ADDR);
    let answer = started.watch.ask(QUERY, deadline);
    let first = start.elapsed();
    let checksum = started.watch.ask("checksum", deadline);
    let checksum_at = start.elapsed();
    let pids = service_processes(started.watch.pid, &setup.service);
    assert_eq!(
        pids.len(),
        1,
        "one service process under {}",
        started.watch.pid
    );
    let pss_bytes = pss(pids[0]);
    quit(started);
    assert_eq!(
        answer,
        expected.answer,
        "{} answers like the cold build",
        way.short()
    );
    assert_eq!(
        checksum,
        expected.checksum,
        "{} holds the cold build's index",
        way.short()
    );
    Timing {
        first,
        checksum: checksum_at,
        pss_bytes,
    }
}

/// Starts the service one way and times its first answer to [`TOUCH`] (checked).
fn run_touch(setup: &Setup, way: Way, expected: &Expected) -> Duration {
    let start = Instant::now();
    let started = setup.start(way, ADDR);
    let touched = started.watch.ask(TOUCH, Duration::from_secs(120));
    let first = start.elapsed();
    quit(started);
    assert_eq!(
        touched,
        expected.touched,
        "{} reads the cold build's documents",
        way.short()
    );
    first
}

/// Eight copies at once: when the last answered, when the last checksum came, and the
/// memory they hold together then.
struct Copies {
    all_answered: Duration,
    all_checksums: Duration,
    pss_bytes: u64,
}

fn copies(setup: &Setup, way: Way, expected: &Arc<Expected>) -> Copies {
    let start = Instant::now();
    let started: Vec<Started> = (0..COPIES)
        .map(|i| setup.start(way, &format!("127.0.0.1:{}", FIRST_COPY_PORT + i as u16)))
        .collect();
    // Each copy is asked from a thread of its own, the query first; the checksums only
    // once all have answered, so that they do not slow the copies still starting.
    let ask_all = |command: &'static str| -> Vec<(String, Duration)> {
        let askers: Vec<_> = started
            .iter()
            .map(|s| {
                let watch = s.watch.clone();
                std::thread::spawn(move || {
                    let answer = watch.ask(command, Duration::from_secs(300));
                    (answer, start.elapsed())
                })
            })
            .collect();
        askers.into_iter().map(|t| t.join().unwrap()).collect()
    };
    let answers = ask_all(QUERY);
    let checksums = ask_all("checksum");
    for ((answer, _), (checksum, _)) in answers.iter().zip(&checksums) {
        assert_eq!(
            *answer, expected.answer,
            "a copy answers like the cold build"
        );
        assert_eq!(
            *checksum, expected.checksum,
            "a copy holds the cold build's index"
        );
    }
    let pss_bytes = started
        .iter()
        .map(|s| {
            let pids = service_processes(s.watch.pid, &setup.service);
            assert_eq!(pids.len(), 1, "one service process under {}", s.watch.pid);
            pss(pids[0])
        })
        .sum();
    started.into_iter().for_each(quit);
    Copies {
        all_answered: answers.iter().map(|a| a.1).max().unwrap(),
        all_checksums: checksums.iter().map(|c| c.1).max().unwrap(),
        pss_bytes,
    }
}

/// The processes running `service` at or below `root` in the process tree: the
/// restored copy under `crac restore` (and its namespace's init), or `root` itself.
fn service_processes(root: u32, service: &Path) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // the parent is the second field after the command name, which may hold spaces
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        else {
            continue;
        };
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == service) {
            found.push(pid);
        }
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    found
}

/// The process's proportional share of the memory it maps (`Pss:` in smaps_rollup).
fn pss(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let kb: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no Pss in /proc/{pid}/smaps_rollup"));
    kb * 1024
}

/// How long CRIU kept the process frozen, in microseconds, as recorded in the image's
/// `stats-dump`: an image header (two magic words), the entry's length, then a protobuf
/// `stats_entry` whose field 1 is the `dump_stats_entry`, whose field 2 is
/// `frozen_time`. CRIU writes it after the process is gone, so it is waited for.
fn frozen_us(image: &Path) -> u64 {
    let path = image.join("stats-dump");
    let deadline = Instant::now() + Duration::from_secs(10);
    let bytes = loop {
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() > 12 => break bytes,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => panic!("CRIU wrote no {}", path.display()),
        }
    };
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let entry = protobuf_fields(&bytes[12..12 + len]);
    let Some(Field::Bytes(dump)) = entry.get(&1) else {
        panic!("no dump statistics in {}", path.display());
    };
    match protobuf_fields(dump).get(&2) {
        Some(Field::Number(us)) => *us,
        _ => panic!("no frozen_time in {}", path.display()),
    }
}

enum Field<'a> {
    Number(u64),
    Bytes(&'a [u8]),
}

/// The varint and length-delimited fields of one protobuf message, by number.
fn protobuf_fields(mut bytes: &[u8]) -> HashMap<u64, Field<'_>> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first().expect("a truncated varint");
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    }
    let mut fields = HashMap::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let field = match key & 7 {
            0 => Field::Number(varint(&mut bytes)),
            2 => {
                let len = varint(&mut bytes) as usize;
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                Field::Bytes(value)
            }
            wire => panic!("unexpected protobuf wire type {wire}"),
        };
        fields.insert(key >> 3, field);
    }
    fields
}

/// The checkpoint: its time split into phases, and what the image holds.
struct Checkpointed {
    /// From `checkpoint_restore()` until the process is gone (the image is published
    /// before CRIU kills the process).
    total: Duration,
    /// Consecutive phases, adding up to `total`.
    phases: Vec<(&'static str, Duration)>,
    /// How long the process was frozen (CRIU's count; publishing included).
    frozen: Duration,
    live_heap: u64,
    malloc_in_use: u64,
    resident: u64,
    image_bytes: u64,
    /// CRIU's page data in the image (`pages-*.img`).
    page_bytes: u64,
    /// The heap segments the image maps (none with the mapped heap off).
    segment_bytes: u64,
    /// The service's cold build, as it reported it.
    indexing: Duration,
}

impl Checkpointed {
    /// Seconds per GB of the state a restore brings back: the image and its segments.
    fn s_per_gb(&self) -> f64 {
        let gb = (self.image_bytes + self.segment_bytes) as f64 / (1u64 << 30) as f64;
        self.total.as_secs_f64() / gb
    }
}

/// The second checkpoint of an (f) copy that changed [`CHANGED_PERCENT`] of its
/// documents: from the `checkpoint` command until the image is published and the copy
/// gone, and the page data written.
struct Second {
    total: Duration,
    /// From the service's `checkpoint_restore()` on, as [`Checkpointed::phases`].
    phases: Vec<(&'static str, Duration)>,
    page_bytes: u64,
    changed_docs: String,
}

/// The phases' labels, in order.
const HOOKS: &str = "`checkpoint_restore()` to the last hook done";
const BEFORE_CRIU: &str = "open-fd check, dump helper, until CRIU starts";
const CRIU_DUMP: &str = "CRIU: freeze, write the image";
const DIGESTS: &str = "publish: BLAKE3 digests of the image files, fsync beside them";
const AFTER: &str = "publish: manifest, rename; CRIU kills the process";

/// When a file was created and last written, in nanoseconds since the epoch (the file
/// system's clock, which ticks every few milliseconds).
fn file_times(path: &Path) -> (u128, u128) {
    let meta = std::fs::metadata(path).unwrap();
    let ns = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let modified = ns(meta.modified().unwrap());
    (meta.created().map_or(modified, ns), modified)
}

/// Removes an image and its heap store (whose sealed segments are immutable where the
/// file system allows: the flag is cleared first).
fn remove_image(image: &Path) {
    let mut store = image.as_os_str().to_owned();
    store.push(".heap");
    for dir in [image.as_os_str(), &store] {
        if Path::new(dir).exists() {
            let _ = Command::new("chattr")
                .arg("-R")
                .arg("-i")
                .arg(dir)
                .stderr(Stdio::null())
                .status();
            std::fs::remove_dir_all(dir)
                .unwrap_or_else(|e| panic!("removing {}: {e}", Path::new(dir).display()));
        }
    }
}

/// Bytes of the image's page data.
fn page_bytes(image: &Path) -> u64 {
    std::fs::read_dir(image)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Checkpoints a cold-built service, with the mapped heap on (the image of (f)) or off.
fn checkpoint(setup: &Setup, mapped: bool) -> Checkpointed {
    let image = if mapped {
        &setup.mapped_image
    } else {
        &setup.image
    };
    remove_image(image);
    // As `crac run` does: the service is PID 2 of its own PID namespace, under
    // `crac __init`, so that its image restores as many concurrent copies.
    let checkpointed = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(&setup.crac)
        .arg("__init")
        .arg("--")
        .arg(&setup.service)
        .arg(ADDR)
        .env("CRAC_CHECKPOINT_TO", image)
        .env("CRAC_MAPPED_HEAP", if mapped { "on" } else { "off" })
        .env("SEARCH_DOCS", setup.docs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let gone = now_ns();
    let log = String::from_utf8_lossy(&checkpointed.stderr);
    let value = |key: &str| stamp(&log, key);
    let manifest =
        std::fs::read_to_string(image.join("crac-manifest")).expect("an image was written");
    let segment_bytes = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("segment "))
        .map(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        mapped,
        segment_bytes > 0,
        "the image maps heap segments exactly when the mapped heap is on"
    );
    let resident = manifest
        .lines()
        .find_map(|l| l.strip_prefix("resident-bytes "))
        .unwrap()
        .parse()
        .unwrap();
    let start = value("checkpoint-start-ns");
    let phases = phases(image, start, value("hooks-done-ns"), gone);
    Checkpointed {
        total: Duration::from_nanos((gone - start) as u64),
        phases,
        frozen: Duration::from_micros(frozen_us(image)),
        live_heap: value("live-heap-bytes") as u64,
        malloc_in_use: value("malloc-in-use-bytes") as u64,
        resident,
        image_bytes: dir_bytes(image),
        page_bytes: page_bytes(image),
        segment_bytes,
        indexing: Duration::from_nanos(value("indexing-ns") as u64),
    }
}

/// A stamp the service printed (`search_service: KEY VALUE`) in `log`.
fn stamp(log: &str, key: &str) -> u128 {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("search_service: {key} ")))
        .unwrap_or_else(|| panic!("the service did not checkpoint:\n{log}"))
        .parse()
        .unwrap()
}

/// The checkpoint's consecutive phases, from the service's stamps (nanoseconds since the
/// epoch) to the moment the process was `gone`.
fn phases(
    image: &Path,
    start: u128,
    hooks_done: u128,
    gone: u128,
) -> Vec<(&'static str, Duration)> {
    // The moments between the service's stamps and the end, from the image's files:
    // CRIU creates its log first; its image files are written last when the image is
    // complete; the manifest is written once their digests are computed.
    let criu_started = file_times(&image.join("dump.log")).0;
    let image_written = std::fs::read_dir(image)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .map(|p| file_times(&p).1)
        .max()
        .unwrap();
    let digested = file_times(&image.join("crac-manifest")).1;
    let stamps = [
        start,
        hooks_done,
        criu_started,
        image_written,
        digested,
        gone,
    ];
    [HOOKS, BEFORE_CRIU, CRIU_DUMP, DIGESTS, AFTER]
        .into_iter()
        .zip(stamps.windows(2))
        .map(|(label, w)| {
            (
                label,
                Duration::from_nanos(w[1].saturating_sub(w[0]) as u64),
            )
        })
        .collect()
}

/// Restores an (f) copy told to checkpoint again to the second image, changes
/// [`CHANGED_PERCENT`] of its documents, times its `checkpoint` command until the image
/// is published and the copy gone, then checks that a copy of the second image holds the
/// changed index.
fn second_checkpoint(setup: &Setup, expected: &Expected) -> Second {
    remove_image(&setup.second_image);
    let mut cmd = setup.command(Way::Mapped, ADDR);
    cmd.arg("--env").arg(format!(
        "CRAC_CHECKPOINT_TO={}",
        setup.second_image.display()
    ));
    let mut started = setup.start_command(cmd, Way::Mapped, ADDR);
    let deadline = Duration::from_secs(120);
    assert_eq!(started.watch.ask(QUERY, deadline), expected.answer);
    let changed_docs = started
        .watch
        .ask(&format!("change {CHANGED_PERCENT}"), deadline);
    assert!(changed_docs.starts_with("changed "), "{changed_docs}");
    let changed = started.watch.ask("checksum", deadline);
    assert_ne!(changed, expected.checksum, "the change changed the index");
    let start = Instant::now();
    assert_eq!(started.watch.ask("checkpoint", deadline), "checkpointing\n");
    // `crac restore` ends with its copy, which CRIU kills once the image is published
    let _ = started.child.wait();
    let total = start.elapsed();
    let gone = now_ns();
    assert!(
        setup.second_image.join("crac-manifest").exists(),
        "the second checkpoint published no image; its stderr:\n{}",
        std::fs::read_to_string(&started.watch.log).unwrap_or_default()
    );
    // read before the check below restores a copy logging to the same file
    let log = std::fs::read_to_string(&started.watch.log).unwrap();
    let phases = phases(
        &setup.second_image,
        stamp(&log, "checkpoint-start-ns"),
        stamp(&log, "hooks-done-ns"),
        gone,
    );
    let restored = {
        let mut cmd = Command::new(&setup.crac);
        cmd.arg("restore")
            .arg(&setup.second_image)
            .arg("--env")
            .arg(format!("SEARCH_ADDR={ADDR}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        setup.start_command(cmd, Way::Mapped, ADDR)
    };
    assert_eq!(
        restored.watch.ask("checksum", deadline),
        changed,
        "the second image holds the changed index"
    );
    quit(restored);
    Second {
        total,
        phases,
        page_bytes: page_bytes(&setup.second_image),
        changed_docs: changed_docs.trim().to_string(),
    }
}

/// Builds the index cold once, saving it for (d) and (e), and records what every other
/// start must answer.
fn prepare(setup: &Setup) -> Expected {
    let mut cmd = setup.command(Way::Cold, ADDR);
    cmd.arg("--save-bincode")
        .arg(&setup.bincode)
        .arg("--save-rkyv")
        .arg(&setup.rkyv);
    let started = setup.start_command(cmd, Way::Cold, ADDR);
    let answer = started.watch.ask(QUERY, COLD_DEADLINE);
    let checksum = started.watch.ask("checksum", COLD_DEADLINE);
    let touched = started.watch.ask(TOUCH, COLD_DEADLINE);
    quit(started);
    assert!(checksum.starts_with("checksum "), "{checksum}");
    assert!(touched.starts_with("touched "), "{touched}");
    Expected {
        answer,
        checksum,
        touched,
    }
}

/// All figures of one corpus size.
struct SizeResult {
    docs: u32,
    /// The image of (b) and (c), with the mapped heap off.
    checkpoint: Checkpointed,
    /// The image of (f).
    mapped: Checkpointed,
    second: Second,
    bincode_bytes: u64,
    rkyv_bytes: u64,
    runs: HashMap<Way, Vec<Timing>>,
    /// First answers to [`TOUCH`].
    touches: HashMap<Way, Vec<Duration>>,
    copies: HashMap<Way, Copies>,
}

fn bench_size(service: &Path, crac: &Path, work: &Path, docs: u32, runs: usize) -> SizeResult {
    let setup = Setup {
        service: service.to_path_buf(),
        crac: crac.to_path_buf(),
        docs,
        image: work.join(format!("image-{docs}")),
        mapped_image: work.join(format!("image-{docs}-mapped")),
        second_image: work.join(format!("image-{docs}-second")),
        bincode: work.join(format!("index-{docs}.bincode")),
        rkyv: work.join(format!("index-{docs}.rkyv")),
        logs: work.to_path_buf(),
    };
    eprintln!("== {docs} documents: cold build, saving bincode and rkyv files...");
    let expected = Arc::new(prepare(&setup));
    eprintln!("   warm up and checkpoint, mapped heap off, then on...");
    let checkpoint_off = checkpoint(&setup, false);
    let mapped = checkpoint(&setup, true);
    let mut timings: HashMap<Way, Vec<Timing>> = HashMap::new();
    let mut touches: HashMap<Way, Vec<Duration>> = HashMap::new();
    // interleaved, so that a slow spell of the machine weighs on every way alike
    for run in 1..=runs {
        eprintln!("   run {run}/{runs}: each way to the first answer and the checksum...");
        for way in Way::ALL {
            timings
                .entry(way)
                .or_default()
                .push(run_once(&setup, way, &expected));
        }
        for way in TOUCH_WAYS {
            touches
                .entry(way)
                .or_default()
                .push(run_touch(&setup, way, &expected));
        }
    }
    let mut all_copies = HashMap::new();
    for way in RESTORE_WAYS {
        eprintln!("   {COPIES} concurrent copies, {}...", way.short());
        all_copies.insert(way, copies(&setup, way, &expected));
    }
    eprintln!("   a second checkpoint of a mapped-heap copy after `change {CHANGED_PERCENT}`...");
    let second = second_checkpoint(&setup, &expected);
    let result = SizeResult {
        docs,
        checkpoint: checkpoint_off,
        mapped,
        second,
        bincode_bytes: std::fs::metadata(&setup.bincode).unwrap().len(),
        rkyv_bytes: std::fs::metadata(&setup.rkyv).unwrap().len(),
        runs: timings,
        touches,
        copies: all_copies,
    };
    // the second image shares the first one's segments: removed first
    for image in [&setup.second_image, &setup.mapped_image, &setup.image] {
        remove_image(image);
    }
    let _ = std::fs::remove_file(&setup.bincode);
    let _ = std::fs::remove_file(&setup.rkyv);
    result
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn mb(bytes: u64) -> String {
    let mb = bytes as f64 / (1 << 20) as f64;
    if mb >= 1024.0 {
        format!("{:.2} GB", mb / 1024.0)
    } else {
        format!("{mb:.0} MB")
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Median (the mean of the middle two for an even count), min and max.
fn spread(mut values: Vec<Duration>) -> (Duration, Duration, Duration) {
    values.sort();
    let n = values.len();
    let median = (values[(n - 1) / 2] + values[n / 2]) / 2;
    (median, values[0], values[n - 1])
}

fn cell(values: Vec<Duration>) -> String {
    let (median, min, max) = spread(values);
    format!("{} ({}–{})", ms(median), ms(min), ms(max))
}

fn first_answers(result: &SizeResult, way: Way) -> Vec<Duration> {
    result.runs[&way].iter().map(|t| t.first).collect()
}

/// One row of the table: its label, then a cell per corpus size.
fn push_row(
    out: &mut String,
    results: &[SizeResult],
    label: &str,
    cells: &dyn Fn(&SizeResult) -> String,
) {
    let cells: Vec<String> = results.iter().map(cells).collect();
    writeln!(out, "| {label} | {} |", cells.join(" | ")).unwrap();
}

/// The Markdown table: one column per corpus size.
fn table(results: &[SizeResult], runs: usize) -> String {
    let mut out = String::new();
    let mut row = |label: &str, cells: &dyn Fn(&SizeResult) -> String| {
        push_row(&mut out, results, label, cells);
    };
    row("documents indexed", &|r| r.docs.to_string());
    row("live heap: allocated / held by malloc", &|r| {
        format!(
            "{} / {}",
            mb(r.checkpoint.live_heap),
            mb(r.checkpoint.malloc_in_use)
        )
    });
    row("resident at dump / image on disk ÷ malloc's heap", &|r| {
        format!(
            "{} / {:.2}×",
            mb(r.checkpoint.resident),
            r.checkpoint.image_bytes as f64 / r.checkpoint.malloc_in_use as f64
        )
    });
    row("bincode file / rkyv file", &|r| {
        format!("{} / {}", mb(r.bincode_bytes), mb(r.rkyv_bytes))
    });
    row(
        "(f)'s image (`MappedHeap`): page data / heap segments it maps",
        &|r| {
            format!(
                "{} / {}",
                mb(r.mapped.page_bytes),
                mb(r.mapped.segment_bytes)
            )
        },
    );
    row(
        "cold build (indexing): system allocator / `MappedHeap` (one each)",
        &|r| {
            format!(
                "{} / {} ({:.2}×)",
                ms(r.checkpoint.indexing),
                ms(r.mapped.indexing),
                r.mapped.indexing.as_secs_f64() / r.checkpoint.indexing.as_secs_f64()
            )
        },
    );
    row(
        &format!("**start → first answer** (median of {runs}, min–max)"),
        &|_| String::new(),
    );
    for way in Way::ALL {
        row(way.label(), &|r| cell(first_answers(r, way)));
    }
    row(
        &format!(
            "**start → first answer to `{TOUCH}`** (documents spread over the index; × the first answer's median)"
        ),
        &|_| String::new(),
    );
    for way in TOUCH_WAYS {
        row(way.label(), &|r| {
            let touched = r.touches[&way].clone();
            let (median, _, _) = spread(touched.clone());
            let (first, _, _) = spread(first_answers(r, way));
            format!(
                "{} ({:.2}×)",
                cell(touched),
                median.as_secs_f64() / first.as_secs_f64()
            )
        });
    }
    row(
        "**start → checksum answered** (the whole index read)",
        &|_| String::new(),
    );
    for way in Way::ALL {
        row(way.label(), &|r| {
            cell(r.runs[&way].iter().map(|t| t.checksum).collect())
        });
    }
    copies_rows(&mut out, results);
    checkpoint_rows(&mut out, results);
    let header: Vec<String> = results
        .iter()
        .map(|r| format!("{} image", mb(r.checkpoint.image_bytes)))
        .collect();
    let rule = vec!["---"; results.len()].join("|");
    format!("| | {} |\n|---|{rule}|\n{out}", header.join(" | "))
}

/// The table's rows of the eight concurrent copies.
fn copies_rows(out: &mut String, results: &[SizeResult]) {
    let mut row = |label: &str, cells: &dyn Fn(&SizeResult) -> String| {
        push_row(out, results, label, cells);
    };
    row(
        &format!(
            "**{COPIES} concurrent copies**: all answered (× one's median) · all checksums · total PSS (× one copy's alone, after its checksum)"
        ),
        &|_| String::new(),
    );
    for way in RESTORE_WAYS {
        row(way.label(), &|r| {
            let c = &r.copies[&way];
            let (one, _, _) = spread(first_answers(r, way));
            let mut alone: Vec<u64> = r.runs[&way].iter().map(|t| t.pss_bytes).collect();
            alone.sort_unstable();
            format!(
                "{} ({:.1}×) · {} · {} ({:.2}×)",
                ms(c.all_answered),
                c.all_answered.as_secs_f64() / one.as_secs_f64(),
                ms(c.all_checksums),
                mb(c.pss_bytes),
                c.pss_bytes as f64 / alone[alone.len() / 2] as f64
            )
        });
    }
}

/// The table's rows of both checkpoints, and of the second checkpoint.
fn checkpoint_rows(out: &mut String, results: &[SizeResult]) {
    let mut row = |label: &str, cells: &dyn Fn(&SizeResult) -> String| {
        push_row(out, results, label, cells);
    };
    for (title, of) in [
        (
            "**checkpoint**, system allocator (the image of (b), (c)): hooks + dump + publish, until the process is gone",
            (|r| &r.checkpoint) as fn(&SizeResult) -> &Checkpointed,
        ),
        (
            "**checkpoint with `MappedHeap`** (the image of (f); per GB of image and segments; the seal is in the phase before CRIU)",
            |r| &r.mapped,
        ),
    ] {
        row(title, &|r| {
            let c = of(r);
            format!("**{}** ({:.2} s per GB)", ms(c.total), c.s_per_gb())
        });
        for phase in [HOOKS, BEFORE_CRIU, CRIU_DUMP, DIGESTS, AFTER] {
            row(&format!("· {phase}"), &|r| {
                let (_, d) = of(r).phases.iter().find(|p| p.0 == phase).unwrap();
                ms(*d)
            });
        }
        row(
            "the process frozen (CRIU's count, publishing included)",
            &|r| ms(of(r).frozen),
        );
    }
    row(
        &format!(
            "**second checkpoint** of an (f) copy after `change {CHANGED_PERCENT}` (from the command until published and gone) · its page data"
        ),
        &|r| {
            format!(
                "**{}** · {} ({})",
                ms(r.second.total),
                mb(r.second.page_bytes),
                r.second.changed_docs
            )
        },
    );
    for phase in [HOOKS, BEFORE_CRIU, CRIU_DUMP, DIGESTS, AFTER] {
        row(&format!("· {phase}"), &|r| {
            let (_, d) = r.second.phases.iter().find(|p| p.0 == phase).unwrap();
            ms(*d)
        });
    }
}

/// One line per size: the figures a reader looks for first.
fn headline(results: &[SizeResult], runs: usize) -> String {
    let mut out = String::new();
    for r in results {
        let median = |way| ms(spread(first_answers(r, way)).0);
        writeln!(
            out,
            "{} image: first answer after {} {}, {} {}, {} {}, {} {}, {} {}, {} {} (medians of {runs}); \
             {COPIES} copies at once: full restore {} ({} PSS), lazy {}, mapped heap {} ({} PSS), \
             rkyv {} ({} PSS); checkpoint with the mapped heap {} ({:.2} s per GB), a second one \
             after `change {CHANGED_PERCENT}` {}",
            mb(r.checkpoint.image_bytes),
            Way::Cold.short(),
            median(Way::Cold),
            Way::Full.short(),
            median(Way::Full),
            Way::Lazy.short(),
            median(Way::Lazy),
            Way::Bincode.short(),
            median(Way::Bincode),
            Way::Rkyv.short(),
            median(Way::Rkyv),
            Way::Mapped.short(),
            median(Way::Mapped),
            ms(r.copies[&Way::Full].all_answered),
            mb(r.copies[&Way::Full].pss_bytes),
            ms(r.copies[&Way::Lazy].all_answered),
            ms(r.copies[&Way::Mapped].all_answered),
            mb(r.copies[&Way::Mapped].pss_bytes),
            ms(r.copies[&Way::Rkyv].all_answered),
            mb(r.copies[&Way::Rkyv].pss_bytes),
            ms(r.mapped.total),
            r.mapped.s_per_gb(),
            ms(r.second.total),
        )
        .unwrap();
    }
    out
}

/// The plot's data: image size, then median, min and max of each restore-like way.
fn latency_tsv(results: &[SizeResult]) -> String {
    let ways = RESTORE_WAYS;
    let mut out = String::from("# image_mb");
    for way in ways {
        let name = way.short().replace(' ', "_");
        write!(out, "\t{name}_median_ms\t{name}_min_ms\t{name}_max_ms").unwrap();
    }
    out.push('\n');
    for r in results {
        write!(
            out,
            "{:.1}",
            r.checkpoint.image_bytes as f64 / (1 << 20) as f64
        )
        .unwrap();
        for way in ways {
            let (median, min, max) = spread(first_answers(r, way));
            for d in [median, min, max] {
                write!(out, "\t{:.2}", d.as_secs_f64() * 1000.0).unwrap();
            }
        }
        out.push('\n');
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, service, crac, work, out, runs, docs @ ..] = &args[..] else {
        eprintln!("usage: restore_bench SERVICE CRAC WORK_DIR OUT_DIR RUNS DOCS...");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    assert!(
        runs > 0 && !docs.is_empty(),
        "at least one run and one size"
    );
    // the restored copies are found by their executable's path, as the kernel shows it
    let service = std::fs::canonicalize(service).expect("the service exists");
    let crac = std::fs::canonicalize(crac).expect("crac exists");
    let (work, out) = (Path::new(work), Path::new(out));
    std::fs::create_dir_all(work).unwrap();
    std::fs::create_dir_all(out).unwrap();

    let results: Vec<SizeResult> = docs
        .iter()
        .map(|d| {
            let d = d.parse().expect("each size is a number of documents");
            bench_size(&service, &crac, work, d, runs)
        })
        .collect();

    let table = table(&results, runs);
    let headline = headline(&results, runs);
    std::fs::write(out.join("results.md"), &table).unwrap();
    std::fs::write(out.join("latency.tsv"), latency_tsv(&results)).unwrap();
    println!("{table}\n{headline}");
}
