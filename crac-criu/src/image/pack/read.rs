//! Unpacking, checked before anything is placed: the header's digest, the manifest's
//! seal under this host's key, the table against the manifest (every file and segment
//! once, of the recorded size and digest), then every entry decompressed into a private
//! directory made beside the target (`mkdtemp`, mode 0700) and hashed as it is written.
//! Only a packed file that passes all of it is placed (`place.rs`); anything else is
//! refused naming what is wrong, and the private directory removed.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::image::key::{HostKey, KeyError};
use crate::image::manifest::{FILE_NAME, Manifest, ManifestError};
use crate::image::pack::format::{self, Head, Kind, PackedEntry};
use crate::image::pack::input::{self, Input};
use crate::image::seal;

/// The most memory zstd may use for one entry's window: 2^27 bytes, zstd's own default
/// limit, which `crac pack` never exceeds (levels 1–19 without long mode).
const WINDOW_LOG_MAX: u32 = 27;

/// A packed file unpacked and checked, still in its private directory.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The private directory; removed when dropped.
    pub(crate) temp: PathBuf,
    /// The image directory, complete, inside it.
    pub(crate) image: PathBuf,
    /// Each segment's unpacked file inside it, in the manifest's order.
    pub(crate) segments: Vec<PathBuf>,
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
        segments: Vec::new(),
        temp,
        manifest,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staged.image)
        .map_err(|e| format!("making {}: {e}", staged.image.display()))?;
    for entry in &head.entries {
        let (path, what) = match entry.kind {
            Kind::File => {
                let name = &staged.manifest.files[entry.index as usize].name;
                (staged.image.join(name), format!("image file {name}"))
            }
            Kind::Segment => {
                let recorded = &staged.manifest.segments[entry.index as usize].path;
                let path = staged.temp.join(format!("segment-{}", entry.index));
                (path, format!("heap segment {}", recorded.display()))
            }
        };
        write_entry(input, entry, &path, &what)?;
    }
    staged.segments = (0..staged.manifest.segments.len())
        .map(|i| staged.temp.join(format!("segment-{i}")))
        .collect();
    write_file(&staged.image.join(FILE_NAME), &head.manifest)?;
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

/// Decompresses `entry` from `input` into `out`, checking that it is exactly its size
/// and digest: reads exactly its stored bytes, writes at most its size.
pub(crate) fn extract(
    input: &mut impl Read,
    entry: &PackedEntry,
    out: &mut impl Write,
    what: &str,
) -> Result<(), String> {
    let damaged = |problem: String| format!("{what} is damaged in the packed file: {problem}");
    let mut decoder = zstd::stream::read::Decoder::new(input.take(entry.stored))
        .map_err(|e| format!("starting zstd: {e}"))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| format!("starting zstd: {e}"))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; entry.size.clamp(4096, 1 << 20) as usize];
    let mut written = 0u64;
    loop {
        let n = match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(e.to_string())),
        };
        written += n as u64;
        if written > entry.size {
            return Err(damaged(format!(
                "it unpacks to more than its {} bytes",
                entry.size
            )));
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(|e| format!("writing {what}: {e}"))?;
    }
    let rest = std::io::copy(&mut decoder.finish(), &mut std::io::sink())
        .map_err(|e| damaged(e.to_string()))?;
    if rest != 0 {
        return Err(damaged(format!("{rest} bytes follow its compressed data")));
    }
    if written != entry.size {
        return Err(damaged(format!(
            "it unpacks to {written} bytes, not {}",
            entry.size
        )));
    }
    if hasher.finalize().as_bytes() != &entry.digest {
        return Err(damaged("it does not match its digest".into()));
    }
    Ok(())
}

/// Unpacks `entry` into a new file at `path`, synced.
fn write_entry(
    input: &mut impl Read,
    entry: &PackedEntry,
    path: &Path,
    what: &str,
) -> Result<(), String> {
    let file = create(path)?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, &file);
    extract(input, entry, &mut writer, what)?;
    writer
        .flush()
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {what}: {e}"))
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
