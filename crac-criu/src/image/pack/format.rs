//! The packed file's layout, little-endian throughout:
//!
//! | offset | bytes | what |
//! |---|---|---|
//! | 0 | 8 | magic `CRACPACK` |
//! | 8 | 2 | format version, 2 |
//! | 10 | 2 | flags, 0 (none defined) |
//! | 12 | 4 | M, the manifest's length (at most the manifest's own bound, 4 MiB) |
//! | 16 | 4 | N, the number of entries (at most [`MAX_ENTRIES`]) |
//! | 20 | 32 | BLAKE3 of bytes 0–19, the manifest and the entry table: the header's digest |
//! | 52 | M | the image's sealed manifest, as in its directory |
//! | 52+M | 54·N | the entry table |
//! | … | | each entry's data, in table order, nothing after the last |
//!
//! An entry: kind (1 byte: 0 an image file, 1 a heap segment), codec (1 byte: 1 zstd
//! chunks),
//! index (4 bytes: which `file` or `segment` line of the manifest, from 0), size (8: its
//! bytes unpacked), stored (8: its bytes in the packed file), digest (32: BLAKE3 of its
//! bytes unpacked). No entry carries a name or a path: where an entry goes is what the
//! sealed manifest says for its index, so a packed file cannot name a place of its own.
//!
//! An entry's data is its bytes cut into chunks of [`CHUNK`] bytes (the last one
//! shorter; none for an empty entry), each stored as its length (4 bytes) and then one
//! zstd frame of that length which unpacks to exactly the chunk's bytes. Chunks are
//! independent, so they are compressed and decompressed on every core at once
//! (`chunks.rs`), and a chunk's stored length is at most zstd's bound for [`CHUNK`]
//! bytes. Version 1 stored each entry as one zstd stream, which only one core could
//! decompress.
//!
//! Everything here is bounded before it is read: the manifest and the table by their
//! fixed maxima, each entry's data by its `stored` length and its output by its `size`,
//! each chunk by its slot.

use std::io::Read;

use crate::image::manifest::MAX_BYTES;

/// The first bytes of every packed image.
pub(crate) const MAGIC: &[u8; 8] = b"CRACPACK";
/// The one format version this build reads and writes.
pub(crate) const VERSION: u16 = 2;
/// Bytes before the manifest.
pub(crate) const HEADER_LEN: u64 = 52;
/// Bytes of one entry in the table.
pub(crate) const ENTRY_LEN: u64 = 54;
/// The most entries a packed file may hold: a manifest of [`MAX_BYTES`] lists fewer.
pub(crate) const MAX_ENTRIES: u32 = 100_000;
/// The codec of every entry this version writes: zstd, in chunks.
pub(crate) const ZSTD: u8 = 1;
/// Bytes of an entry in each of its chunks (but its last): 4 MiB, small enough that a
/// 64 MiB heap segment keeps both cores busy and few are in memory at once, large enough
/// that zstd packs it within 0.2% of one stream (measured on the search service's image
/// at level 2: 0.460× against 0.459×).
pub(crate) const CHUNK: usize = 4 << 20;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A file of the image directory, `file` line `index` of the manifest.
    File,
    /// A heap segment, `segment` line `index` of the manifest.
    Segment,
}

/// One entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedEntry {
    pub(crate) kind: Kind,
    pub(crate) index: u32,
    /// Bytes once unpacked.
    pub(crate) size: u64,
    /// Bytes in the packed file.
    pub(crate) stored: u64,
    /// BLAKE3 of the bytes unpacked.
    pub(crate) digest: [u8; 32],
}

/// The header, the manifest and the table, as read.
#[derive(Debug)]
pub(crate) struct Head {
    /// The manifest's bytes, not yet checked.
    pub(crate) manifest: Vec<u8>,
    pub(crate) entries: Vec<PackedEntry>,
    /// The header's digest, found to match.
    pub(crate) digest: blake3::Hash,
}

impl Head {
    /// What names this packed image in the image cache: its header's digest (which
    /// covers every entry's digest), 32 hex digits.
    pub(crate) fn key(&self) -> String {
        self.digest.to_hex()[..32].to_string()
    }
}

impl PackedEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            Kind::File => 0,
            Kind::Segment => 1,
        });
        out.push(ZSTD);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.stored.to_le_bytes());
        out.extend_from_slice(&self.digest);
    }

    fn decode(bytes: &[u8], number: usize) -> Result<PackedEntry, String> {
        let kind = match bytes[0] {
            0 => Kind::File,
            1 => Kind::Segment,
            other => return Err(format!("entry {number} is of an unknown kind ({other})")),
        };
        if bytes[1] != ZSTD {
            return Err(format!(
                "entry {number} uses an unknown codec ({}): packed by a newer crac?",
                bytes[1]
            ));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Ok(PackedEntry {
            kind,
            index: u32::from_le_bytes(bytes[2..6].try_into().unwrap_or([0; 4])),
            size: u64_at(6),
            stored: u64_at(14),
            digest: bytes[22..54].try_into().unwrap_or([0; 32]),
        })
    }
}

/// The header, manifest and table of a packed file: what [`read_head`] reads back.
pub(crate) fn encode_head(manifest: &[u8], entries: &[PackedEntry]) -> Vec<u8> {
    let mut fixed = Vec::with_capacity(20);
    fixed.extend_from_slice(MAGIC);
    fixed.extend_from_slice(&VERSION.to_le_bytes());
    fixed.extend_from_slice(&0u16.to_le_bytes());
    fixed.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    fixed.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut table = Vec::with_capacity(entries.len() * ENTRY_LEN as usize);
    for entry in entries {
        entry.encode(&mut table);
    }
    let digest = head_digest(&fixed, manifest, &table);
    [&fixed[..], digest.as_bytes(), manifest, &table].concat()
}

fn head_digest(fixed: &[u8], manifest: &[u8], table: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(fixed).update(manifest).update(table);
    hasher.finalize()
}

/// Reads the header, manifest and table from the start of a packed file of `len` bytes,
/// and checks that they are whole and that the entries' data fills the rest exactly.
/// Never reads more than the bounds allow, whatever the bytes say.
pub(crate) fn read_head(input: &mut impl Read, len: u64) -> Result<Head, String> {
    let mut fixed = Vec::with_capacity(20);
    input
        .take(20)
        .read_to_end(&mut fixed)
        .map_err(|e| format!("reading its header: {e}"))?;
    if !fixed.starts_with(MAGIC) {
        return Err("it is not a packed crac image (no CRACPACK at its start)".into());
    }
    if fixed.len() < 20 {
        return Err("it is truncated in its header".into());
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version != VERSION {
        return Err(format!(
            "it is of packed format version {version}, and this crac reads version {VERSION}: \
             unpack it with the crac that packed it"
        ));
    }
    let flags = u16::from_le_bytes([fixed[10], fixed[11]]);
    if flags != 0 {
        return Err(format!("its header has unknown flags ({flags:#x})"));
    }
    let manifest_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap_or([0; 4]));
    let count = u32::from_le_bytes(fixed[16..20].try_into().unwrap_or([0; 4]));
    if u64::from(manifest_len) > MAX_BYTES {
        return Err(format!(
            "its header says the manifest is {manifest_len} bytes, more than a manifest may \
             hold ({MAX_BYTES}): damaged"
        ));
    }
    if count > MAX_ENTRIES {
        return Err(format!(
            "its header says it holds {count} entries, more than {MAX_ENTRIES}: damaged"
        ));
    }
    let data_offset = HEADER_LEN + u64::from(manifest_len) + u64::from(count) * ENTRY_LEN;
    if len < data_offset {
        return Err(format!(
            "it is truncated: {len} bytes, less than its header and table ({data_offset})"
        ));
    }
    let mut digest = [0u8; 32];
    read_exact(input, &mut digest, "its header")?;
    let mut manifest = vec![0; manifest_len as usize];
    read_exact(input, &mut manifest, "its manifest")?;
    let mut table = vec![0; count as usize * ENTRY_LEN as usize];
    read_exact(input, &mut table, "its entry table")?;
    if head_digest(&fixed, &manifest, &table).as_bytes() != &digest {
        return Err(
            "its header, manifest or entry table is damaged (they do not match the header's \
             digest)"
                .into(),
        );
    }
    let entries = table
        .chunks_exact(ENTRY_LEN as usize)
        .enumerate()
        .map(|(i, bytes)| PackedEntry::decode(bytes, i))
        .collect::<Result<Vec<_>, _>>()?;
    let data = entries
        .iter()
        .try_fold(0u64, |sum, e| sum.checked_add(e.stored))
        .and_then(|sum| sum.checked_add(data_offset))
        .ok_or("its entry table is damaged (the entries' lengths overflow)")?;
    if len < data {
        return Err(format!(
            "it is truncated: {len} bytes, and its table says {data}; copy it again"
        ));
    }
    if len > data {
        return Err(format!(
            "it has {} bytes after its last entry: damaged, or not written by crac pack",
            len - data
        ));
    }
    Ok(Head {
        manifest,
        entries,
        digest: digest.into(),
    })
}

/// `bytes` with its header's digest made to match, where its lengths allow: for the
/// fuzzer, which could never forge one, to reach the table and the entries.
pub(crate) fn with_head_digest_fixed(bytes: &[u8]) -> Vec<u8> {
    let mut fixed = bytes.to_vec();
    let field = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if let (Some(m), Some(n)) = (field(12), field(16)) {
        let manifest_end = HEADER_LEN as usize + m as usize;
        let table_end = manifest_end + n as usize * ENTRY_LEN as usize;
        if u64::from(m) <= MAX_BYTES && n <= MAX_ENTRIES && table_end <= bytes.len() {
            let digest = head_digest(
                &bytes[..20],
                &bytes[HEADER_LEN as usize..manifest_end],
                &bytes[manifest_end..table_end],
            );
            fixed[20..52].copy_from_slice(digest.as_bytes());
        }
    }
    fixed
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("it is truncated in {what}"),
        _ => format!("reading {what}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u32, stored: u64) -> PackedEntry {
        PackedEntry {
            kind: Kind::File,
            index,
            size: 10,
            stored,
            digest: [7; 32],
        }
    }

    fn packed() -> Vec<u8> {
        let mut bytes = encode_head(b"format crac-image 3\n", &[entry(0, 3), entry(1, 2)]);
        bytes.extend_from_slice(b"abcde");
        bytes
    }

    fn read(bytes: &[u8]) -> Result<Head, String> {
        read_head(&mut &bytes[..], bytes.len() as u64)
    }

    #[test]
    fn a_head_reads_back_as_written() {
        let head = read(&packed()).unwrap();
        assert_eq!(head.manifest, b"format crac-image 3\n");
        assert_eq!(head.entries, vec![entry(0, 3), entry(1, 2)]);
    }

    #[test]
    fn every_damage_to_the_head_is_refused_by_name() {
        let good = packed();
        let data_offset = good.len() - 5;
        for at in 0..data_offset {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(read(&bad).is_err(), "byte {at} changed");
        }
        let err = read(&good[..good.len() - 1]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = read(&[&good[..], b"x"].concat()).unwrap_err();
        assert!(err.contains("after its last entry"), "{err}");
        let err = read(b"PK\x03\x04 not ours at all").unwrap_err();
        assert!(err.contains("not a packed crac image"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_or_read_within_bounds(bytes: Vec<u8>, tail: Vec<u8>) {
            let mut input = packed();
            input.truncate(input.len().min(bytes.len()));
            input.extend_from_slice(&tail);
            if let Ok(head) = read(&input) {
                proptest::prop_assert!(head.manifest.len() as u64 <= MAX_BYTES);
                let stored: u64 = head.entries.iter().map(|e| e.stored).sum();
                proptest::prop_assert!(stored <= input.len() as u64);
            }
            let _ = read(&bytes);
        }
    }
}
