//! Cold start versus restore, side by side in one run, for `examples/search_service.rs`.
//!
//! `restore_bench SERVICE CRAC IMAGE_DIR [RESTORES]` — `scripts/bench.sh` builds both
//! in release mode and runs this. Needs root and CRIU. Prints a Markdown table.
//!
//! The service is checkpointed in a private PID namespace (as `crac run` does), so its
//! image can also be restored as 8 concurrent copies, each told its own port at restore
//! time.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ADDR: &str = "127.0.0.1:17878";
const COPIES: usize = 8;

/// Sends one query to `ADDR`, retrying until the service answers; returns the answer.
fn first_answer(deadline: Duration) -> String {
    first_answer_at(ADDR, deadline)
}

fn first_answer_at(addr: &str, deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let mut line = String::new();
        if let Ok(mut stream) = TcpStream::connect(addr)
            && stream.write_all(b"search ka\n").is_ok()
            && BufReader::new(&stream).read_line(&mut line).is_ok()
            && !line.is_empty()
        {
            return line;
        }
        assert!(
            start.elapsed() < deadline,
            "no answer from {addr} within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn quit(child: Child) -> std::process::ExitStatus {
    quit_at(ADDR, child)
}

fn quit_at(addr: &str, mut child: Child) -> std::process::ExitStatus {
    if let Ok(mut stream) = TcpStream::connect(addr) {
        let _ = stream.write_all(b"quit\n");
    }
    child.wait().unwrap()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / (1 << 20) as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, service, crac, image, rest @ ..] = &args[..] else {
        eprintln!("usage: restore_bench SERVICE CRAC IMAGE_DIR [RESTORES]");
        std::process::exit(2);
    };
    let restores: usize = rest
        .first()
        .map_or(5, |n| n.parse().expect("RESTORES is a number"));
    let image = Path::new(image);
    let _ = std::fs::remove_dir_all(image);

    eprintln!("1/4 cold start to first answer...");
    let start = Instant::now();
    let cold_child = Command::new(service)
        .arg(ADDR)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answer = first_answer(Duration::from_secs(300));
    let cold = start.elapsed();
    quit(cold_child);

    eprintln!("2/4 warm up and checkpoint...");
    // As `crac run` does: the service is PID 2 of its own PID namespace, under `crac __init`,
    // so that its image restores as many concurrent copies.
    let checkpointed = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(crac)
        .args(["__init", "--", service.as_str(), ADDR])
        .env("CRAC_CHECKPOINT_TO", image)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let ended_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let log = String::from_utf8_lossy(&checkpointed.stderr);
    let value = |key: &str| -> u128 {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("search_service: {key} ")))
            .unwrap_or_else(|| panic!("the service did not checkpoint:\n{log}"))
            .parse()
            .unwrap()
    };
    let dump = Duration::from_nanos((ended_ns - value("checkpoint-start-ns")) as u64);
    let live_heap = value("live-heap-bytes") as u64;
    let malloc_in_use = value("malloc-in-use-bytes") as u64;
    let manifest =
        std::fs::read_to_string(image.join("crac-manifest")).expect("an image was written");
    let resident: u64 = manifest
        .lines()
        .find_map(|l| l.strip_prefix("resident-bytes "))
        .unwrap()
        .parse()
        .unwrap();
    let image_bytes = dir_bytes(image);

    eprintln!("3/4 restore to first answer, {restores} times...");
    let mut times = Vec::new();
    for _ in 0..restores {
        let start = Instant::now();
        let child = Command::new(crac)
            .arg("restore")
            .arg(image)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let restored_answer = first_answer(Duration::from_secs(60));
        times.push(start.elapsed());
        assert_eq!(
            restored_answer, answer,
            "the restored service answers like the cold one"
        );
        assert!(quit(child).success());
    }
    times.sort();
    let median = times[times.len() / 2];

    eprintln!("4/4 {COPIES} concurrent restores, each on its own port...");
    let start = Instant::now();
    let copies: Vec<(String, Child)> = (0..COPIES)
        .map(|i| {
            let addr = format!("127.0.0.1:{}", 17900 + i);
            let child = Command::new(crac)
                .arg("restore")
                .arg(image)
                .arg("--env")
                .arg(format!("SEARCH_ADDR={addr}"))
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (addr, child)
        })
        .collect();
    for (addr, _) in &copies {
        assert_eq!(first_answer_at(addr, Duration::from_secs(120)), answer);
    }
    let all_copies = start.elapsed();
    for (addr, child) in copies {
        assert!(quit_at(&addr, child).success());
    }

    println!("| measure | result |");
    println!("|---|---|");
    println!("| cold start → first answer | {} |", ms(cold));
    println!(
        "| restore → first answer (median of {restores}; min {}, max {}) | {} |",
        ms(times[0]),
        ms(times[times.len() - 1]),
        ms(median)
    );
    println!(
        "| speed-up | {:.0}× |",
        cold.as_secs_f64() / median.as_secs_f64()
    );
    println!(
        "| {COPIES} concurrent restores of the image → all {COPIES} answered | {} |",
        ms(all_copies)
    );
    println!(
        "| checkpoint (hooks + dump + publish, until the process is gone) | {} |",
        ms(dump)
    );
    println!(
        "| live heap: bytes the program allocated | {} |",
        mb(live_heap)
    );
    println!(
        "| live heap: bytes malloc holds for them (`mallinfo2`) | {} |",
        mb(malloc_in_use)
    );
    println!(
        "| resident memory at dump (after malloc_trim) | {} |",
        mb(resident)
    );
    println!(
        "| image on disk | {} ({:.2}× malloc's live heap, {:.2}× allocated bytes, {:.2}× resident) |",
        mb(image_bytes),
        image_bytes as f64 / malloc_in_use as f64,
        image_bytes as f64 / live_heap as f64,
        image_bytes as f64 / resident as f64
    );
}
