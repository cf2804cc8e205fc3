//! Packing: the image's sealed manifest, then every file it lists and every heap segment,
//! each compressed with zstd and checked against the manifest's digest as it is read (a
//! damaged image is refused, not packed). Written to a private file beside the output
//! and renamed over it once complete, so a failed pack leaves nothing that looks whole.

use std::io::{Read as _, Seek as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::image::manifest::{FILE_NAME, MAX_BYTES, Manifest};
use crate::image::pack::chunks::{self, CHUNK, Pool};
use crate::image::pack::format::{self, Kind, PackedEntry};
use crate::sys::fs::open_regular;

/// zstd's level by default (`crac pack --level`). Measured on the search service's image
/// (299 MB, nearly all heap segments; `zstd -b`, one core, docs/benchmarks.md): level 1
/// packs to 0.51× at 310 MB/s, level 2 to 0.46× at 270 MB/s, level 3 to 0.46× at
/// 190 MB/s; negative levels are faster but larger (`--fast=1`: 0.64× at 440 MB/s), and
/// long-distance matching finds nothing more (level 1 with a 128 MiB window: 0.51×).
/// Level 2 is the one under half the image at nearly level 1's speed, and it decompresses
/// as fast (1.2 GB/s a core, level 1 1.0).
pub const LEVEL: i32 = 2;

/// What a pack wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    /// Bytes of image files and segments read.
    pub(crate) image_bytes: u64,
    /// Bytes of the packed file.
    pub(crate) packed_bytes: u64,
}

/// Packs the image in `dir` (sealed with this host's key, undamaged) into `out`.
pub(crate) fn pack(dir: &Path, out: &Path, level: i32) -> Result<Packed, String> {
    let temp = private_sibling(out);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| format!("creating {}: {e}", temp.display()))?;
    let name = temp.display().to_string();
    let result = pack_to(dir, level, &file, &name, true).and_then(|packed| {
        file.sync_all()
            .map_err(|e| format!("writing {}: {e}", temp.display()))?;
        std::fs::rename(&temp, out)
            .map(|()| packed)
            .map_err(|e| format!("renaming to {}: {e}", out.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Packs the image in `dir` into `file`, empty and open for writing (`name` says what
/// it is in errors); not synced, nor its writeback started: a plaintext to encrypt
/// stays in memory as long as the kernel lets it.
#[cfg(feature = "encrypt")]
pub(crate) fn pack_into(
    dir: &Path,
    level: i32,
    file: &std::fs::File,
    name: &str,
) -> Result<Packed, String> {
    pack_to(dir, level, file, name, false)
}

/// `pack_into`, starting `file`'s writeback as it is written if `writeback`, so that
/// syncing it after waits for little.
fn pack_to(
    dir: &Path,
    level: i32,
    file: &std::fs::File,
    name: &str,
    writeback: bool,
) -> Result<Packed, String> {
    let text = manifest_bytes(dir)?;
    let manifest = Manifest::read(dir).map_err(|e| e.to_string())?;
    if manifest_bytes(dir)? != text {
        return Err(format!(
            "{}: the image changed while it was read; pack it again once no checkpoint \
             writes it",
            dir.display()
        ));
    }
    let sources = sources(dir, &manifest);
    let mut entries: Vec<PackedEntry> = sources
        .iter()
        .map(|s| PackedEntry {
            kind: s.kind,
            index: s.index,
            size: s.size,
            stored: 0,
            digest: [0; 32],
        })
        .collect();
    let head_len = format::encode_head(&text, &entries).len() as u64;

    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| format!("writing {name}: {e}");
    writer
        .seek(std::io::SeekFrom::Start(head_len))
        .map_err(io)?;
    let started = writeback.then_some(file);
    compress_all(&sources, level, &mut entries, &mut writer, started)?;
    writer.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    writer
        .write_all(&format::encode_head(&text, &entries))
        .map_err(io)?;
    writer.flush().map_err(io)?;
    Ok(Packed {
        image_bytes: sources.iter().map(|s| s.size).sum(),
        packed_bytes: head_len + entries.iter().map(|e| e.stored).sum::<u64>(),
    })
}

/// The manifest's bytes as they are in `dir`.
fn manifest_bytes(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join(FILE_NAME);
    let mut bytes = Vec::new();
    open_regular(&path)
        .map_err(|e| e.of(&path.display().to_string()))?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(bytes)
}

/// A file to pack: where it is, and what the manifest says of it.
struct Source {
    kind: Kind,
    index: u32,
    path: PathBuf,
    size: u64,
    digest: String,
}

fn sources(dir: &Path, manifest: &Manifest) -> Vec<Source> {
    let files = manifest.files.iter().enumerate().map(|(i, f)| Source {
        kind: Kind::File,
        index: i as u32,
        path: dir.join(&f.name),
        size: f.size,
        digest: f.blake3.clone(),
    });
    let segments = manifest.segments.iter().enumerate().map(|(i, s)| Source {
        kind: Kind::Segment,
        index: i as u32,
        path: s.path.clone(),
        size: s.len,
        digest: s.digest.clone(),
    });
    files.chain(segments).collect()
}

/// One chunk to compress: the entry it is of and its bytes (`data[..len]`).
struct RawChunk {
    entry: usize,
    data: Vec<u8>,
    len: usize,
}

/// One chunk compressed: `out[..len]`.
struct Compressed {
    entry: usize,
    out: Vec<u8>,
    len: usize,
}

/// Writes every source's chunks compressed to `out` on every core (starting the
/// writeback of `file`, which `out` writes, if given), and records each entry's stored
/// length and digest in `entries`, once both its size and its digest are found to be
/// the manifest's.
fn compress_all(
    sources: &[Source],
    level: i32,
    entries: &mut [PackedEntry],
    out: &mut impl Write,
    file: Option<&std::fs::File>,
) -> Result<(), String> {
    let inputs = Pool::new(CHUNK);
    let outputs = Pool::new(chunks::stored_bound());
    let compressors = Mutex::new(Vec::new());
    let mut reading = Reading {
        sources,
        at: 0,
        file: None,
        hasher: blake3::Hasher::new(),
        read: 0,
        digests: Vec::with_capacity(sources.len()),
    };
    let mut stored = vec![0u64; sources.len()];
    chunks::ordered(
        || reading.next(&inputs),
        |job: RawChunk| {
            let reused = compressors.lock().ok().and_then(|mut c| c.pop());
            let mut compressor = match reused {
                Some(c) => c,
                None => {
                    zstd::bulk::Compressor::new(level).map_err(|e| format!("starting zstd: {e}"))?
                }
            };
            let mut out = outputs.take();
            let len = chunks::compress(&mut compressor, &job.data[..job.len], &mut out);
            inputs.give(job.data);
            if let Ok(mut c) = compressors.lock() {
                c.push(compressor);
            }
            let len =
                len.map_err(|e| format!("packing {}: {e}", sources[job.entry].path.display()))?;
            Ok(Compressed {
                entry: job.entry,
                out,
                len,
            })
        },
        |chunk: Compressed| {
            let io = |e: std::io::Error| format!("writing the packed file: {e}");
            out.write_all(&(chunk.len as u32).to_le_bytes())
                .map_err(io)?;
            out.write_all(&chunk.out[..chunk.len]).map_err(io)?;
            stored[chunk.entry] += 4 + chunk.len as u64;
            if let Some(file) = file {
                // start writing what is written to disk: the sync at the end waits for less
                // SAFETY: an open file descriptor; the call only starts writeback.
                unsafe {
                    libc::sync_file_range(
                        std::os::fd::AsRawFd::as_raw_fd(file),
                        0,
                        0,
                        libc::SYNC_FILE_RANGE_WRITE,
                    )
                };
            }
            outputs.give(chunk.out);
            Ok(())
        },
    )?;
    for ((entry, stored), digest) in entries.iter_mut().zip(stored).zip(reading.digests) {
        (entry.stored, entry.digest) = (stored, digest);
    }
    Ok(())
}

/// The sources read in order, chunk by chunk, each hashed as it is read.
struct Reading<'a> {
    sources: &'a [Source],
    /// The source being read.
    at: usize,
    file: Option<std::fs::File>,
    hasher: blake3::Hasher,
    /// Bytes of it read so far.
    read: u64,
    /// The digests of the sources read to their end.
    digests: Vec<[u8; 32]>,
}

impl Reading<'_> {
    /// The next chunk to compress; None after the last source's last.
    fn next(&mut self, buffers: &Pool) -> Result<Option<RawChunk>, String> {
        loop {
            let Some(source) = self.sources.get(self.at) else {
                return Ok(None);
            };
            let name = source.path.display();
            let file = match &mut self.file {
                Some(file) => file,
                None => {
                    self.hasher.reset();
                    self.read = 0;
                    self.file
                        .insert(open_regular(&source.path).map_err(|e| e.of(&name.to_string()))?)
                }
            };
            let len = chunks::len(source.size, self.read / CHUNK as u64);
            if self.read == source.size {
                // the whole recorded size read: the file must end here
                let longer = file
                    .read(&mut [0])
                    .map_err(|e| format!("reading {name}: {e}"))?
                    > 0;
                let digest = self.hasher.finalize();
                if longer || digest.to_hex().as_str() != source.digest {
                    return Err(changed(
                        source,
                        if longer { "longer" } else { "other bytes" },
                    ));
                }
                self.digests.push(*digest.as_bytes());
                self.file = None;
                self.at += 1;
                continue;
            }
            let mut data = buffers.take();
            file.read_exact(&mut data[..len])
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => changed(source, "shorter"),
                    _ => format!("reading {name}: {e}"),
                })?;
            self.hasher.update(&data[..len]);
            self.read += len as u64;
            return Ok(Some(RawChunk {
                entry: self.at,
                data,
                len,
            }));
        }
    }
}

/// Why `source` is refused: it is `how` than its manifest says.
fn changed(source: &Source, how: &str) -> String {
    format!(
        "{} is not what the image's manifest says ({how}: the manifest says {} bytes, blake3 \
         {}…): the image was damaged or changed after the dump; take a new checkpoint",
        source.path.display(),
        source.size,
        source.digest.get(..12).unwrap_or(&source.digest)
    )
}

/// `.NAME.packing-PID` beside `out`.
fn private_sibling(out: &Path) -> PathBuf {
    crate::image::sibling(out, &format!(".packing-{}", std::process::id()), true)
}
