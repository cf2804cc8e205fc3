//! What a packed file says of itself, read from its header, sealed manifest and entry
//! table only — no entry's data is read, nothing is written (`crac inspect FILE`) — and
//! whether this host can take it: its key, CPU, CRIU, kernel, executable and heap
//! segment paths (`crac doctor FILE`). An encrypted file is decrypted as far as its head,
//! given an identity; without one, only that it is encrypted, and to how many
//! recipients, can be said.

use std::io::Read as _;
use std::path::Path;

use crate::env::{IMAGE_KEY, PACK_IDENTITY};
use crate::image::key::{HostKey, KeyError};
use crate::image::manifest::{ExeStat, FILE_NAME, Manifest};
use crate::image::pack::input::{self, AGE_MAGIC, Input};
use crate::image::pack::{format, read};
use crate::image::{cpu_flags, kernel_release, seal, segments, sha256};
use crate::sys::fs::open_regular;

/// The most of an age file's start read to count its recipients: its header is far
/// shorter.
const AGE_HEADER_MAX: u64 = 64 << 10;

/// A packed file, described.
#[derive(Debug)]
pub(crate) struct Described {
    /// Bytes of the file as it is (encrypted, if it is).
    pub(crate) file_bytes: u64,
    /// `Some(recipients)` if it is encrypted with age (X25519 stanzas counted).
    pub(crate) encrypted_to: Option<usize>,
    /// Its contents, or why they cannot be read here.
    pub(crate) contents: Result<PackedContents, String>,
}

/// What the head of a packed file holds.
#[derive(Debug)]
pub(crate) struct PackedContents {
    /// The manifest's entries: verified if `seal` is [`Seal::Holds`], else as the file
    /// says them.
    pub(crate) manifest: Manifest,
    pub(crate) seal: Seal,
    /// Its key in the image cache (its header's digest).
    pub(crate) cache_key: String,
    /// Entries (image files and heap segments).
    pub(crate) entries: usize,
    /// Bytes of the entries unpacked, and packed.
    pub(crate) unpacked_bytes: u64,
    pub(crate) stored_bytes: u64,
}

/// Whether the manifest's seal holds under this host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seal {
    /// It does: this host's key is the one it was sealed with (its id).
    Holds(String),
    /// It names another key than this host's.
    OtherKey {
        image: String,
        host: String,
        key_file: String,
    },
    /// This host has no key (or none usable); the image names the key it needs.
    NoHostKey { image: String, problem: String },
    /// It names this host's key and does not match: changed and resealed, or damaged.
    Broken(String),
}

impl Seal {
    /// The id of the key the image was sealed with, if its seal line says.
    pub(crate) fn image_key(&self) -> Option<&str> {
        match self {
            Seal::Holds(id) => Some(id),
            Seal::OtherKey { image, .. } | Seal::NoHostKey { image, .. } => Some(image),
            Seal::Broken(_) => None,
        }
    }
}

/// Describes the packed file `file`, decrypting its head with the identities in
/// `identity` (else `CRAC_PACK_IDENTITY`'s) if it is encrypted. Fails only when `file`
/// is not a packed file at all or cannot be read.
pub(crate) fn describe(file: &Path, identity: Option<&Path>) -> Result<Described, String> {
    let opened = open_regular(file).map_err(|e| e.of("it"))?;
    let file_bytes = opened.metadata().map_err(|e| e.to_string())?.len();
    let mut start = Vec::new();
    opened
        .take(AGE_HEADER_MAX)
        .read_to_end(&mut start)
        .map_err(|e| format!("reading it: {e}"))?;
    let encrypted_to = start.starts_with(AGE_MAGIC).then(|| age_recipients(&start));
    if encrypted_to.is_none() && !start.starts_with(format::MAGIC) {
        return Err("it is not a packed crac image (no CRACPACK at its start)".into());
    }
    let no_identity =
        identity.is_none() && std::env::var_os(PACK_IDENTITY).is_none_or(|p| p.is_empty());
    let contents = if encrypted_to.is_some() && no_identity {
        Err(format!(
            "its contents are encrypted: give an identity of a recipient with --identity FILE \
             or {PACK_IDENTITY} to read its manifest"
        ))
    } else {
        contents(file, identity)
    };
    Ok(Described {
        file_bytes,
        encrypted_to,
        contents,
    })
}

/// The X25519 recipient stanzas (`-> X25519 …`) of an age header.
fn age_recipients(start: &[u8]) -> usize {
    start
        .split(|&b| b == b'\n')
        .take_while(|line| !line.starts_with(b"---"))
        .filter(|line| line.starts_with(b"-> X25519 "))
        .count()
}

/// Reads the head (through age, if encrypted) and opens the manifest's seal.
fn contents(file: &Path, identity: Option<&Path>) -> Result<PackedContents, String> {
    let Input { mut reader, len } = input::open(file, identity)?;
    let head = format::read_head(&mut reader, len)?;
    let path = Path::new(FILE_NAME);
    let text = Manifest::text(path, &head.manifest).map_err(|e| e.to_string())?;
    let image_key = seal::key_id(&text).map(String::from);
    let (manifest, seal) = match (HostKey::load(), image_key) {
        (_, None) => return Err("its manifest is not sealed: damaged, or not crac's".into()),
        (Ok(key), Some(image)) if image == key.id().0 => match Manifest::parse(path, &text, &key) {
            // the table is under the header's digest only, which anyone can recompute:
            // checked against the sealed manifest, as unpacking does, before it is shown
            Ok(manifest) => {
                read::check_table(&head.entries, &manifest)?;
                (manifest, Seal::Holds(image))
            }
            Err(e) => (unverified(&text)?, Seal::Broken(e.to_string())),
        },
        (Ok(key), Some(image)) => (
            unverified(&text)?,
            Seal::OtherKey {
                image,
                host: key.id().0,
                key_file: key.file().display().to_string(),
            },
        ),
        (Err(e), Some(image)) => {
            let problem = match e {
                KeyError::Missing { path } => format!("no image key at {}", path.display()),
                e => e.to_string(),
            };
            (unverified(&text)?, Seal::NoHostKey { image, problem })
        }
    };
    let unpacked_bytes = head.entries.iter().map(|e| e.size).sum();
    Ok(PackedContents {
        cache_key: head.key(),
        entries: head.entries.len(),
        unpacked_bytes,
        stored_bytes: head.entries.iter().map(|e| e.stored).sum(),
        manifest,
        seal,
    })
}

/// The entries of a manifest whose seal could not be checked: what it says, unverified.
fn unverified(text: &str) -> Result<Manifest, String> {
    let body = text
        .rsplit_once(&format!("{} ", seal::LINE))
        .map_or(text, |(body, _)| body);
    Manifest::parse_entries(Path::new(FILE_NAME), body).map_err(|e| e.to_string())
}

/// How a host fact compares with what the image needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// As the image needs.
    Ok,
    /// May not restore: said, not refused.
    Warn,
    /// Cannot restore here.
    Fail,
}

/// One thing this host must match, compared.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    /// What is compared, e.g. `CPU features`.
    pub(crate) name: &'static str,
    pub(crate) verdict: Verdict,
    /// What was found.
    pub(crate) found: String,
    /// What to do, when it is not OK.
    pub(crate) remedy: Option<String>,
}

impl Fit {
    fn ok(name: &'static str, found: String) -> Fit {
        Fit {
            name,
            verdict: Verdict::Ok,
            found,
            remedy: None,
        }
    }

    fn miss(name: &'static str, verdict: Verdict, found: String, remedy: String) -> Fit {
        Fit {
            name,
            verdict,
            found,
            remedy: Some(remedy),
        }
    }
}

impl PackedContents {
    /// How this host compares with everything the image needs of it, `criu_version`
    /// being this host's CRIU's (if it has one that runs).
    pub(crate) fn fit_here(&self, criu_version: Option<&str>) -> Vec<Fit> {
        let m = &self.manifest;
        let mut fits = vec![
            self.key_fit(),
            cpu_fit(&m.cpu_flags),
            criu_fit(&m.criu_version, criu_version),
            kernel_fit(&m.kernel),
        ];
        if matches!(self.seal, Seal::Holds(_)) {
            fits.extend([executable_fit(m), segments_fit(m)]);
        } else {
            // paths from a manifest not known to be sealed by a key holder: no file of
            // this host is read for it (its digest printed would tell of any file)
            for name in ["executable", "heap segment paths"] {
                fits.push(Fit::miss(
                    name,
                    Verdict::Warn,
                    "not checked: the manifest's seal does not hold here (see sealing key)".into(),
                    "install the key it was sealed with, then check again".into(),
                ));
            }
        }
        fits
    }

    fn key_fit(&self) -> Fit {
        let name = "sealing key";
        let key_file =
            HostKey::path().map_or("this host's key file".into(), |p| p.display().to_string());
        let install = |image: &str| {
            format!(
                "install the key it was sealed with ({image}) on this host: copy the image key \
                 file of the host that packed it (its `crac key show` says {image}) to \
                 {key_file}, mode 0600, or point {IMAGE_KEY} at a copy"
            )
        };
        match &self.seal {
            Seal::Holds(id) => Fit::ok(name, format!("sealed with {id}, this host's key")),
            Seal::OtherKey {
                image,
                host,
                key_file,
            } => Fit::miss(
                name,
                Verdict::Fail,
                format!("sealed with key {image}; this host's key ({key_file}) is {host}"),
                install(image),
            ),
            Seal::NoHostKey { image, problem } => Fit::miss(
                name,
                Verdict::Fail,
                format!("sealed with key {image}; {problem}"),
                install(image),
            ),
            Seal::Broken(problem) => Fit::miss(
                name,
                Verdict::Fail,
                problem.clone(),
                "pack it again on the host that took it, and copy it again".into(),
            ),
        }
    }
}

fn cpu_fit(recorded: &[String]) -> Fit {
    let name = "CPU features";
    let here = cpu_flags();
    if here.is_empty() {
        return Fit::miss(
            name,
            Verdict::Warn,
            "this host's are unknown (no flags in /proc/cpuinfo)".into(),
            "check that this CPU has every flag the image records (crac inspect FILE --json: \
             cpu_flags)"
                .into(),
        );
    }
    let missing: Vec<&str> = recorded
        .iter()
        .filter(|f| !here.contains(f))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Fit::ok(
            name,
            format!("this CPU has all {} the image records", recorded.len()),
        );
    }
    Fit::miss(
        name,
        Verdict::Fail,
        format!("this CPU lacks {}", missing.join(" ")),
        "restore on a host whose CPU has them (the same CPU family as the host that took it: \
         schedule by a node label)"
            .into(),
    )
}

fn criu_fit(recorded: &str, here: Option<&str>) -> Fit {
    let name = "CRIU version";
    let Some(here) = here else {
        return Fit::miss(
            name,
            Verdict::Fail,
            format!("the image was dumped by CRIU {recorded}; this host has none that runs"),
            format!("install CRIU {recorded} or newer (scripts/install-criu.sh)"),
        );
    };
    let number = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    if number(here) >= number(recorded) {
        Fit::ok(name, format!("dumped by {recorded}; this host has {here}"))
    } else {
        Fit::miss(
            name,
            Verdict::Warn,
            format!("dumped by {recorded}; this host has {here}, older: it may not read the image"),
            format!("install CRIU {recorded} or newer (scripts/install-criu.sh)"),
        )
    }
}

fn kernel_fit(recorded: &str) -> Fit {
    let name = "kernel";
    let here = kernel_release();
    let series = |r: &str| r.split('.').take(2).collect::<Vec<_>>().join(".");
    if series(recorded) == series(&here) {
        Fit::ok(name, format!("dumped on {recorded}; this host runs {here}"))
    } else {
        Fit::miss(
            name,
            Verdict::Warn,
            format!("dumped on {recorded}; this host runs {here}, another series"),
            format!(
                "if CRIU refuses the image, restore on a {} kernel",
                series(recorded)
            ),
        )
    }
}

fn executable_fit(m: &Manifest) -> Fit {
    let name = "executable";
    let exe = m.executable.display();
    let sha = m
        .executable_sha256
        .get(..12)
        .unwrap_or(&m.executable_sha256);
    let remedy = format!(
        "install the exact executable that was checkpointed at {exe} (sha256 {sha}…: the same \
         build, e.g. from the same container image)"
    );
    let stat = match ExeStat::of(&m.executable) {
        Ok(stat) => stat,
        Err(e) => return Fit::miss(name, Verdict::Fail, format!("{exe}: {e}"), remedy),
    };
    if stat == m.executable_stat {
        return Fit::ok(name, format!("{exe}, the very file checkpointed"));
    }
    match sha256(&m.executable) {
        Ok(hash) if hash == m.executable_sha256 => {
            Fit::ok(name, format!("{exe}, the same build (sha256 {sha}…)"))
        }
        Ok(hash) => Fit::miss(
            name,
            Verdict::Fail,
            format!(
                "{exe} is another build (sha256 {}…, the image needs {sha}…)",
                &hash[..12]
            ),
            remedy,
        ),
        Err(e) => Fit::miss(name, Verdict::Fail, format!("reading {exe}: {e}"), remedy),
    }
}

/// Each heap segment's recorded path: free, in a directory that can be made or written,
/// or holding the very same segment already.
fn segments_fit(m: &Manifest) -> Fit {
    let name = "heap segment paths";
    if m.segments.is_empty() {
        return Fit::ok(name, "none: the image maps no heap segment".into());
    }
    for segment in &m.segments {
        let path = &segment.path;
        match std::fs::symlink_metadata(path) {
            Ok(_) => {
                if let Err(problem) = segments::check(segment) {
                    return Fit::miss(
                        name,
                        Verdict::Fail,
                        format!("{} holds another file ({problem})", path.display()),
                        format!(
                            "remove {} if no image needs it: unpacking replaces no file",
                            path.display()
                        ),
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let existing = path.ancestors().skip(1).find(|a| a.exists());
                let writable = existing.is_some_and(|dir| {
                    dir.is_dir() && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
                });
                if !writable {
                    let dir = existing.unwrap_or(Path::new("/")).display();
                    return Fit::miss(
                        name,
                        Verdict::Fail,
                        format!("{} cannot be made: {dir} is not writable", path.display()),
                        format!(
                            "restore as a user who may write {dir}, or make {}'s directory \
                             yours",
                            path.display()
                        ),
                    );
                }
            }
            Err(e) => {
                return Fit::miss(
                    name,
                    Verdict::Fail,
                    format!("{}: {e}", path.display()),
                    "make the path reachable".into(),
                );
            }
        }
    }
    let n = m.segments.len();
    Fit::ok(
        name,
        format!(
            "{n} segment{}, each path free or holding the same segment",
            if n == 1 { "" } else { "s" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_counted_from_the_age_header() {
        let header = b"age-encryption.org/v1\n-> X25519 abc\nbody\n-> X25519 def\nbody\n--- mac\n\
                       -> X25519 not a stanza: payload";
        assert_eq!(age_recipients(header), 2);
    }

    #[test]
    fn an_older_criu_is_said_a_newer_one_is_fine() {
        assert_eq!(criu_fit("4.1.1", Some("4.2.1")).verdict, Verdict::Ok);
        assert_eq!(criu_fit("4.2", Some("4.2")).verdict, Verdict::Ok);
        let older = criu_fit("4.2.1", Some("4.1"));
        assert_eq!(older.verdict, Verdict::Warn);
        assert!(older.remedy.unwrap().contains("4.2.1 or newer"));
        assert_eq!(criu_fit("4.2.1", None).verdict, Verdict::Fail);
    }
}
