//! The image format: `crac-manifest`, a versioned text file written last into the image
//! directory. Its presence means the image is complete; its contents let a restore
//! refuse an image that cannot work here before CRIU touches anything.
//!
//! One `key value` pair a line; `plan` and `file` repeat. Version 1 keys:
//!
//! | key | value |
//! |---|---|
//! | `format` | `crac-image 1` (first line) |
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
//! | `plan` | `rank kind depth name`, the checkpoint plan in order (repeats) |
//! | `file` | `size name` of each image file (repeats) |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;

pub(crate) const FILE_NAME: &str = "crac-manifest";
const FORMAT: &str = "crac-image 1";

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

/// A listening TCP socket carried in the image: every restored copy gets it, so
/// concurrent copies share it — which only `SO_REUSEPORT` makes a choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CarriedListener {
    pub(crate) address: std::net::SocketAddr,
    pub(crate) shared: bool,
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
    pub(crate) plan: Vec<PlanLine>,
    pub(crate) files: Vec<(String, u64)>,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    #[error("{path}: not a crac-rs image manifest (first line {found:?}, expected {FORMAT:?})")]
    Foreign { path: PathBuf, found: String },
    #[error("{path}: line {line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: missing `{key}`")]
    Missing { path: PathBuf, key: &'static str },
}

impl Manifest {
    pub(crate) fn render(&self) -> String {
        let mut out = format!("format {FORMAT}\n");
        let created = self.created.duration_since(UNIX_EPOCH).unwrap_or_default();
        let s = &self.executable_stat;
        let _ = writeln!(
            out,
            "created {} {}",
            created.as_secs(),
            created.subsec_nanos()
        );
        let _ = writeln!(out, "executable {}", self.executable.display());
        let _ = writeln!(out, "executable-sha256 {}", self.executable_sha256);
        let _ = writeln!(
            out,
            "executable-stat {} {} {} {}",
            s.size, s.mtime_ns, s.dev, s.ino
        );
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
        for p in &self.plan {
            let name = p.name.replace(['\n', '\r'], " ");
            let _ = writeln!(out, "plan {} {} {} {name}", p.rank, p.kind, p.depth);
        }
        for (name, size) in &self.files {
            let _ = writeln!(out, "file {size} {name}");
        }
        out
    }

    pub(crate) fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let first = text.lines().next().unwrap_or("");
        if first != format!("format {FORMAT}") {
            return Err(ManifestError::Foreign {
                path: path.into(),
                found: first.chars().take(40).collect(),
            });
        }
        let bad = |line: usize, problem: String| ManifestError::Malformed {
            path: path.into(),
            line,
            problem,
        };
        let mut m = Draft::default();
        for (i, line) in text.lines().enumerate().skip(1) {
            let n = i + 1;
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let fields: Vec<&str> = value.split(' ').collect();
            match key {
                "created" if fields.len() == 2 => {
                    let (secs, nanos): (u64, u32) = (
                        number(path, n, key, fields[0])?,
                        number(path, n, key, fields[1])?,
                    );
                    let since_epoch =
                        Duration::from_secs(secs).checked_add(Duration::from_nanos(nanos.into()));
                    m.created = Some(
                        since_epoch
                            .and_then(|d| UNIX_EPOCH.checked_add(d))
                            .ok_or_else(|| bad(n, "`created` is out of range".into()))?,
                    );
                }
                "executable" => m.executable = Some(PathBuf::from(value)),
                "executable-sha256" => m.sha = Some(value.to_string()),
                "executable-stat" if fields.len() == 4 => {
                    m.stat = Some(ExeStat {
                        size: number::<u64>(path, n, key, fields[0])?,
                        mtime_ns: number::<i128>(path, n, key, fields[1])?,
                        dev: number::<u64>(path, n, key, fields[2])?,
                        ino: number::<u64>(path, n, key, fields[3])?,
                    })
                }
                "kernel" => m.kernel = Some(value.to_string()),
                "cpu-flags" => m.cpu_flags = value.split_whitespace().map(String::from).collect(),
                "criu-version" => m.criu_version = Some(value.to_string()),
                "pid" => m.pid = Some(number::<i32>(path, n, key, value)?),
                "waiter-tid" => m.waiter_tid = Some(number::<i32>(path, n, key, value)?),
                "tids" => {
                    m.tids = value
                        .split_whitespace()
                        .map(|t| number::<i32>(path, n, key, t))
                        .collect::<Result<_, _>>()?
                }
                "pid-namespace" => {
                    m.namespace = Some(match value {
                        "private" => true,
                        "host" => false,
                        other => {
                            return Err(bad(
                                n,
                                format!("`pid-namespace`: {other:?} is not private or host"),
                            ));
                        }
                    })
                }
                "resident-bytes" => m.resident = Some(number::<u64>(path, n, key, value)?),
                "restore-option" => m.restore_options.push(value.to_string()),
                "listener" => {
                    let parsed = match value.split_once(' ') {
                        Some((address, "shared")) => address.parse().ok().map(|a| (a, true)),
                        Some((address, "exclusive")) => address.parse().ok().map(|a| (a, false)),
                        _ => None,
                    };
                    let (address, shared) = parsed.ok_or_else(|| {
                        bad(
                            n,
                            format!(
                                "`listener`: expected `ADDRESS shared|exclusive`, not {value:?}"
                            ),
                        )
                    })?;
                    m.listeners.push(CarriedListener { address, shared });
                }
                "plan" => {
                    let mut parts = value.splitn(4, ' ');
                    let (Some(rank), Some(kind), Some(depth), Some(name)) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        return Err(bad(n, "`plan` needs rank, kind, depth and name".into()));
                    };
                    m.plan.push(PlanLine {
                        rank: number::<u32>(path, n, key, rank)?,
                        kind: kind.to_string(),
                        depth: number::<usize>(path, n, key, depth)?,
                        name: name.to_string(),
                    });
                }
                "file" => {
                    let Some((size, name)) = value.split_once(' ') else {
                        return Err(bad(n, "`file` needs size and name".into()));
                    };
                    m.files
                        .push((name.to_string(), number::<u64>(path, n, key, size)?));
                }
                "" => {}
                _ => return Err(bad(n, format!("unknown or malformed entry `{key}`"))),
            }
        }
        m.finish(path)
    }

    /// Reads `DIR/crac-manifest`.
    pub(crate) fn read(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Image {
            dir: dir.into(),
            problem: if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no {FILE_NAME}: not a complete crac-rs image (a dump that did not finish, or \
                     another directory); take a new checkpoint"
                )
            } else {
                format!("reading {FILE_NAME}: {e}")
            },
        })?;
        Manifest::parse(&path, &text).map_err(|e| Error::Image {
            dir: dir.into(),
            problem: e.to_string(),
        })
    }
}

/// One numeric field, parsed into its own type so that out-of-range values are refused
/// rather than wrapped.
fn number<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    key: &str,
    text: &str,
) -> Result<T, ManifestError> {
    text.parse().map_err(|_| ManifestError::Malformed {
        path: path.into(),
        line,
        problem: format!("`{key}`: not a valid number: {text:?}"),
    })
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
    plan: Vec<PlanLine>,
    files: Vec<(String, u64)>,
}

impl Draft {
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
            plan: self.plan,
            files: self.files,
        })
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
            plan: vec![PlanLine {
                rank: 1,
                kind: "resource".into(),
                depth: 0,
                name: "db pool".into(),
            }],
            files: vec![("pages-1.img".into(), 4096)],
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = sample();
        assert_eq!(Manifest::parse(Path::new("m"), &m.render()).unwrap(), m);
    }

    #[test]
    fn out_of_range_values_are_refused_not_wrapped() {
        let text = sample().render().replace("pid 42\n", "pid 4294967338\n");
        let err = Manifest::parse(Path::new("m"), &text).unwrap_err();
        assert!(
            err.to_string()
                .contains("`pid`: not a valid number: \"4294967338\""),
            "{err}"
        );
        let created = sample().render().replace(
            "created 1700000000 123",
            "created 18446744073709551615 999999999",
        );
        let err = Manifest::parse(Path::new("m"), &created).unwrap_err();
        assert!(
            err.to_string().contains("`created` is out of range"),
            "{err}"
        );
    }

    #[test]
    fn foreign_and_damaged_manifests_are_refused_with_the_reason() {
        let err = Manifest::parse(Path::new("m"), "{\"json\": true}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m: not a crac-rs image manifest"),
            "{err}"
        );
        let text = sample().render().replace("pid 42\n", "pid forty-two\n");
        let err = Manifest::parse(Path::new("m"), &text).unwrap_err();
        assert!(
            err.to_string()
                .contains("`pid`: not a valid number: \"forty-two\""),
            "{err}"
        );
        let text = sample().render().replace("waiter-tid 42\n", "");
        assert_eq!(
            Manifest::parse(Path::new("m"), &text)
                .unwrap_err()
                .to_string(),
            "m: missing `waiter-tid`"
        );
    }
}
