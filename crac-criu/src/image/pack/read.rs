//! Unpacking, checked before anything is placed: the header's digest, the manifest's
//! seal under this host's key, the table against the manifest (every file and segment
//! once, of the recorded size and digest), then every entry decompressed into a private
//! directory made beside the target (`mkdtemp`, mode 0700), its chunks on every core
//! (`chunks.rs`), and hashed in order as it is written; all of it is synced once
//! written, before anything is placed.
//! Only a packed file that passes all of it is placed (`place.rs`); anything else is
//! refused naming what is wrong, and the private directory removed.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::image::key::{HostKey, KeyError};
use crate::image::manifest::{FILE_NAME, Manifest, ManifestError};
use crate::image::pack::chunks::{self, CHUNK, Pool};
use crate::image::pack::format::{self, Head, Kind, PackedEntry};
use crate::image::pack::input::{self, Input};
use crate::image::seal;

/// A packed file unpacked and checked, still in its private directory.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The private directory; removed when dropped.
    pub(crate) temp: PathBuf,
    /// The image directory, complete, inside it.
    pub(crate) image: PathBuf,
    /// Each segment's unpacked file inside it, in the manifest's order; None for one
    /// whose recorded path already held a file when unpacking began (checked, not
    /// written: placing checks that file instead).
    pub(crate) segments: Vec<Option<PathBuf>>,
    pub(crate) manifest: Manifest,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.temp);
    }
}

/// Reads and checks the packed file `file` (decrypted with the age identities in
/// `identity` if it is encrypted; if `expected_key` is given, it must be its cache key),
/// and unpacks it into a private directory in
/// `beside` (the target's parent, so that placing it is a rename).
pub(crate) fn unpack(
    file: &Path,
    identity: Option<&Path>,
    expected_key: Option<&str>,
    beside: &Path,
) -> Result<Staged, String> {
    let Input { mut reader, len } = input::open(file, identity)?;
    let input = &mut reader;
    let head = format::read_head(input, len)?;
    if expected_key.is_some_and(|key| key != head.key()) {
        return Err("it was replaced while it was read; run the command again".into());
    }
    let manifest = open_manifest(&head)?;
    check_table(&head.entries, &manifest)?;

    let template = beside.join(format!(".crac-unpack-{}.XXXXXX", std::process::id()));
    let temp = nix::unistd::mkdtemp(&template)
        .map_err(|e| format!("making a private directory in {}: {e}", beside.display()))?;
    let mut staged = Staged {
        image: temp.join("image"),
        segments: vec![None; manifest.segments.len()],
        temp,
        manifest,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staged.image)
        .map_err(|e| format!("making {}: {e}", staged.image.display()))?;
    let mut targets = Vec::with_capacity(head.entries.len());
    let mut whats = Vec::with_capacity(head.entries.len());
    for entry in &head.entries {
        let (path, what) = match entry.kind {
            Kind::File => {
                let name = &staged.manifest.files[entry.index as usize].name;
                (Some(staged.image.join(name)), format!("image file {name}"))
            }
            Kind::Segment => {
                let recorded = &staged.manifest.segments[entry.index as usize].path;
                // a segment already in place (the host that took the image, another copy
                // unpacked here) is checked where it is, not written again
                let path = std::fs::symlink_metadata(recorded)
                    .is_err()
                    .then(|| staged.temp.join(format!("segment-{}", entry.index)));
                if let Some(slot) = staged.segments.get_mut(entry.index as usize) {
                    slot.clone_from(&path);
                }
                (path, format!("heap segment {}", recorded.display()))
            }
        };
        targets.push(path);
        whats.push(what);
    }
    extract_all(input, &head.entries, &targets, &whats)?;
    sync_all(&targets)?;
    write_file(&staged.image.join(FILE_NAME), &head.manifest)?;
    for dir in [&staged.image, &staged.temp] {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("syncing {}: {e}", dir.display()))?;
    }
    Ok(staged)
}

/// The manifest, once its seal is found to hold under this host's key.
fn open_manifest(head: &Head) -> Result<Manifest, String> {
    let path = Path::new(FILE_NAME);
    let text = Manifest::text(path, &head.manifest).map_err(|e| e.to_string())?;
    let key = HostKey::load().map_err(|e| match (e, seal::key_id(&text)) {
        (e @ KeyError::Missing { .. }, Some(id)) => format!("it was sealed with key {id}, and {e}"),
        (e, _) => e.to_string(),
    })?;
    Manifest::parse(path, &text, &key).map_err(|e| match e {
        ManifestError::Tampered { problem, .. } => format!("its manifest: {problem}"),
        e => format!("its manifest: {e}"),
    })
}

/// Checks that the table lists every file and segment of `manifest` exactly once, each
/// of its recorded size and digest.
pub(crate) fn check_table(entries: &[PackedEntry], manifest: &Manifest) -> Result<(), String> {
    let expected = manifest.files.len() + manifest.segments.len();
    if entries.len() != expected {
        return Err(format!(
            "its table has {} entries, and its manifest lists {expected} files and segments: \
             damaged",
            entries.len()
        ));
    }
    let mut seen = HashSet::new();
    for (number, entry) in entries.iter().enumerate() {
        let recorded = match entry.kind {
            Kind::File => manifest
                .files
                .get(entry.index as usize)
                .map(|f| (f.size, f.blake3.as_str())),
            Kind::Segment => manifest
                .segments
                .get(entry.index as usize)
                .map(|s| (s.len, s.digest.as_str())),
        };
        let Some((size, digest)) = recorded else {
            return Err(format!(
                "its entry {number} names nothing its manifest lists: damaged"
            ));
        };
        if !seen.insert((entry.kind, entry.index)) {
            return Err(format!("its entry {number} repeats another: damaged"));
        }
        if entry.size != size || blake3::Hash::from_hex(digest).ok() != Some(entry.digest.into()) {
            return Err(format!(
                "its entry {number} is not the file its manifest lists (size or digest): damaged"
            ));
        }
    }
    Ok(())
}

/// One chunk read: the entry it is of, where in it, and its stored bytes
/// (`stored[..stored_len]`), which unpack to `len` bytes.
struct Chunk {
    entry: usize,
    offset: u64,
    stored: Vec<u8>,
    stored_len: usize,
    len: usize,
}

/// One chunk unpacked: `data[..len]`.
struct Unpacked {
    entry: usize,
    data: Vec<u8>,
    len: usize,
}

/// `what` is damaged: says so, and how.
fn damaged(what: &str, problem: &str) -> String {
    format!("{what} is damaged in the packed file: {problem}")
}

/// Decompresses every entry of `entries` from `input` into a new file at its path of
/// `paths` (named `whats` in errors; an entry without a path is checked and not
/// written), chunks on every core, each checked to unpack to exactly its length and each
/// entry to exactly its size and digest. Reads exactly the
/// entries' stored bytes; writes at most their sizes. A file is open only while its
/// chunks are in flight, so that an image of many files needs no more descriptors.
fn extract_all(
    input: &mut dyn Read,
    entries: &[PackedEntry],
    paths: &[Option<PathBuf>],
    whats: &[String],
) -> Result<(), String> {
    let stored = Pool::new(chunks::stored_bound());
    let unpacked = Pool::new(CHUNK);
    let decompressors = Mutex::new(Vec::new());
    let mut reading = ChunkReader::new(entries);
    let mut hashing = Hashing::new();
    // the files made so far, and the last one's, shared with the workers writing it
    let (mut created, mut current) = (0, None);
    chunks::ordered(
        || {
            let chunk = reading.next(input, &stored, whats)?;
            // entries without chunks (empty) are made as those after them are reached
            let upto = chunk.as_ref().map_or(entries.len(), |c| c.entry + 1);
            while created < upto {
                current = match &paths[created] {
                    Some(path) => Some(Arc::new(create(path)?)),
                    None => None,
                };
                created += 1;
            }
            Ok(chunk.map(|c| (c, current.clone())))
        },
        |(chunk, file): (Chunk, Option<Arc<std::fs::File>>)| {
            let what = &whats[chunk.entry];
            let reused = decompressors.lock().ok().and_then(|mut d| d.pop());
            let mut decompressor = match reused {
                Some(d) => d,
                None => {
                    zstd::bulk::Decompressor::new().map_err(|e| format!("starting zstd: {e}"))?
                }
            };
            let mut data = unpacked.take();
            let result = chunks::decompress(
                &mut decompressor,
                &chunk.stored[..chunk.stored_len],
                &mut data[..chunk.len],
            );
            stored.give(chunk.stored);
            if let Ok(mut d) = decompressors.lock() {
                d.push(decompressor);
            }
            result.map_err(|problem| damaged(what, &problem))?;
            let Some(file) = file else {
                return Ok(Unpacked {
                    entry: chunk.entry,
                    data,
                    len: chunk.len,
                });
            };
            file.write_all_at(&data[..chunk.len], chunk.offset)
                .map_err(|e| format!("writing {what}: {e}"))?;
            // start writing it to disk now: the sync at the end then waits for little,
            // and the kernel need not throttle the writes for a pile of dirty pages
            // (measured: unpacking takes a third less time)
            // SAFETY: an open file descriptor; the call only starts writeback.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    chunk.offset as libc::off64_t,
                    chunk.len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            Ok(Unpacked {
                entry: chunk.entry,
                data,
                len: chunk.len,
            })
        },
        |chunk: Unpacked| {
            hashing.finish_before(chunk.entry, entries, whats)?;
            hashing.hasher.update(&chunk.data[..chunk.len]);
            unpacked.give(chunk.data);
            Ok(())
        },
    )?;
    hashing.finish_before(entries.len(), entries, whats)
}

/// Decompresses `entry` from `input` into `out` on this thread alone, checking it as
/// [`extract_all`] does: what the fuzz target runs.
pub(crate) fn extract(
    input: &mut impl Read,
    entry: &PackedEntry,
    out: &mut impl Write,
    what: &str,
) -> Result<(), String> {
    let entries = std::slice::from_ref(entry);
    let whats = [what.to_string()];
    let (stored, mut data) = (Pool::new(chunks::stored_bound()), vec![0; CHUNK]);
    let mut decompressor =
        zstd::bulk::Decompressor::new().map_err(|e| format!("starting zstd: {e}"))?;
    let mut reading = ChunkReader::new(entries);
    let mut hashing = Hashing::new();
    while let Some(chunk) = reading.next(input, &stored, &whats)? {
        let unpacked = &mut data[..chunk.len];
        chunks::decompress(
            &mut decompressor,
            &chunk.stored[..chunk.stored_len],
            unpacked,
        )
        .map_err(|problem| damaged(what, &problem))?;
        out.write_all(unpacked)
            .map_err(|e| format!("writing {what}: {e}"))?;
        hashing.hasher.update(unpacked);
        stored.give(chunk.stored);
    }
    hashing.finish_before(1, entries, &whats)
}

/// Reads the entries' chunks in order, each within its entry's stored bytes and the
/// bound of a chunk.
struct ChunkReader<'a> {
    entries: &'a [PackedEntry],
    /// The entry being read, and its next chunk.
    at: usize,
    chunk: u64,
    /// Its stored bytes not yet read, once it is started.
    left: Option<u64>,
}

impl<'a> ChunkReader<'a> {
    fn new(entries: &'a [PackedEntry]) -> Self {
        ChunkReader {
            entries,
            at: 0,
            chunk: 0,
            left: None,
        }
    }

    /// The next chunk; None after the last entry's last.
    fn next(
        &mut self,
        input: &mut (impl Read + ?Sized),
        buffers: &Pool,
        whats: &[String],
    ) -> Result<Option<Chunk>, String> {
        loop {
            let Some(entry) = self.entries.get(self.at) else {
                return Ok(None);
            };
            let what = &whats[self.at];
            let left = self.left.get_or_insert(entry.stored);
            if self.chunk == chunks::count(entry.size) {
                if *left != 0 {
                    return Err(damaged(
                        what,
                        &format!("{left} bytes follow its compressed data"),
                    ));
                }
                (self.at, self.chunk, self.left) = (self.at + 1, 0, None);
                continue;
            }
            if *left < 4 {
                return Err(damaged(what, "its compressed data ends early"));
            }
            let mut prefix = [0u8; 4];
            read_exact(input, &mut prefix, what)?;
            *left -= 4;
            let stored_len = u32::from_le_bytes(prefix) as usize;
            if stored_len as u64 > *left || stored_len > chunks::stored_bound() {
                return Err(damaged(
                    what,
                    &format!("a chunk says it is {stored_len} bytes, more than it may be"),
                ));
            }
            let mut stored = buffers.take();
            read_exact(input, &mut stored[..stored_len], what)?;
            *left -= stored_len as u64;
            let chunk = Chunk {
                entry: self.at,
                offset: self.chunk * CHUNK as u64,
                stored,
                stored_len,
                len: chunks::len(entry.size, self.chunk),
            };
            self.chunk += 1;
            return Ok(Some(chunk));
        }
    }
}

fn read_exact(input: &mut (impl Read + ?Sized), buf: &mut [u8], what: &str) -> Result<(), String> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("it is truncated in {what}"),
        _ => format!("reading {what}: {e}"),
    })
}

/// The entries' bytes hashed in order, each entry checked against its digest once all
/// of it is hashed.
struct Hashing {
    /// The entry being hashed.
    at: usize,
    hasher: blake3::Hasher,
}

impl Hashing {
    fn new() -> Self {
        Hashing {
            at: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    /// Checks every entry before `entry` (all of whose chunks are hashed) against its
    /// digest, and starts `entry`.
    fn finish_before(
        &mut self,
        entry: usize,
        entries: &[PackedEntry],
        whats: &[String],
    ) -> Result<(), String> {
        while self.at < entry {
            if self.hasher.finalize().as_bytes() != &entries[self.at].digest {
                return Err(damaged(&whats[self.at], "it does not match its digest"));
            }
            self.hasher.reset();
            self.at += 1;
        }
        Ok(())
    }
}

/// Syncs the files at `paths` to disk: writeback started for all at once, then each
/// waited for, one open at a time.
fn sync_all(paths: &[Option<PathBuf>]) -> Result<(), String> {
    let open = |path: &PathBuf| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| format!("syncing {}: {e}", path.display()))
    };
    for path in paths.iter().flatten() {
        let file = open(path)?;
        // SAFETY: an open file descriptor; the call only starts writeback.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    paths.iter().flatten().try_for_each(|path| {
        open(path)?
            .sync_all()
            .map_err(|e| format!("syncing {}: {e}", path.display()))
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = create(path)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn create(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pack::format::Kind;

    /// An entry of `bytes` as `crac pack` stores it, and its data.
    fn packed(bytes: &[u8]) -> (PackedEntry, Vec<u8>) {
        let mut compressor = zstd::bulk::Compressor::new(1).unwrap();
        let mut out = vec![0; chunks::stored_bound()];
        let mut data = Vec::new();
        for chunk in bytes.chunks(CHUNK) {
            let n = chunks::compress(&mut compressor, chunk, &mut out).unwrap();
            data.extend_from_slice(&(n as u32).to_le_bytes());
            data.extend_from_slice(&out[..n]);
        }
        let entry = PackedEntry {
            kind: Kind::File,
            index: 0,
            size: bytes.len() as u64,
            stored: data.len() as u64,
            digest: *blake3::hash(bytes).as_bytes(),
        };
        (entry, data)
    }

    fn extracted(entry: &PackedEntry, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        extract(&mut &data[..], entry, &mut out, "image file x").map(|()| out)
    }

    #[test]
    fn an_entry_of_several_chunks_unpacks_and_any_damage_is_refused() {
        let bytes: Vec<u8> = (0..CHUNK + 5000).map(|i| (i % 251) as u8).collect();
        let (entry, data) = packed(&bytes);
        assert_eq!(extracted(&entry, &data).unwrap(), bytes);
        assert_eq!(extracted(&packed(b"").0, b"").unwrap(), b"");

        let mut flipped = data.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x10;
        let err = extracted(&entry, &flipped).unwrap_err();
        assert!(err.contains("image file x is damaged"), "{err}");
        // a chunk claiming more than its slot, or than the entry holds
        let mut long = data.clone();
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            extracted(&entry, &long)
                .unwrap_err()
                .contains("more than it may be")
        );
        // the entry's stored length one short, or with a byte more
        let short = PackedEntry {
            stored: entry.stored - 1,
            ..entry.clone()
        };
        assert!(extracted(&short, &data).is_err());
        let longer = PackedEntry {
            stored: entry.stored + 1,
            ..entry.clone()
        };
        let err = extracted(&longer, &[&data[..], &[0]].concat()).unwrap_err();
        assert!(err.contains("follow its compressed data"), "{err}");
        // the same bytes, another digest
        let other = PackedEntry {
            digest: [0; 32],
            ..entry.clone()
        };
        let err = extracted(&other, &data).unwrap_err();
        assert!(err.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn unpacking_on_every_core_writes_each_entry_whole() {
        let dir = std::env::temp_dir().join(format!("pack-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let contents: Vec<Vec<u8>> = [3 * CHUNK + 17, 0, 100, CHUNK]
            .iter()
            .enumerate()
            .map(|(k, &len)| (0..len).map(|i| ((i * 7 + k) % 253) as u8).collect())
            .collect();
        let (mut entries, mut data) = (Vec::new(), Vec::new());
        for bytes in &contents {
            let (entry, stored) = packed(bytes);
            entries.push(entry);
            data.extend_from_slice(&stored);
        }
        let paths: Vec<Option<PathBuf>> = (0..contents.len())
            .map(|i| Some(dir.join(i.to_string())))
            .collect();
        let whats: Vec<String> = (0..contents.len()).map(|i| format!("entry {i}")).collect();
        extract_all(&mut &data[..], &entries, &paths, &whats).unwrap();
        for (path, bytes) in paths.iter().flatten().zip(&contents) {
            assert!(std::fs::read(path).unwrap() == *bytes, "{}", path.display());
        }
        // a damaged chunk of the first entry is named, whichever worker met it
        let mut bad = data.clone();
        bad[entries[0].stored as usize / 2] ^= 0x55;
        for p in paths.iter().flatten() {
            std::fs::remove_file(p).unwrap();
        }
        let err = extract_all(&mut &bad[..], &entries, &paths, &whats).unwrap_err();
        assert!(err.contains("entry 0 is damaged"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
