//! The host's image key: 32 random bytes, in hex, in a file only its user can read. The
//! dump's action script seals every manifest with it (`seal.rs`) and every validation
//! checks the seal, so that whoever can write an image but cannot read the key cannot
//! forge one. Created on first use: `/var/lib/crac/image.key` for root,
//! `$XDG_STATE_HOME/crac/image.key` (or `~/.local/state/crac/image.key`) for anyone
//! else; `CRAC_IMAGE_KEY` names another file (a key installed on several hosts, a
//! mounted secret).
//!
//! Refused, as sshd refuses its host keys: a key file that is a symbolic link, not a
//! regular file, owned by another user or open to group or others, and a directory on
//! its path owned by another user (root aside) or writable by group or others (unless
//! sticky). The key is read only by processes that are never checkpointed (the dump's
//! action script, `crac`): it must never be in an image.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::env::IMAGE_KEY;
use crate::image::ownership;
use crate::sys::fs::{NotRegular, SYMBOLIC_LINK, open_regular};

/// Where root's key is kept when `CRAC_IMAGE_KEY` is unset.
const ROOT_DEFAULT: &str = "/var/lib/crac/image.key";
/// The key's length in bytes.
const LEN: usize = 32;
/// What the key id is derived with: a public fingerprint, which reveals nothing of it.
const ID_CONTEXT: &str = "crac-rs 2026-12 image key id";

/// Why the key cannot be used, naming its file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// No key at `path` (and none was to be made).
    #[error(
        "there is no image key at {} on this host: `crac key init` makes one, or install the \
         key of the host that took the image (see `crac key`)",
        path.display()
    )]
    Missing { path: PathBuf },
    /// The key file, or a directory on its path, cannot be trusted or read.
    #[error("the image key {}: {problem}", path.display())]
    Unusable { path: PathBuf, problem: String },
}

/// A key's public fingerprint, 16 hex digits: what a manifest's seal line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyId(pub(crate) String);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key, and the file it came from.
pub(crate) struct HostKey {
    bytes: [u8; LEN],
    path: PathBuf,
}

/// The key's bytes are never printed.
impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({}, {})", self.id(), self.path.display())
    }
}

impl HostKey {
    /// Where this user's key is: `CRAC_IMAGE_KEY`, else the default for the user.
    pub(crate) fn path() -> Result<PathBuf, KeyError> {
        if let Some(path) = std::env::var_os(IMAGE_KEY).filter(|p| !p.is_empty()) {
            return std::path::absolute(PathBuf::from(&path)).map_err(|e| KeyError::Unusable {
                path: path.into(),
                problem: e.to_string(),
            });
        }
        if nix::unistd::geteuid().is_root() {
            return Ok(ROOT_DEFAULT.into());
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| Some(Path::new(&std::env::var_os("HOME")?).join(".local/state")))
            .ok_or_else(|| KeyError::Unusable {
                path: "~/.local/state/crac/image.key".into(),
                problem: format!("HOME is not set: set {IMAGE_KEY} to the key's file"),
            })?;
        Ok(state.join("crac/image.key"))
    }

    /// This user's key, which must exist.
    pub(crate) fn load() -> Result<HostKey, KeyError> {
        let path = HostKey::path()?;
        HostKey::read(&path)?.ok_or(KeyError::Missing { path })
    }

    /// This user's key, made first if there is none.
    pub(crate) fn load_or_create() -> Result<HostKey, KeyError> {
        let path = HostKey::path()?;
        if let Some(key) = HostKey::read(&path)? {
            return Ok(key);
        }
        create(&path)?;
        HostKey::read(&path)?.ok_or(KeyError::Missing { path })
    }

    /// Checks what can be checked of this user's key without reading it (the process
    /// asking is about to be checkpointed, and the key must not be in its memory): a
    /// key file that is there is one that [`HostKey::load`] would take, and a missing
    /// one can be made.
    pub(crate) fn check_unread() -> Result<(), KeyError> {
        let path = HostKey::path()?;
        let unusable = |problem: String| KeyError::Unusable {
            path: path.clone(),
            problem,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => check_file(&meta).map_err(unusable)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unusable(e.to_string())),
        }
        match path.parent().filter(|p| p.exists()) {
            Some(_) => check_directories(&path).map_err(unusable),
            None => Ok(()),
        }
    }

    /// The key in `path`, `None` if there is no file.
    fn read(path: &Path) -> Result<Option<HostKey>, KeyError> {
        let unusable = |problem: String| KeyError::Unusable {
            path: path.into(),
            problem,
        };
        // a FIFO in its place must not hang the open, nor a link choose the key
        let file = match open_regular(path) {
            Ok(file) => file,
            Err(NotRegular::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(NotRegular::Kind(SYMBOLIC_LINK)) => return Err(unusable(LINK_REFUSED.into())),
            Err(e) => return Err(unusable(e.to_string())),
        };
        let meta = file.metadata().map_err(|e| unusable(e.to_string()))?;
        check_file(&meta).map_err(unusable)?;
        check_directories(path).map_err(unusable)?;
        let mut text = String::new();
        file.take(2 * LEN as u64 + 2)
            .read_to_string(&mut text)
            .map_err(|e| unusable(e.to_string()))?;
        let bytes = decode(text.trim_end_matches('\n')).ok_or_else(|| {
            unusable(format!(
                "is not an image key ({} hex digits and a newline, as `crac key init` writes)",
                2 * LEN
            ))
        })?;
        Ok(Some(HostKey {
            bytes,
            path: path.into(),
        }))
    }

    /// The key's public fingerprint.
    pub(crate) fn id(&self) -> KeyId {
        let derived = blake3::derive_key(ID_CONTEXT, &self.bytes);
        KeyId(hex(&derived[..8]))
    }

    /// The file the key came from.
    pub(crate) fn file(&self) -> &Path {
        &self.path
    }

    /// A key derived from this one for `context` (one key per use).
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.bytes)
    }

    /// A key of fixed bytes, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(byte: u8) -> HostKey {
        HostKey {
            bytes: [byte; LEN],
            path: format!("/test/key-{byte}").into(),
        }
    }
}

/// Makes a key at `path`: written whole to a private temporary file beside it, then
/// linked into place, which fails if another process made one first (its key is kept).
fn create(path: &Path) -> Result<(), KeyError> {
    let unusable = |problem: String| KeyError::Unusable {
        path: path.into(),
        problem,
    };
    let dir = path
        .parent()
        .ok_or_else(|| unusable("has no directory".into()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| unusable(format!("creating {}: {e}", dir.display())))?;
    check_directories(path).map_err(unusable)?;
    // The key, then the temporary file's name: random, since processes making keys at
    // once may share a PID (each is PID 2 of a namespace of its own under `crac run`).
    let mut bytes = [0u8; LEN + 8];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|e| unusable(format!("reading /dev/urandom: {e}")))?;
    let (bytes, nonce) = bytes.split_at(LEN);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.new", hex(nonce)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(format!("{}\n", hex(bytes)).as_bytes())?;
            file.sync_all()
        });
    let linked = written.and_then(|()| match std::fs::hard_link(&temp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&temp);
    linked.map_err(|e| unusable(format!("creating it: {e}")))?;
    crate::sys::fs::sync_parent(path).map_err(|e| unusable(e.to_string()))
}

/// Why a key file that is a symbolic link is refused.
const LINK_REFUSED: &str = "is a symbolic link, which is refused (whoever can change the link \
                            chooses the key): point CRAC_IMAGE_KEY at the file itself";

/// A key file this user alone can read and write.
fn check_file(meta: &std::fs::Metadata) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return Err(LINK_REFUSED.into());
    }
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.uid() != me {
        return Err(format!(
            "is owned by uid {}, not by this user (uid {me}), who could not tell whether it \
             was replaced: chown it if it is the right key, else remove it (`crac key init` \
             makes a new one)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "is open to group or others (mode {:04o}): whoever can read it can forge images; \
             chmod 600 it, and replace the key (`crac key init` after removing it) if it \
             may have been read",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Every directory from `/` to the key's, and every link on the way: the user's or
/// root's, and not writable by group or others unless sticky (whoever could rename
/// entries could swap the key). The rule images are held to (`ownership.rs`).
fn check_directories(path: &Path) -> Result<(), String> {
    ownership::check_directories_above(
        path,
        "could swap the image key, and an image sealed with it is restored with",
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `LEN` bytes from exactly `2 * LEN` hex digits.
fn decode(text: &str) -> Option<[u8; LEN]> {
    if text.len() != 2 * LEN || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; LEN];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_from_its_text_and_its_id_is_public() {
        let key = HostKey::for_tests(7);
        assert_eq!(decode(&hex(&key.bytes)), Some(key.bytes));
        assert_eq!(key.id().0.len(), 16);
        assert_ne!(key.id(), HostKey::for_tests(8).id());
        assert!(!hex(&key.bytes).contains(&key.id().0));
        for bad in ["", "zz", &"0".repeat(63), &"0".repeat(65), &"é".repeat(32)] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_key_is_made_private_once_and_a_link_or_an_open_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("crac-key-test-{}", std::process::id()));
        let path = dir.join("state/image.key");
        create(&path).unwrap();
        let made = HostKey::read(&path).unwrap().unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
        // made again (another process first): the first key is kept
        create(&path).unwrap();
        assert_eq!(HostKey::read(&path).unwrap().unwrap().id(), made.id());
        let link = dir.join("state/link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = HostKey::read(&link).unwrap_err().to_string();
        assert!(err.contains("link.key: is a symbolic link"), "{err}");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .unwrap();
        let err = HostKey::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("is open to group or others (mode 0640)"),
            "{err}"
        );
        assert!(
            HostKey::read(&dir.join("state/none.key"))
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
