//! Packed images: one file holding an image's sealed manifest, every file of its
//! directory and its heap segments, compressed, so that an image travels as one thing
//! (`crac pack`, `crac unpack`). The layout is `format.rs`'s; packing is `write.rs`'s;
//! unpacking checks everything against the sealed manifest in a private directory
//! (`read.rs`, from the file or its decryption: `input.rs`) before placing anything
//! (`place.rs`). `encrypt.rs` encrypts with age; `cache.rs` is the image cache
//! `crac restore FILE` restores from.

pub(crate) mod cache;
mod chunks;
#[cfg(feature = "encrypt")]
mod encrypt;
mod format;
mod input;
mod place;
mod read;
mod write;

use std::path::Path;

pub use write::LEVEL;
pub(crate) use write::Packed;

/// Packs the image in `dir` into the file `out` (replaced if it exists).
pub(crate) fn pack(dir: &Path, out: &Path, level: i32) -> Result<Packed, String> {
    write::pack(dir, out, level)
}

/// Packs the image in `dir` into `out` encrypted with age to the public keys in
/// `recipients`: packed first into a private file beside `out`, removed once encrypted.
#[cfg(feature = "encrypt")]
pub(crate) fn pack_encrypted(
    dir: &Path,
    out: &Path,
    level: i32,
    recipients: &Path,
) -> Result<Packed, String> {
    let plain = crate::image::sibling(out, &format!(".plain-{}", std::process::id()), true);
    let temp = crate::image::sibling(out, &format!(".encrypting-{}", std::process::id()), true);
    let result = write::pack(dir, &plain, level)
        .and_then(|packed| encrypt::encrypt(&plain, &temp, recipients).map(|()| packed))
        .and_then(|packed| {
            std::fs::rename(&temp, out)
                .map(|()| packed)
                .map_err(|e| format!("renaming to {}: {e}", out.display()))
        });
    let _ = std::fs::remove_file(&plain);
    let _ = std::fs::remove_file(&temp);
    result.map(|packed| Packed {
        packed_bytes: std::fs::metadata(out).map_or(packed.packed_bytes, |m| m.len()),
        ..packed
    })
}

/// Unpacks the packed image `file` (decrypted with the age identities in `identity`, or
/// `CRAC_PACK_IDENTITY`'s, if it is encrypted; of the cache key `expected_key` if given)
/// to the directory `dir` (which must be absent or empty,
/// in an existing directory) and its heap segments to the paths its manifest records;
/// nothing is placed unless all of it is found intact and sealed with this host's key.
/// Returns the unpacked image's bytes.
pub(crate) fn unpack(
    file: &Path,
    identity: Option<&Path>,
    expected_key: Option<&str>,
    dir: &Path,
) -> Result<u64, String> {
    if dir.file_name().is_none() {
        return Err(format!("{} cannot be an image directory", dir.display()));
    }
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(format!("{} cannot be made", dir.display())),
    };
    if !parent.is_dir() {
        return Err(format!(
            "{} does not exist: make it first, the image is unpacked into it",
            parent.display()
        ));
    }
    let staged = read::unpack(file, identity, expected_key, parent)?;
    place::place(&staged, dir)?;
    let m = &staged.manifest;
    Ok(m.files.iter().map(|f| f.size).sum::<u64>() + m.segments.iter().map(|s| s.len).sum::<u64>())
}

/// What the fuzz target runs: reads `bytes` as a packed file without its seal checked
/// and with its header's digest made to match (the fuzzer could forge neither), and
/// unpacks every entry into nothing. Panics if it left bytes unread.
pub(crate) fn check_for_fuzzing(bytes: &[u8]) -> Result<u64, String> {
    let bytes = format::with_head_digest_fixed(bytes);
    let mut input = &bytes[..];
    let head = format::read_head(&mut input, bytes.len() as u64)?;
    let path = Path::new("crac-manifest");
    let text =
        crate::image::manifest::Manifest::text(path, &head.manifest).map_err(|e| e.to_string())?;
    let body = text
        .rsplit_once("manifest-seal ")
        .map_or(text.as_str(), |(b, _)| b);
    let manifest =
        crate::image::manifest::Manifest::parse_entries(path, body).map_err(|e| e.to_string())?;
    read::check_table(&head.entries, &manifest)?;
    let mut total = 0;
    for entry in &head.entries {
        read::extract(&mut input, entry, &mut std::io::sink(), "entry")?;
        total += entry.size;
    }
    assert!(input.is_empty(), "entries left bytes unread");
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::format::{Kind, PackedEntry, encode_head};

    /// A packed file of one small image file, its manifest unsealed: the fuzz target's seed
    /// (`fuzz/seeds/unpack/small`).
    fn small() -> Vec<u8> {
        let contents = b"core of a process".repeat(10);
        let frame = zstd::encode_all(&contents[..], 1).unwrap();
        // one chunk: its length, then its zstd frame
        let data = [&(frame.len() as u32).to_le_bytes()[..], &frame].concat();
        let digest = blake3::hash(&contents);
        let manifest = format!(
            "format crac-image 3\ncreated 1 0\nexecutable /bin/true\nexecutable-sha256 00\n\
             executable-stat 1 1 1 1\nkernel 6\ncpu-flags fpu\ncriu-version 4\npid 2\n\
             waiter-tid 2\ntids 2\npid-namespace private\nresident-bytes 1\n\
             file {} {} core-2.img\nmanifest-seal 0 0\n",
            contents.len(),
            digest.to_hex()
        );
        let entry = PackedEntry {
            kind: Kind::File,
            index: 0,
            size: contents.len() as u64,
            stored: data.len() as u64,
            digest: *digest.as_bytes(),
        };
        [encode_head(manifest.as_bytes(), &[entry]), data].concat()
    }

    #[test]
    fn the_fuzz_entry_reads_a_whole_packed_file_and_refuses_its_damage() {
        let good = small();
        // fuzz/seeds/unpack/small is this file
        assert_eq!(super::check_for_fuzzing(&good), Ok(170));
        for at in 52..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            let _ = super::check_for_fuzzing(&bad);
        }
        let last = good.len() - 3;
        let mut bad = good.clone();
        bad[last] ^= 0x10;
        assert!(super::check_for_fuzzing(&bad).is_err());
    }
}
