//! Who could have written an image. Restoring one runs the memory it holds with the
//! restorer's privileges (usually root's), so, as sshd's StrictModes does for keys, an
//! image is refused when anyone but the restoring user and root could have changed or
//! replaced it: its directory, a file in it, or a directory above it owned by another
//! user, or writable by group or others. A sticky directory above the image (such as
//! `/tmp`) is fine: there nobody can rename or delete an entry they do not own, and the
//! entry itself is checked.
//!
//! The path is resolved here one component at a time, each directory passed through and
//! each symbolic link followed checked as it is met (`lstat`, never following a link
//! before checking it). What passes can afterwards be changed by root and the restoring
//! user only: the files read later are the ones checked, with no window between the check
//! and the use for anyone else — which is why the files are not read through a held fd.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use crate::env::INSECURE_IMAGE_PERMISSIONS;
use crate::heap::Segment;

/// The command-line flag that restores such an image anyway (the variable is
/// [`INSECURE_IMAGE_PERMISSIONS`]).
pub(crate) const OVERRIDE_FLAG: &str = "--insecure-image-permissions";

/// Symbolic links followed at most while resolving a path, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// Checks that only the restoring user and root could have written the image in `dir`
/// (its directory, every entry in it, every directory above it and every link on the
/// way); for a `dir` that does not exist yet, the directories above it. `insecure` (the
/// override flag) or [`INSECURE_IMAGE_PERMISSIONS`] lets a finding pass with a warning.
/// Returns what is wrong and what to do.
pub(crate) fn check_ownership(dir: &Path, insecure: bool) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    match exposure(dir, me) {
        None => Ok(()),
        Some(exposure) => verdict(exposure.describe(me, IMAGE_AT_STAKE), insecure),
    }
}

/// Checks the heap segments an image maps (`crate::heap`) as [`check_ownership`] checks the
/// image: each file, and the directories above it, changeable by the restoring user and
/// root only.
pub(crate) fn check_segments_ownership(segments: &[Segment], insecure: bool) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    let exposure = segments.iter().find_map(|segment| {
        let path = std::path::absolute(&segment.path).unwrap_or_else(|_| segment.path.clone());
        match walk(&path, me) {
            Err(exposure) => Some(exposure),
            Ok(None) => None, // validation says it is missing
            Ok(Some((resolved, meta))) => strict(&resolved, &meta, me).err(),
        }
    });
    match exposure {
        None => Ok(()),
        Some(exposure) => verdict(exposure.describe(me, SEGMENT_AT_STAKE), insecure),
    }
}

/// A finding refused, or let pass with a warning if `insecure` or the variable says so.
fn verdict(problem: String, insecure: bool) -> Result<(), String> {
    match overridden(insecure) {
        Ok(true) => {
            eprintln!("crac: warning: {problem}; going on as {OVERRIDE_FLAG} asks");
            Ok(())
        }
        Ok(false) => Err(format!(
            "{problem}; if you trust whoever that is, {OVERRIDE_FLAG} (or \
             {INSECURE_IMAGE_PERMISSIONS}=1) restores it anyway"
        )),
        Err(setting) => Err(format!("{problem}; {setting}")),
    }
}

/// What whoever could change a heap segment could do.
const SEGMENT_AT_STAKE: &str =
    "could change or replace a heap segment the image maps, and a restore runs it with";

/// What whoever could change an image could do.
const IMAGE_AT_STAKE: &str =
    "could change or replace the image, and a restore runs what an image holds with";

/// Checks that only the user and root could change the directories above `file` (and
/// the links on the way): `at_stake` says what another could then do, ending before
/// "`{user}'s privileges`" — the host's image key uses this too.
pub(crate) fn check_directories_above(file: &Path, at_stake: &str) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    match walk(file.parent().unwrap_or(Path::new("/")), me) {
        Err(exposure) => Err(exposure.describe(me, at_stake)),
        Ok(_) => Ok(()),
    }
}

/// Whether the override is given: the flag, or the variable set to `1`.
fn overridden(flag: bool) -> Result<bool, String> {
    match std::env::var(INSECURE_IMAGE_PERMISSIONS).as_deref() {
        _ if flag => Ok(true),
        Err(_) | Ok("") | Ok("0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(other) => Err(format!(
            "{INSECURE_IMAGE_PERMISSIONS} is {other:?}, which is neither 1 nor 0"
        )),
    }
}

/// A path someone else could change, and how.
#[derive(Debug, PartialEq, Eq)]
struct Exposure {
    path: PathBuf,
    how: How,
}

#[derive(Debug, PartialEq, Eq)]
enum How {
    /// Owned by this other user.
    Owner(u32),
    /// Writable by group or others: the whole mode.
    Writable(u32),
    /// More symbolic links than the kernel would follow.
    Loop,
}

impl Exposure {
    fn describe(&self, me: u32, at_stake: &str) -> String {
        let path = self.path.display();
        let you = user_name(me);
        let why = format!("{at_stake} {you}'s privileges");
        match self.how {
            How::Owner(uid) => format!(
                "{path} is owned by {} (uid {uid}), who {why}: make it {you}'s (chown {you} \
                 {path}) or keep the image elsewhere",
                user_name(uid)
            ),
            How::Writable(mode) => {
                let whom = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                };
                format!(
                    "{path} is writable by {whom} (mode {:04o}), any of whom {why}: chmod go-w \
                     {path}",
                    mode & 0o7777
                )
            }
            How::Loop => format!("{path}: too many levels of symbolic links"),
        }
    }
}

/// `uid`'s name, or the number if it has none.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

/// The first thing of the image in `dir`, or above it, that someone but `me` and root
/// could change.
fn exposure(dir: &Path, me: u32) -> Option<Exposure> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (resolved, meta) = match walk(&dir, me) {
        Err(exposure) => return Some(exposure),
        Ok(None) => return None,
        Ok(Some(found)) => found,
    };
    // The image's own directory: no sticky exception, nobody else writes in it.
    if !meta.is_dir() {
        return None; // validation says what it is instead
    }
    if let Err(exposure) = strict(&resolved, &meta, me) {
        return Some(exposure);
    }
    let entries = std::fs::read_dir(&resolved).ok()?;
    entries.flatten().find_map(|entry| {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if meta.file_type().is_symlink() {
            // a link's own mode means nothing; what it points to is no image file
            owned(&path, &meta, me).err()
        } else {
            strict(&path, &meta, me).err()
        }
    })
}

/// Resolves `path` (absolute) as the kernel would, checking every directory passed
/// through and every link followed before using it. Returns where it leads and what is
/// there, or `None` if some component does not exist or cannot be looked at (the
/// directories checked up to there are what matters then).
fn walk(path: &Path, me: u32) -> Result<Option<(PathBuf, std::fs::Metadata)>, Exposure> {
    let mut resolved = PathBuf::from("/");
    let Ok(mut meta) = std::fs::symlink_metadata(&resolved) else {
        return Ok(None);
    };
    // Components still to resolve, the next one last.
    let mut pending = components(path);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            meta = match std::fs::symlink_metadata(&resolved) {
                Ok(meta) => meta,
                Err(_) => return Ok(None),
            };
            continue;
        }
        // The directory `name` is looked up in: someone who can write it can swap `name`.
        passable(&resolved, &meta, me)?;
        let next = resolved.join(&name);
        let Ok(found) = std::fs::symlink_metadata(&next) else {
            return Ok(None);
        };
        owned(&next, &found, me)?;
        if found.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Exposure {
                    path: path.to_path_buf(),
                    how: How::Loop,
                });
            }
            let Ok(target) = std::fs::read_link(&next) else {
                return Ok(None);
            };
            if target.is_absolute() {
                resolved = PathBuf::from("/");
                meta = match std::fs::symlink_metadata(&resolved) {
                    Ok(meta) => meta,
                    Err(_) => return Ok(None),
                };
            }
            pending.extend(components(&target));
            continue;
        }
        resolved = next;
        meta = found;
    }
    Ok(Some((resolved, meta)))
}

/// `path`'s components but the root, as names and `..`, the first one last.
fn components(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    names
}

/// A path's owner must be `me` or root (in a rootless `crac run`'s user namespace, an
/// owner it does not map, checked outside: `privileges::unmapped_owner`).
fn owned(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), Exposure> {
    if meta.uid() == me
        || meta.uid() == 0
        || Some(meta.uid()) == crate::sys::privileges::unmapped_owner()
    {
        Ok(())
    } else {
        Err(Exposure {
            path: path.to_path_buf(),
            how: How::Owner(meta.uid()),
        })
    }
}

/// The image's directory and files: owned by `me` or root, writable by nobody else.
fn strict(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), Exposure> {
    owned(path, meta, me)?;
    if meta.mode() & 0o022 == 0 {
        Ok(())
    } else {
        Err(Exposure {
            path: path.to_path_buf(),
            how: How::Writable(meta.mode()),
        })
    }
}

/// A directory above the image: as [`strict`], or writable by others but sticky.
fn passable(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), Exposure> {
    const STICKY: u32 = 0o1000;
    match strict(path, meta, me) {
        Err(Exposure {
            how: How::Writable(mode),
            ..
        }) if mode & STICKY != 0 => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A root-owned tree under the temp directory: the unit tests run as anyone, so
    /// they check modes and links as whoever runs them (`me`).
    #[test]
    fn modes_links_and_sticky_parents() {
        let me = nix::unistd::geteuid().as_raw();
        let base = std::env::temp_dir().join(format!("crac-ownership-{}", std::process::id()));
        let image = base.join("p").join("image");
        std::fs::create_dir_all(&image).unwrap();
        chmod(&base, 0o755);
        chmod(&base.join("p"), 0o755);
        chmod(&image, 0o700);
        std::fs::write(image.join("pages-1.img"), b"x").unwrap();
        chmod(&image.join("pages-1.img"), 0o600);
        assert_eq!(exposure(&image, me), None);
        // a missing image: only what is above it counts
        assert_eq!(exposure(&base.join("p/none/image"), me), None);

        chmod(&image.join("pages-1.img"), 0o666);
        let found = exposure(&image, me).unwrap();
        assert_eq!(found.path, image.join("pages-1.img"));
        assert_eq!(found.how, How::Writable(0o100666));
        assert!(
            found
                .describe(me, IMAGE_AT_STAKE)
                .contains("writable by group and others (mode 0666)")
        );
        chmod(&image.join("pages-1.img"), 0o600);

        chmod(&base.join("p"), 0o777);
        let found = exposure(&image, me).unwrap();
        assert_eq!(found.path, base.join("p"));
        assert_eq!(
            exposure(&base.join("p/none"), me).unwrap().path,
            base.join("p")
        );
        chmod(&base.join("p"), 0o1777);
        assert_eq!(exposure(&image, me), None, "sticky above the image is fine");
        chmod(&image, 0o1777);
        assert_eq!(
            exposure(&image, me).unwrap().path,
            image,
            "not the image itself"
        );
        chmod(&image, 0o700);
        chmod(&base.join("p"), 0o755);

        // a link is followed, and where it leads is checked from the root again
        std::os::unix::fs::symlink(&image, base.join("link")).unwrap();
        std::os::unix::fs::symlink("p/../p/image", base.join("relative")).unwrap();
        assert_eq!(exposure(&base.join("link"), me), None);
        assert_eq!(exposure(&base.join("relative"), me), None);
        chmod(&image, 0o770);
        assert_eq!(exposure(&base.join("link"), me).unwrap().path, image);
        assert_eq!(exposure(&base.join("relative"), me).unwrap().path, image);
        chmod(&image, 0o700);
        std::os::unix::fs::symlink("loop", base.join("loop")).unwrap();
        assert_eq!(exposure(&base.join("loop"), me).unwrap().how, How::Loop);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
