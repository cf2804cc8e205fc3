//! Entries as independent zstd chunks (`format.rs`), and the pipeline that compresses or
//! decompresses them on every core: one thread reads and hashes in order (BLAKE3 is
//! sequential over an entry), workers run zstd on whole chunks, and the results come
//! back in the order read. A few chunks are in flight at once, each at most
//! [`CHUNK`] bytes unpacked and [`stored_bound`] packed, so memory stays bounded
//! whatever an entry's size, and a hostile chunk can neither grow past its slot nor
//! make a worker wait on anything.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc;

pub(crate) use super::format::CHUNK;

/// The most bytes a chunk may take in a packed file: zstd's bound for [`CHUNK`] bytes.
pub(crate) fn stored_bound() -> usize {
    zstd::zstd_safe::compress_bound(CHUNK)
}

/// How many chunks an entry of `size` bytes is cut into.
pub(crate) fn count(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64)
}

/// The unpacked length of chunk `i` of an entry of `size` bytes.
pub(crate) fn len(size: u64, i: u64) -> usize {
    (size - i * CHUNK as u64).min(CHUNK as u64) as usize
}

/// The most threads that run zstd: past eight, a pack or unpack would hold more memory
/// (two chunks a worker in flight, 8 MiB each with their buffers) than it saves time on
/// a host that has other work.
const MAX_WORKERS: usize = 8;

/// How many threads run zstd: one per core, at most [`MAX_WORKERS`].
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
}

/// Compresses `data` into `out` (of [`stored_bound`] bytes): how many bytes it took.
pub(crate) fn compress(
    compressor: &mut zstd::bulk::Compressor<'_>,
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, String> {
    compressor
        .compress_to_buffer(data, out)
        .map_err(|e| format!("zstd: {e}"))
}

/// Decompresses the chunk `stored` into `out`, which it must fill exactly: one-shot into
/// a buffer of the chunk's own length, so no frame can make zstd allocate a window or
/// write past it, whatever its header claims.
pub(crate) fn decompress(
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    stored: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let n = decompressor
        .decompress_to_buffer(stored, out)
        .map_err(|e| format!("a chunk does not decompress ({e})"))?;
    if n != out.len() {
        return Err(format!("a chunk unpacks to {n} bytes, not {}", out.len()));
    }
    Ok(())
}

/// Buffers handed between threads and reused, so that a pack or unpack faults in a few
/// chunks' worth of memory rather than a fresh buffer per chunk.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    len: usize,
}

impl Pool {
    /// A pool of buffers of `len` bytes.
    pub(crate) fn new(len: usize) -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
            len,
        }
    }

    /// A buffer of the pool's length (contents unspecified).
    pub(crate) fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        reused.unwrap_or_else(|| vec![0; self.len])
    }

    /// Gives `buffer` back for reuse.
    pub(crate) fn give(&self, buffer: Vec<u8>) {
        if buffer.len() == self.len
            && let Ok(mut free) = self.free.lock()
        {
            free.push(buffer);
        }
    }
}

/// How many chunks are between reading and their result's use at once: two a worker,
/// so that each has its next one ready while the calling thread reads, hashes and
/// writes, and two more, so that one slow chunk does not stall the others.
pub(crate) fn in_flight() -> usize {
    2 * workers() + 2
}

/// Runs `work` on every job `next` yields, on [`workers`] threads, and hands each result
/// to `done` in the order of the jobs, with at most [`in_flight`] jobs between `next`
/// and `done` at once. `next` and `done` run on the calling thread. The first error (of
/// `next`, `work` or `done`) stops new jobs; those in flight are finished and dropped,
/// and it is returned.
pub(crate) fn ordered<J: Send, R: Send>(
    mut next: impl FnMut() -> Result<Option<J>, String>,
    work: impl Fn(J) -> Result<R, String> + Sync,
    mut done: impl FnMut(R) -> Result<(), String>,
) -> Result<(), String> {
    let in_flight = in_flight() as u64;
    let (job_tx, job_rx) = mpsc::channel::<(u64, J)>();
    let job_rx = Mutex::new(job_rx);
    let (result_tx, result_rx) = mpsc::channel::<(u64, Result<R, String>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers() {
            let result_tx = result_tx.clone();
            let (job_rx, work) = (&job_rx, &work);
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((i, job)) = job else { break };
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job)))
                            .unwrap_or_else(|_| Err("a worker failed (panicked)".into()));
                    if result_tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        let (mut sent, mut finished) = (0u64, 0u64);
        let mut error = None;
        let mut exhausted = false;
        let mut waiting = BTreeMap::new();
        loop {
            while !exhausted && error.is_none() && sent - finished < in_flight {
                match next() {
                    Ok(Some(job)) => {
                        if job_tx.send((sent, job)).is_err() {
                            error = Some("the workers stopped".to_string());
                            break;
                        }
                        sent += 1;
                    }
                    Ok(None) => exhausted = true,
                    Err(e) => error = Some(e),
                }
            }
            if finished == sent {
                break;
            }
            let Ok((i, result)) = result_rx.recv() else {
                error.get_or_insert_with(|| "the workers stopped".to_string());
                break;
            };
            waiting.insert(i, result);
            while let Some(result) = waiting.remove(&finished) {
                finished += 1;
                match result {
                    Ok(r) if error.is_none() => {
                        if let Err(e) = done(r) {
                            error = Some(e);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
        }
        drop(job_tx);
        error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_and_the_first_error_stops_the_jobs() {
        let mut n = 0u32;
        let mut seen = Vec::new();
        let result = ordered(
            || {
                n += 1;
                Ok((n <= 50).then_some(n))
            },
            |j| {
                std::thread::sleep(std::time::Duration::from_micros(u64::from(j % 7) * 100));
                Ok(j * 2)
            },
            |r| {
                seen.push(r);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(seen, (1..=50).map(|j| j * 2).collect::<Vec<_>>());

        let mut n = 0u32;
        let mut seen = Vec::new();
        let result = ordered(
            || {
                n += 1;
                Ok(Some(n))
            },
            |j| {
                if j == 10 {
                    Err(format!("job {j}"))
                } else {
                    Ok(j)
                }
            },
            |r| {
                seen.push(r);
                Ok(())
            },
        );
        assert_eq!(result, Err("job 10".into()));
        assert_eq!(seen, (1..10).collect::<Vec<_>>());
        assert!(n as usize <= 10 + in_flight(), "{n} jobs made");
    }

    #[test]
    fn a_chunk_that_unpacks_to_more_or_less_than_its_length_is_refused() {
        let data = vec![7u8; 1000];
        let mut out = vec![0; stored_bound()];
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        let n = compress(&mut c, &data, &mut out).unwrap();
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        let mut back = vec![0; 1000];
        decompress(&mut d, &out[..n], &mut back).unwrap();
        assert_eq!(back, data);
        assert!(decompress(&mut d, &out[..n], &mut [0; 999]).is_err());
        assert!(decompress(&mut d, &out[..n], &mut [0; 1001]).is_err());
        assert!(decompress(&mut d, &out[..n - 1], &mut back).is_err());
    }
}
