//! The image format: `crac-manifest`, a versioned text file written last into the image
//! directory. Its presence means the image is complete; its contents let a restore
//! refuse an image that cannot work here before CRIU touches anything.
//!
//! One `key value` pair a line; `plan` and `file` repeat. Version 3 keys:
//!
//! | key | value |
//! |---|---|
//! | `format` | `crac-image 3` (first line) |
//! | `created` | creation time, seconds and nanoseconds since the Unix epoch |
//! | `executable` | absolute path of the checkpointed executable |
//! | `executable-sha256` | its SHA-256 |
//! | `executable-stat` | `size mtime_ns dev ino`: if unchanged, the hash is not recomputed |
//! | `kernel` | `uname -r` of the host |
//! | `cpu-flags` | `/proc/cpuinfo` flags of the host; all must exist where it is restored |
//! | `criu-version` | `criu --version` of the dumping CRIU |
//! | `pid`, `waiter-tid`, `tids` | the process, the thread waiting in place, all threads |
//! | `pid-namespace` | `private` (taken as PID 2 of its own namespace: restore in a fresh one) or `host` |
//! | `resident-bytes` | resident memory when dumped |
//! | `restore-option` | a CRIU option restore must repeat (repeats) |
//! | `listener` | `address shared\|exclusive`: a listening TCP socket the image carries, and whether it has `SO_REUSEPORT` (repeats) |
//! | `secret-env` | the name of a secret environment variable wiped before the dump, which a restore must give again (repeats) |
//! | `plan` | `rank kind depth name (file:line)`, the checkpoint plan in order (repeats) |
//! | `file` | `size blake3 name` of each image file (repeats) |
//! | `segment` | `size blake3 path`: a file of the mapped heap (`crac::MappedHeap`) the image maps privately from outside its directory, by absolute path (repeats) |
//! | `manifest-seal` | `KEY-ID MAC`: the host key's id and BLAKE3, keyed with it, of every byte before this line (last line; `seal.rs`) |
//!
//! Version 1 had no digests, version 2 an unkeyed one that anyone could recompute: such
//! images are refused, to be taken again.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::heap::Segment;
#[cfg(test)]
use crate::image::digest;
use crate::image::key::{HostKey, KeyError};
use crate::image::refusal::ImageRefusal;
use crate::image::seal::{self, SealError};
use crate::sys::environ;
use crate::sys::fs::{NotRegular, open_regular};

pub(crate) const FILE_NAME: &str = "crac-manifest";
/// CRIU's log of the dump, kept in the image directory but not listed as part of it.
pub(crate) const LOG: &str = "dump.log";
const FORMAT: &str = "crac-image 3";
/// The most a manifest may hold. A real one is a few KB, plus about 80 bytes an image
/// file (one per thread, among others): 4 MiB is room for some 50,000 threads, and keeps
/// a hostile one from filling memory or the terminal.
pub(crate) const MAX_BYTES: u64 = 4 << 20;

/// Identity of an executable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExeStat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl ExeStat {
    pub(crate) fn of(path: &Path) -> std::io::Result<ExeStat> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(ExeStat {
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// `size mtime_ns dev ino`: the one text form, in the manifest and on its way there.
impl std::fmt::Display for ExeStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.size, self.mtime_ns, self.dev, self.ino
        )
    }
}

impl std::str::FromStr for ExeStat {
    type Err = String;

    /// Each number into its own type, so that out-of-range values are refused.
    fn from_str(text: &str) -> Result<ExeStat, String> {
        let fields: Vec<&str> = text.split(' ').collect();
        let [size, mtime_ns, dev, ino] = fields[..] else {
            return Err(format!("expected `size mtime_ns dev ino`, not {text:?}"));
        };
        fn field<T: std::str::FromStr>(text: &str) -> Result<T, String> {
            text.parse()
                .map_err(|_| format!("not a valid number: {text:?}"))
        }
        Ok(ExeStat {
            size: field(size)?,
            mtime_ns: field(mtime_ns)?,
            dev: field(dev)?,
            ino: field(ino)?,
        })
    }
}

/// A listening TCP socket carried in the image: every restored copy gets it, so
/// concurrent copies share it — which only `SO_REUSEPORT` makes a choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CarriedListener {
    pub(crate) address: std::net::SocketAddr,
    pub(crate) shared: bool,
}

/// One file of the image as the dump left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageFile {
    pub(crate) name: String,
    pub(crate) size: u64,
    /// BLAKE3 of its contents, hex.
    pub(crate) blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanLine {
    pub(crate) rank: u32,
    pub(crate) kind: String,
    pub(crate) depth: usize,
    pub(crate) name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) created: SystemTime,
    pub(crate) executable: PathBuf,
    pub(crate) executable_sha256: String,
    pub(crate) executable_stat: ExeStat,
    pub(crate) kernel: String,
    pub(crate) cpu_flags: Vec<String>,
    pub(crate) criu_version: String,
    pub(crate) pid: i32,
    pub(crate) waiter_tid: i32,
    pub(crate) tids: Vec<i32>,
    pub(crate) private_pid_namespace: bool,
    pub(crate) resident_bytes: u64,
    pub(crate) restore_options: Vec<String>,
    pub(crate) listeners: Vec<CarriedListener>,
    pub(crate) secret_env: Vec<String>,
    pub(crate) plan: Vec<PlanLine>,
    pub(crate) files: Vec<ImageFile>,
    pub(crate) segments: Vec<Segment>,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    #[error("{path}: not a crac-rs image manifest (first line {found:?}, expected {FORMAT:?})")]
    Foreign { path: PathBuf, found: String },
    #[error(
        "{path}: an image of an earlier crac-rs ({found:?}), whose contents cannot be checked; \
         take a new checkpoint"
    )]
    Outdated { path: PathBuf, found: String },
    #[error(
        "{path}: the manifest was edited or damaged after the dump ({problem}); the image \
         cannot be trusted: take a new checkpoint"
    )]
    Tampered { path: PathBuf, problem: String },
    #[error("{path}: {source}")]
    OtherKey { path: PathBuf, source: SealError },
    #[error("{path}: line {line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: missing `{key}`")]
    Missing { path: PathBuf, key: &'static str },
    #[error(
        "{path}: {size} bytes, more than a manifest may hold ({MAX_BYTES}); not an image \
         crac-rs wrote"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: not UTF-8 text; not an image crac-rs wrote")]
    NotText { path: PathBuf },
}

impl Manifest {
    /// The manifest's text, sealed with `key`.
    pub(crate) fn render(&self, key: &HostKey) -> String {
        let mut out = format!("format {FORMAT}\n");
        let created = self.created.duration_since(UNIX_EPOCH).unwrap_or_default();
        let _ = writeln!(
            out,
            "created {} {}",
            created.as_secs(),
            created.subsec_nanos()
        );
        let _ = writeln!(out, "executable {}", self.executable.display());
        let _ = writeln!(out, "executable-sha256 {}", self.executable_sha256);
        let _ = writeln!(out, "executable-stat {}", self.executable_stat);
        let _ = writeln!(out, "kernel {}", self.kernel);
        let _ = writeln!(out, "cpu-flags {}", self.cpu_flags.join(" "));
        let _ = writeln!(out, "criu-version {}", self.criu_version);
        let _ = writeln!(out, "pid {}", self.pid);
        let _ = writeln!(out, "waiter-tid {}", self.waiter_tid);
        let tids: Vec<String> = self.tids.iter().map(i32::to_string).collect();
        let _ = writeln!(out, "tids {}", tids.join(" "));
        let namespace = if self.private_pid_namespace {
            "private"
        } else {
            "host"
        };
        let _ = writeln!(out, "pid-namespace {namespace}");
        let _ = writeln!(out, "resident-bytes {}", self.resident_bytes);
        for option in &self.restore_options {
            let _ = writeln!(out, "restore-option {option}");
        }
        for l in &self.listeners {
            let sharing = if l.shared { "shared" } else { "exclusive" };
            let _ = writeln!(out, "listener {} {sharing}", l.address);
        }
        for name in &self.secret_env {
            let _ = writeln!(out, "secret-env {name}");
        }
        for p in &self.plan {
            let name = p.name.replace(['\n', '\r'], " ");
            let _ = writeln!(out, "plan {} {} {} {name}", p.rank, p.kind, p.depth);
        }
        for f in &self.files {
            let _ = writeln!(out, "file {} {} {}", f.size, f.blake3, f.name);
        }
        for s in &self.segments {
            let _ = writeln!(out, "segment {} {} {}", s.len, s.digest, s.path.display());
        }
        seal::seal(out, key)
    }

    /// Reads a manifest's text: its format line, its seal under `key`, then each entry.
    pub(crate) fn parse(path: &Path, text: &str, key: &HostKey) -> Result<Manifest, ManifestError> {
        check_format(path, text)?;
        let body = seal::open(text, key).map_err(|e| match e {
            e @ SealError::OtherKey { .. } => ManifestError::OtherKey {
                path: path.into(),
                source: e,
            },
            e => ManifestError::Tampered {
                path: path.into(),
                problem: e.to_string(),
            },
        })?;
        Manifest::parse_entries(path, body)
    }

    /// A manifest's bytes as text, if it is not too large to be one.
    pub(crate) fn text(path: &Path, bytes: &[u8]) -> Result<String, ManifestError> {
        if bytes.len() as u64 > MAX_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.into(),
                size: bytes.len() as u64,
            });
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| ManifestError::NotText { path: path.into() })
    }

    /// Reads the entries of `body`, a manifest's text without its seal (its first line,
    /// the format, is skipped).
    pub(crate) fn parse_entries(path: &Path, body: &str) -> Result<Manifest, ManifestError> {
        let mut draft = Draft::default();
        for (i, line) in body.lines().enumerate().skip(1) {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            draft.take(&Entry {
                path,
                line: i + 1,
                key,
                value,
            })?;
        }
        draft.finish(path)
    }

    /// Reads `DIR/crac-manifest`: a regular file (see [`open_regular`]) of at most
    /// [`MAX_BYTES`], sealed with this host's key.
    pub(crate) fn read(dir: &Path) -> Result<Manifest, ImageRefusal> {
        let path = dir.join(FILE_NAME);
        let unrestorable = |problem| ImageRefusal::Unrestorable {
            dir: dir.into(),
            problem,
        };
        let mut bytes = Vec::new();
        open_regular(&path)
            .map_err(|e| match e {
                NotRegular::Io(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                    "no {FILE_NAME}: not a complete crac-rs image (a dump that did not finish, or \
                     another directory); take a new checkpoint"
                ),
                e => e.of(FILE_NAME),
            })
            .and_then(|file| {
                // one byte more than allowed tells a manifest too large without reading it all
                file.take(MAX_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("reading {FILE_NAME}: {e}"))
            })
            .map_err(unrestorable)?;
        let text = Manifest::text(&path, &bytes).map_err(|e| match e {
            ManifestError::TooLarge { .. } => {
                let size = std::fs::symlink_metadata(&path).map_or(bytes.len() as u64, |m| m.len());
                unrestorable(
                    ManifestError::TooLarge {
                        path: path.clone(),
                        size,
                    }
                    .to_string(),
                )
            }
            e => unrestorable(e.to_string()),
        })?;
        check_format(&path, &text).map_err(|e| unrestorable(e.to_string()))?;
        let key = HostKey::load().map_err(|e| match (e, seal::key_id(&text)) {
            (e @ KeyError::Missing { .. }, Some(id)) => {
                unrestorable(format!("it was sealed with key {id}, and {e}"))
            }
            (e, _) => unrestorable(e.to_string()),
        })?;
        Manifest::parse(&path, &text, &key).map_err(|e| match e {
            ManifestError::Tampered { problem, .. } => ImageRefusal::Damaged {
                dir: dir.into(),
                problem: format!("{FILE_NAME}: {problem}"),
            },
            e => ImageRefusal::Unrestorable {
                dir: dir.into(),
                problem: e.to_string(),
            },
        })
    }
}

/// The first line names this format: an earlier one is outdated, anything else foreign.
fn check_format(path: &Path, text: &str) -> Result<(), ManifestError> {
    let first = text.lines().next().unwrap_or("");
    if first == format!("format {FORMAT}") {
        return Ok(());
    }
    let found = first.chars().take(40).collect();
    Err(if first.starts_with("format crac-image ") {
        ManifestError::Outdated {
            path: path.into(),
            found,
        }
    } else {
        ManifestError::Foreign {
            path: path.into(),
            found,
        }
    })
}

/// One `key value` line of a manifest, where it is.
struct Entry<'t> {
    path: &'t Path,
    /// Its line number, from 1.
    line: usize,
    key: &'t str,
    value: &'t str,
}

impl Entry<'_> {
    /// The value's space-separated fields.
    fn fields(&self) -> Vec<&str> {
        self.value.split(' ').collect()
    }

    /// The entry refused as malformed.
    fn bad(&self, problem: String) -> ManifestError {
        ManifestError::Malformed {
            path: self.path.into(),
            line: self.line,
            problem,
        }
    }

    /// One numeric field, parsed into its own type so that out-of-range values are
    /// refused rather than wrapped.
    fn number<T: std::str::FromStr>(&self, text: &str) -> Result<T, ManifestError> {
        text.parse()
            .map_err(|_| self.bad(format!("`{}`: not a valid number: {text:?}", self.key)))
    }

    /// `created`: seconds and nanoseconds since the Unix epoch.
    fn created(&self, secs: &str, nanos: &str) -> Result<SystemTime, ManifestError> {
        let (secs, nanos): (u64, u32) = (self.number(secs)?, self.number(nanos)?);
        let since_epoch = Duration::from_secs(secs).checked_add(Duration::from_nanos(nanos.into()));
        since_epoch
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .ok_or_else(|| self.bad("`created` is out of range".into()))
    }

    /// `executable-stat`: [`ExeStat`]'s text form.
    fn executable_stat(&self) -> Result<ExeStat, ManifestError> {
        self.value
            .parse()
            .map_err(|problem| self.bad(format!("`{}`: {problem}", self.key)))
    }

    /// `pid-namespace`: `private` or `host`.
    fn private_pid_namespace(&self) -> Result<bool, ManifestError> {
        match self.value {
            "private" => Ok(true),
            "host" => Ok(false),
            other => Err(self.bad(format!("`pid-namespace`: {other:?} is not private or host"))),
        }
    }

    /// `listener`: `ADDRESS shared|exclusive`.
    fn listener(&self) -> Result<CarriedListener, ManifestError> {
        let parsed = match self.value.split_once(' ') {
            Some((address, "shared")) => address.parse().ok().map(|a| (a, true)),
            Some((address, "exclusive")) => address.parse().ok().map(|a| (a, false)),
            _ => None,
        };
        let (address, shared) = parsed.ok_or_else(|| {
            self.bad(format!(
                "`listener`: expected `ADDRESS shared|exclusive`, not {:?}",
                self.value
            ))
        })?;
        Ok(CarriedListener { address, shared })
    }

    /// `plan`: `rank kind depth name`.
    fn plan(&self) -> Result<PlanLine, ManifestError> {
        let mut parts = self.value.splitn(4, ' ');
        let (Some(rank), Some(kind), Some(depth), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(self.bad("`plan` needs rank, kind, depth and name".into()));
        };
        Ok(PlanLine {
            rank: self.number::<u32>(rank)?,
            kind: kind.to_string(),
            depth: self.number::<usize>(depth)?,
            name: name.to_string(),
        })
    }

    /// `file`: `size blake3 name`.
    fn file(&self) -> Result<ImageFile, ManifestError> {
        let mut parts = self.value.splitn(3, ' ');
        let (Some(size), Some(blake3), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(self.bad("`file` needs size, digest and name".into()));
        };
        plain_name(name).map_err(|problem| {
            self.bad(format!(
                "`file` {name:?} {problem}: an image lists the plain names of the files in its \
                 own directory"
            ))
        })?;
        Ok(ImageFile {
            name: name.to_string(),
            size: self.number::<u64>(size)?,
            blake3: blake3.to_string(),
        })
    }
}

impl Entry<'_> {
    /// `segment`: `size blake3 path`, an absolute path CRIU maps at restore.
    fn segment(&self) -> Result<Segment, ManifestError> {
        let mut parts = self.value.splitn(3, ' ');
        let (Some(size), Some(digest), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(self.bad("`segment` needs size, digest and path".into()));
        };
        heap_path(Path::new(path)).map_err(|problem| {
            self.bad(format!(
                "`segment` {path:?} {problem}: an image lists heap segments by the absolute \
                 path they were sealed at"
            ))
        })?;
        Ok(Segment {
            path: path.into(),
            len: self.number::<u64>(size)?,
            digest: digest.to_string(),
        })
    }
}

/// Whether `path` can be a heap segment's: absolute, without `.` or `..` (a restore checks
/// and reports the very file CRIU maps), nor control characters.
fn heap_path(path: &Path) -> Result<(), &'static str> {
    use std::path::Component;
    if !path.is_absolute() {
        Err("is not an absolute path")
    } else if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        Err("holds `.` or `..`")
    } else if path.to_string_lossy().chars().any(char::is_control) {
        Err("holds a control character")
    } else {
        Ok(())
    }
}

/// Whether `name` names a file in the image directory and nothing else: a name with a
/// `/`, or `..`, would have the restore read (and report on) a file elsewhere.
pub(crate) fn plain_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name == "." || name == ".." {
        Err("names a directory")
    } else if name.contains('/') {
        Err("is a path, not a file name")
    } else if name.chars().any(char::is_control) {
        Err("holds a control character")
    } else {
        Ok(())
    }
}

#[derive(Default)]
struct Draft {
    created: Option<SystemTime>,
    executable: Option<PathBuf>,
    sha: Option<String>,
    stat: Option<ExeStat>,
    kernel: Option<String>,
    cpu_flags: Vec<String>,
    criu_version: Option<String>,
    pid: Option<i32>,
    waiter_tid: Option<i32>,
    tids: Vec<i32>,
    namespace: Option<bool>,
    resident: Option<u64>,
    restore_options: Vec<String>,
    listeners: Vec<CarriedListener>,
    secret_env: Vec<String>,
    plan: Vec<PlanLine>,
    files: Vec<ImageFile>,
    /// The names in `files`, to refuse one listed twice.
    file_names: HashSet<String>,
    segments: Vec<Segment>,
}

impl Draft {
    /// Takes one entry in; an unknown key, or a known one with the wrong number of
    /// fields, is refused.
    fn take(&mut self, e: &Entry<'_>) -> Result<(), ManifestError> {
        let (key, value, fields) = (e.key, e.value, e.fields());
        match key {
            "created" if fields.len() == 2 => self.created = Some(e.created(fields[0], fields[1])?),
            "executable" => self.executable = Some(PathBuf::from(value)),
            "executable-sha256" => self.sha = Some(value.to_string()),
            "executable-stat" => self.stat = Some(e.executable_stat()?),
            "kernel" => self.kernel = Some(value.to_string()),
            "cpu-flags" => self.cpu_flags = value.split_whitespace().map(String::from).collect(),
            "criu-version" => self.criu_version = Some(value.to_string()),
            "pid" => self.pid = Some(e.number::<i32>(value)?),
            "waiter-tid" => self.waiter_tid = Some(e.number::<i32>(value)?),
            "tids" => {
                self.tids = value
                    .split_whitespace()
                    .map(|t| e.number::<i32>(t))
                    .collect::<Result<_, _>>()?
            }
            "pid-namespace" => self.namespace = Some(e.private_pid_namespace()?),
            "resident-bytes" => self.resident = Some(e.number::<u64>(value)?),
            "restore-option" => self.restore_options.push(value.to_string()),
            "listener" => self.listeners.push(e.listener()?),
            "secret-env" => {
                environ::c_name(value)
                    .map_err(|problem| e.bad(format!("`secret-env`: {problem}")))?;
                self.secret_env.push(value.to_string());
            }
            "plan" => self.plan.push(e.plan()?),
            "file" => {
                let file = e.file()?;
                if !self.file_names.insert(file.name.clone()) {
                    return Err(e.bad(format!("`file` {:?} is listed twice", file.name)));
                }
                self.files.push(file);
            }
            "segment" => {
                let segment = e.segment()?;
                if self.segments.iter().any(|s| s.path == segment.path) {
                    let path = segment.path.display();
                    return Err(e.bad(format!("`segment` {path} is listed twice")));
                }
                self.segments.push(segment);
            }
            "" => {}
            _ => return Err(e.bad(format!("unknown or malformed entry `{key}`"))),
        }
        Ok(())
    }

    fn finish(self, path: &Path) -> Result<Manifest, ManifestError> {
        let missing = |key| ManifestError::Missing {
            path: path.into(),
            key,
        };
        Ok(Manifest {
            created: self.created.ok_or_else(|| missing("created"))?,
            executable: self.executable.ok_or_else(|| missing("executable"))?,
            executable_sha256: self.sha.ok_or_else(|| missing("executable-sha256"))?,
            executable_stat: self.stat.ok_or_else(|| missing("executable-stat"))?,
            kernel: self.kernel.ok_or_else(|| missing("kernel"))?,
            cpu_flags: self.cpu_flags,
            criu_version: self.criu_version.ok_or_else(|| missing("criu-version"))?,
            pid: self.pid.ok_or_else(|| missing("pid"))?,
            waiter_tid: self.waiter_tid.ok_or_else(|| missing("waiter-tid"))?,
            tids: self.tids,
            private_pid_namespace: self.namespace.ok_or_else(|| missing("pid-namespace"))?,
            resident_bytes: self.resident.ok_or_else(|| missing("resident-bytes"))?,
            restore_options: self.restore_options,
            listeners: self.listeners,
            secret_env: self.secret_env,
            plan: self.plan,
            files: self.files,
            segments: self.segments,
        })
    }
}

/// A manifest listing `files` and `segments`, for other modules' tests.
#[cfg(test)]
impl Manifest {
    pub(crate) fn listing(files: Vec<ImageFile>, segments: Vec<Segment>) -> Manifest {
        Manifest {
            files,
            segments,
            ..fuzz::tests_sample()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            created: UNIX_EPOCH + Duration::new(1_700_000_000, 123),
            executable: "/usr/bin/app".into(),
            executable_sha256: "ab".repeat(32),
            executable_stat: ExeStat {
                size: 10,
                mtime_ns: 5,
                dev: 2,
                ino: 3,
            },
            kernel: "6.18.44".into(),
            cpu_flags: vec!["sse2".into(), "avx2".into()],
            criu_version: "4.2.1".into(),
            pid: 42,
            waiter_tid: 42,
            tids: vec![42, 43],
            private_pid_namespace: true,
            resident_bytes: 1 << 20,
            restore_options: vec!["--tcp-close".into()],
            listeners: vec![CarriedListener {
                address: "127.0.0.1:8080".parse().unwrap(),
                shared: false,
            }],
            secret_env: vec!["DB_PASSWORD".into()],
            plan: vec![PlanLine {
                rank: 1,
                kind: "resource".into(),
                depth: 0,
                name: "db pool".into(),
            }],
            files: vec![ImageFile {
                name: "pages-1.img".into(),
                size: 4096,
                blake3: digest::of_bytes(b"pages"),
            }],
            segments: vec![Segment {
                path: "/var/lib/crac/svc.heap/seg-1 two.heap".into(),
                len: 1 << 26,
                digest: digest::of_bytes(b"segment"),
            }],
        }
    }

    fn key() -> HostKey {
        HostKey::for_tests(1)
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("m"), text, &key())
    }

    /// `text` edited, then sealed again with the key, as only its holder can.
    fn resealed(text: String) -> String {
        let body = &text[..text.trim_end().rfind('\n').unwrap() + 1];
        seal::seal(body.to_string(), &key())
    }

    #[test]
    fn an_edited_manifest_is_refused() {
        let text = sample().render(&key());
        for edited in [
            text.replace("cpu-flags sse2 avx2\n", ""),
            text.replace("waiter-tid 42\n", "waiter-tid 43\n"),
            text.lines()
                .filter(|l| !l.starts_with("file "))
                .map(|l| format!("{l}\n"))
                .collect(),
        ] {
            let err = parse(&edited).unwrap_err();
            assert!(
                err.to_string()
                    .contains("the manifest was edited or damaged after the dump (its seal"),
                "{err}"
            );
        }
        let unsealed = text[..text.trim_end().rfind('\n').unwrap() + 1].to_string();
        let err = parse(&unsealed).unwrap_err();
        assert!(
            err.to_string()
                .contains("its last line is not `manifest-seal KEY-ID SEAL`"),
            "{err}"
        );
        let err = Manifest::parse(Path::new("m"), &text, &HostKey::for_tests(2)).unwrap_err();
        assert!(matches!(err, ManifestError::OtherKey { .. }), "{err}");
    }

    #[test]
    fn an_image_of_the_format_without_digests_is_refused_as_outdated() {
        let old = sample()
            .render(&key())
            .replace("format crac-image 3", "format crac-image 1");
        let err = parse(&old).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "m: an image of an earlier crac-rs (\"format crac-image 1\"), whose contents \
                 cannot be checked"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        assert_eq!(parse(&m.render(&key())).unwrap(), m);
    }

    #[test]
    fn out_of_range_values_are_refused_not_wrapped() {
        let text = resealed(
            sample()
                .render(&key())
                .replace("pid 42\n", "pid 4294967338\n"),
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.to_string()
                .contains("`pid`: not a valid number: \"4294967338\""),
            "{err}"
        );
        let created = resealed(sample().render(&key()).replace(
            "created 1700000000 123",
            "created 18446744073709551615 999999999",
        ));
        let err = parse(&created).unwrap_err();
        assert!(
            err.to_string().contains("`created` is out of range"),
            "{err}"
        );
    }

    #[test]
    fn file_names_are_plain_names_listed_once() {
        let line = |name: &str| format!("file 0 {} {name}\n", digest::of_bytes(b""));
        let with = |extra: &str| {
            let text = sample().render(&key());
            resealed(text.replace("manifest-seal", &format!("{extra}manifest-seal")))
        };
        let last = sample().render(&key()).lines().count();
        for (name, problem) in [
            ("../../etc/shadow", "is a path, not a file name"),
            ("/etc/shadow", "is a path, not a file name"),
            ("..", "names a directory"),
            (".", "names a directory"),
            ("a\u{1b}[2Jb", "holds a control character"),
            ("nul\0", "holds a control character"),
        ] {
            let err = parse(&with(&line(name))).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "m: line {last}: `file` {name:?} {problem}: an image lists the plain names \
                     of the files in its own directory"
                )
            );
        }
        let err = parse(&with("file 0 x \n")).unwrap_err();
        assert!(err.to_string().contains("`file` \"\" is empty"), "{err}");
        let twice = with(&line("pages-1.img"));
        let err = parse(&twice).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("m: line {last}: `file` \"pages-1.img\" is listed twice")
        );
    }

    #[test]
    fn a_manifest_larger_than_the_cap_is_refused_with_its_size() {
        let path = Path::new("m");
        assert!(Manifest::text(path, &vec![b'a'; MAX_BYTES as usize]).is_ok());
        let err = Manifest::text(path, &vec![b'a'; MAX_BYTES as usize + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m: 4194305 bytes, more than a manifest may hold (4194304); not an image crac-rs wrote"
        );
        let err = Manifest::text(path, b"\xff").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m: not UTF-8 text; not an image crac-rs wrote"
        );
    }

    #[test]
    fn foreign_and_damaged_manifests_are_refused_with_the_reason() {
        let err = parse("{\"json\": true}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m: not a crac-rs image manifest"),
            "{err}"
        );
        let text = resealed(
            sample()
                .render(&key())
                .replace("pid 42\n", "pid forty-two\n"),
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.to_string()
                .contains("`pid`: not a valid number: \"forty-two\""),
            "{err}"
        );
        let text = resealed(sample().render(&key()).replace("waiter-tid 42\n", ""));
        assert_eq!(
            parse(&text).unwrap_err().to_string(),
            "m: missing `waiter-tid`"
        );
    }
}

/// The parser faces whatever is in an image directory: it must refuse, never panic.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// A manifest whose seal matches, around `body`.
    fn sealed(body: &str) -> String {
        seal::seal(format!("format {FORMAT}\n{body}"), &HostKey::for_tests(1))
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("m"), text, &HostKey::for_tests(1))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_refused_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(parse(&text).is_err());
        }

        #[test]
        fn arbitrary_sealed_lines_parse_or_are_refused_cleanly(
            lines in proptest::collection::vec(
                (prop::sample::select(vec![
                    "created", "executable", "executable-sha256", "executable-stat", "kernel",
                    "cpu-flags", "criu-version", "pid", "waiter-tid", "tids", "pid-namespace",
                    "resident-bytes", "restore-option", "listener", "secret-env", "plan", "file",
                    "segment", "other",
                ]), "[ -~]{0,40}"),
                0..24,
            )
        ) {
            let body: String = lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            // Ok or Err, never a panic; an Ok renders back to an equal manifest
            if let Ok(m) = parse(&sealed(&body)) {
                prop_assert_eq!(parse(&m.render(&HostKey::for_tests(1))).unwrap(), m);
            }
        }

        /// `file` lines of any bytes (control characters, `/`, `..`, NUL, non-UTF-8
        /// made lossy): never a panic, and every name accepted is a plain one, unique.
        #[test]
        fn only_plain_unique_file_names_are_accepted(
            names in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..24)
                        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                    "(\\.|\\.\\.|/|[a-z]|\\x00|\\x1b|\\n){0,6}",
                ],
                0..12,
            )
        ) {
            let mut body = tests_sample().render(&HostKey::for_tests(1));
            body.truncate(body.rfind("manifest-seal").unwrap());
            let body = body.strip_prefix(&format!("format {FORMAT}\n")).unwrap().to_string()
                + &names.iter().map(|n| format!("file 0 {} {n}\n", digest::of_bytes(b""))).collect::<String>();
            if let Ok(m) = parse(&sealed(&body)) {
                let mut seen = HashSet::new();
                for f in &m.files {
                    prop_assert!(plain_name(&f.name).is_ok(), "accepted {:?}", f.name);
                    prop_assert!(!f.name.contains('/') && f.name != ".." && f.name != ".");
                    prop_assert!(!f.name.chars().any(char::is_control), "accepted {:?}", f.name);
                    prop_assert!(seen.insert(f.name.clone()), "accepted {:?} twice", f.name);
                }
            }
        }

        #[test]
        fn names_with_spaces_survive_the_round_trip(name in "[ -~]{1,40}", file in "[!-.0-~][ -.0-~]{0,30}") {
            prop_assume!(file != "." && file != "..");
            let mut m = tests_sample();
            m.plan[0].name = name;
            m.files[0].name = file;
            prop_assert_eq!(parse(&m.render(&HostKey::for_tests(1))).unwrap(), m);
        }
    }

    #[test]
    fn segments_are_absolute_plain_paths_listed_once() {
        let mut body = tests_sample().render(&HostKey::for_tests(1));
        body.truncate(body.rfind("manifest-seal").unwrap());
        let line = |path: &str| format!("segment 4096 {} {path}\n", digest::of_bytes(b""));
        let with = |lines: &[&str]| {
            let text = body.clone() + &lines.iter().map(|p| line(p)).collect::<String>();
            parse(&seal::seal(text, &HostKey::for_tests(1)))
        };
        let m = with(&["/x/svc.heap/seg 1.heap"]).unwrap();
        assert_eq!(m.segments[0].path, Path::new("/x/svc.heap/seg 1.heap"));
        assert_eq!(m.segments[0].len, 4096);
        for (path, problem) in [
            ("svc.heap/seg", "is not an absolute path"),
            ("/x/../etc/shadow", "holds `.` or `..`"),
            ("/x/\u{1b}[2J", "holds a control character"),
        ] {
            let err = with(&[path]).unwrap_err().to_string();
            assert!(err.contains(problem), "{path}: {err}");
        }
        let err = with(&["/x/a", "/x/a"]).unwrap_err().to_string();
        assert!(err.contains("/x/a is listed twice"), "{err}");
    }

    pub(super) fn tests_sample() -> Manifest {
        Manifest {
            created: UNIX_EPOCH,
            executable: "/app".into(),
            executable_sha256: "00".repeat(32),
            executable_stat: ExeStat {
                size: 1,
                mtime_ns: 2,
                dev: 3,
                ino: 4,
            },
            kernel: "6".into(),
            cpu_flags: vec![],
            criu_version: "4".into(),
            pid: 1,
            waiter_tid: 1,
            tids: vec![1],
            private_pid_namespace: false,
            resident_bytes: 0,
            restore_options: vec![],
            listeners: vec![],
            secret_env: vec![],
            plan: vec![PlanLine {
                rank: 0,
                kind: "resource".into(),
                depth: 0,
                name: String::new(),
            }],
            files: vec![ImageFile {
                name: "core-1.img".into(),
                size: 0,
                blake3: digest::of_bytes(b""),
            }],
            segments: vec![],
        }
    }
}
