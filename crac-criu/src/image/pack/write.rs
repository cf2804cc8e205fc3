//! Packing: the image's sealed manifest, then every file it lists and every heap segment,
//! each compressed with zstd and checked against the manifest's digest as it is read (a
//! damaged image is refused, not packed). Written to a private file beside the output
//! and renamed over it once complete, so a failed pack leaves nothing that looks whole.

use std::io::{Read as _, Seek as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::image::manifest::{FILE_NAME, MAX_BYTES, Manifest};
use crate::image::pack::format::{self, Kind, PackedEntry};
use crate::sys::fs::open_regular;

/// zstd's level by default (`crac pack --level`): measured on the search service's image
/// (docs/benchmarks.md), level 1 packs three times as fast as level 3, for a file 12%
/// larger.
pub const LEVEL: i32 = 1;
/// Entries smaller than this are compressed on the calling thread alone: zstd's workers
/// cost more than they save on a few KB.
const MULTITHREADED_FROM: u64 = 1 << 20;

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
    let result = pack_into(dir, level, &file, &temp.display().to_string()).and_then(|packed| {
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
/// it is in errors); not synced.
pub(crate) fn pack_into(
    dir: &Path,
    level: i32,
    file: &std::fs::File,
    name: &str,
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
    for (source, entry) in sources.iter().zip(&mut entries) {
        (entry.stored, entry.digest) = compress(source, level, &mut writer)?;
    }
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

/// Writes `source` compressed to `out`: its stored length and digest, once both its size
/// and its digest are found to be the manifest's.
fn compress(source: &Source, level: i32, out: &mut impl Write) -> Result<(u64, [u8; 32]), String> {
    let name = source.path.display();
    let mut input = open_regular(&source.path).map_err(|e| e.of(&name.to_string()))?;
    let mut counted = Counted {
        inner: out,
        bytes: 0,
    };
    let mut encoder = zstd::stream::write::Encoder::new(&mut counted, level)
        .map_err(|e| format!("starting zstd: {e}"))?;
    if source.size >= MULTITHREADED_FROM {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        encoder
            .multithread(workers)
            .map_err(|e| format!("starting zstd's workers: {e}"))?;
    }
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; source.size.clamp(4096, 1 << 20) as usize];
    let mut read = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading {name}: {e}")),
        };
        read += n as u64;
        hasher.update(&buffer[..n]);
        encoder
            .write_all(&buffer[..n])
            .map_err(|e| format!("packing {name}: {e}"))?;
    }
    encoder
        .finish()
        .map_err(|e| format!("packing {name}: {e}"))?;
    let digest = hasher.finalize();
    if read != source.size || digest.to_hex().as_str() != source.digest {
        return Err(format!(
            "{name} is not what the image's manifest says ({read} bytes, blake3 {}…; the \
             manifest says {} bytes, {}…): the image was damaged or changed after the dump; \
             take a new checkpoint",
            &digest.to_hex()[..12],
            source.size,
            source.digest.get(..12).unwrap_or(&source.digest)
        ));
    }
    Ok((counted.bytes, *digest.as_bytes()))
}

/// A writer that counts what passes.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `.NAME.packing-PID` beside `out`.
fn private_sibling(out: &Path) -> PathBuf {
    crate::image::sibling(out, &format!(".packing-{}", std::process::id()), true)
}
