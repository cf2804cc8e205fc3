//! Packed images: one file holding an image's sealed manifest, every file of its
//! directory and its heap segments, compressed, so that an image travels as one thing
//! (`crac pack`, `crac unpack`). The layout is `format.rs`'s; packing is `write.rs`'s;
//! unpacking checks everything against the sealed manifest in a private directory
//! (`read.rs`, from the file or its decryption: `input.rs`) before placing anything
//! (`place.rs`). `encrypt.rs` encrypts with age; `cache.rs` is the image cache
//! `crac restore FILE` restores from; `describe.rs` says what a packed file holds and
//! needs of a host from its head alone (`crac inspect FILE`, `crac doctor FILE`).

pub(crate) mod cache;
mod chunks;
pub(crate) mod describe;
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
/// `recipients`. The plaintext packed file exists only as an unnamed file (`O_TMPFILE`
/// with `O_EXCL`: it can never be given a name) in the image's own directory, on the
/// file system that already holds the image in plaintext — or, where that directory is
/// read-only, in `out`'s — and it is gone when this process ends, however it ends. Only
/// ciphertext is written with a name.
#[cfg(feature = "encrypt")]
pub(crate) fn pack_encrypted(
    dir: &Path,
    out: &Path,
    level: i32,
    recipients: &Path,
) -> Result<Packed, String> {
    use std::io::Seek as _;

    let recipients = encrypt::Recipients::read(recipients)?;
    let mut plain = unnamed_file(dir).or_else(|first| {
        unnamed_file(directory_of(out).unwrap_or(Path::new("."))).map_err(|_| first)
    })?;
    let packed = write::pack_into(dir, level, &plain, "the unnamed plaintext pack")?;
    plain
        .rewind()
        .map_err(|e| format!("reading the unnamed plaintext pack: {e}"))?;
    let temp = crate::image::sibling(out, &format!(".encrypting-{}", std::process::id()), true);
    let result = recipients.encrypt(&mut plain, &temp).and_then(|()| {
        std::fs::rename(&temp, out).map_err(|e| format!("renaming to {}: {e}", out.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    Ok(Packed {
        packed_bytes: std::fs::metadata(out).map_or(packed.packed_bytes, |m| m.len()),
        ..packed
    })
}

/// A new file without a name in `dir` (`O_TMPFILE`; `O_EXCL`: never linked into the file
/// system later), mode 0600, open for reading and writing; its blocks are freed when it
/// is closed.
#[cfg(feature = "encrypt")]
fn unnamed_file(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_EXCL)
        .open(dir)
        .map_err(|e| {
            format!(
                "making an unnamed file in {} to pack into before encrypting: {e} (the \
                 image's directory or the output's must be writable, on a file system with \
                 O_TMPFILE: ext4, xfs, btrfs, tmpfs)",
                dir.display()
            )
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
    let Some(parent) = directory_of(dir) else {
        return Err(format!("{} cannot be made", dir.display()));
    };
    if !parent.is_dir() {
        return Err(format!(
            "{} does not exist: make it first, the image is unpacked into it",
            parent.display()
        ));
    }
    let staged = read::unpack(file, identity, expected_key, parent)?;
    place::place(&staged, dir)?;
    // Every byte was just hashed against the sealed manifest, as publishing does: the
    // first restore need not hash the page data again.
    crate::image::verified_pages::record(dir, &staged.manifest);
    let m = &staged.manifest;
    Ok(m.files.iter().map(|f| f.size).sum::<u64>() + m.segments.iter().map(|s| s.len).sum::<u64>())
}

/// The directory `path` is in: `.` for a bare name; `None` for `/`.
fn directory_of(path: &Path) -> Option<&Path> {
    path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    })
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
