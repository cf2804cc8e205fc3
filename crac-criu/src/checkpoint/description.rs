//! What the manifest is made of, typed, as it travels from the process to CRIU's
//! post-dump action script: the process's [`Description`] of itself (written into the
//! staging directory before the dump), and the [`Identity`] the dump helper finds while
//! the process prepares (passed to CRIU's action script in its environment). The action
//! script makes the [`Manifest`] of the two, in [`Description::into_manifest`]: the one
//! place a new image's manifest is put together.
//!
//! Both encodings are here, each beside its decoding: the two sides are the same
//! executable, so they change together.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::env::DUMP_IDENTITY;
use crate::heap::Segment;
use crate::image::manifest::{CarriedListener, ExeStat, Manifest, PlanLine};
use crate::image::sha256;
use crate::sys::criu;

/// What only the process knows of its image: everything in the manifest but the
/// executable's identity, CRIU's version, and the image files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description {
    pub(crate) created: SystemTime,
    pub(crate) executable: PathBuf,
    pub(crate) kernel: String,
    pub(crate) cpu_flags: Vec<String>,
    pub(crate) pid: i32,
    pub(crate) waiter_tid: i32,
    pub(crate) tids: Vec<i32>,
    pub(crate) private_pid_namespace: bool,
    pub(crate) resident_bytes: u64,
    pub(crate) restore_options: Vec<String>,
    pub(crate) listeners: Vec<CarriedListener>,
    pub(crate) secret_env: Vec<String>,
    pub(crate) plan: Vec<PlanLine>,
    /// The mapped heap's sealed segments (`crate::heap`), which the image maps.
    pub(crate) segments: Vec<Segment>,
}

/// What the dump helper finds for the manifest while the process prepares (hashing the
/// executable takes a while, and the process need not wait for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) executable_sha256: String,
    pub(crate) executable_stat: ExeStat,
    pub(crate) criu_version: String,
}

impl Description {
    /// The manifest of the image just dumped; publishing lists its files.
    pub(crate) fn into_manifest(self, identity: Identity) -> Manifest {
        Manifest {
            created: self.created,
            executable: self.executable,
            executable_sha256: identity.executable_sha256,
            executable_stat: identity.executable_stat,
            kernel: self.kernel,
            cpu_flags: self.cpu_flags,
            criu_version: identity.criu_version,
            pid: self.pid,
            waiter_tid: self.waiter_tid,
            tids: self.tids,
            private_pid_namespace: self.private_pid_namespace,
            resident_bytes: self.resident_bytes,
            restore_options: self.restore_options,
            listeners: self.listeners,
            secret_env: self.secret_env,
            plan: self.plan,
            files: Vec::new(),
            segments: self.segments,
        }
    }

    /// One value a line; a list is its length, then its items (a plan line's name last,
    /// as it may hold spaces). Nothing here holds a newline: plan names lose theirs.
    pub(crate) fn encode(&self) -> String {
        let created = self.created.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut lines = vec![
            created.as_secs().to_string(),
            created.subsec_nanos().to_string(),
            self.executable.display().to_string(),
            self.kernel.clone(),
            self.cpu_flags.join(" "),
            self.pid.to_string(),
            self.waiter_tid.to_string(),
            joined(&self.tids),
            u8::from(self.private_pid_namespace).to_string(),
            self.resident_bytes.to_string(),
        ];
        let mut list = |items: Vec<String>| {
            lines.push(items.len().to_string());
            lines.extend(items);
        };
        list(self.restore_options.clone());
        list(
            self.listeners
                .iter()
                .map(|l| format!("{} {}", u8::from(l.shared), l.address))
                .collect(),
        );
        list(self.secret_env.clone());
        list(
            self.plan
                .iter()
                .map(|p| {
                    let name = p.name.replace(['\n', '\r'], " ");
                    format!("{} {} {} {name}", p.rank, p.depth, p.kind)
                })
                .collect(),
        );
        list(
            self.segments
                .iter()
                .map(|s| format!("{} {} {}", s.len, s.digest, s.path.display()))
                .collect(),
        );
        lines.join("\n") + "\n"
    }

    /// Reads what [`Description::encode`] wrote.
    pub(crate) fn decode(text: &str) -> std::io::Result<Description> {
        let mut lines = Lines(text.lines());
        let (secs, nanos): (u64, u32) = (lines.parse()?, lines.parse()?);
        let created = Duration::from_secs(secs)
            .checked_add(Duration::from_nanos(nanos.into()))
            .and_then(|since| UNIX_EPOCH.checked_add(since))
            .ok_or_else(|| malformed("its creation time"))?;
        let mut d = Description {
            created,
            executable: lines.next()?.into(),
            kernel: lines.next()?.to_string(),
            cpu_flags: lines.next()?.split_whitespace().map(String::from).collect(),
            pid: lines.parse()?,
            waiter_tid: lines.parse()?,
            tids: lines
                .next()?
                .split_whitespace()
                .map(|t| t.parse().map_err(|_| malformed("a thread id")))
                .collect::<Result<_, _>>()?,
            private_pid_namespace: lines.next()? == "1",
            resident_bytes: lines.parse()?,
            restore_options: Vec::new(),
            listeners: Vec::new(),
            secret_env: Vec::new(),
            plan: Vec::new(),
            segments: Vec::new(),
        };
        d.restore_options = lines.list()?.map(String::from).collect();
        for listener in lines.list()? {
            let (shared, address) = listener
                .split_once(' ')
                .ok_or_else(|| malformed("a listener"))?;
            d.listeners.push(CarriedListener {
                address: address.parse().map_err(|_| malformed("a listener"))?,
                shared: shared == "1",
            });
        }
        d.secret_env = lines.list()?.map(String::from).collect();
        for line in lines.list()? {
            let mut parts = line.splitn(4, ' ');
            let mut part = || parts.next().ok_or_else(|| malformed("a plan line"));
            let (rank, depth, kind, name) = (part()?, part()?, part()?, part()?);
            d.plan.push(PlanLine {
                rank: rank.parse().map_err(|_| malformed("a plan rank"))?,
                depth: depth.parse().map_err(|_| malformed("a plan depth"))?,
                kind: kind.to_string(),
                name: name.to_string(),
            });
        }
        for line in lines.list()? {
            let mut parts = line.splitn(3, ' ');
            let mut part = || parts.next().ok_or_else(|| malformed("a heap segment"));
            let (len, digest, path) = (part()?, part()?, part()?);
            d.segments.push(Segment {
                len: len
                    .parse()
                    .map_err(|_| malformed("a heap segment's size"))?,
                digest: digest.to_string(),
                path: path.into(),
            });
        }
        Ok(d)
    }
}

impl Identity {
    /// The identity of `exe` (this very executable) and the version of `criu`.
    pub(crate) fn of(exe: &Path, criu: &Path) -> std::io::Result<Identity> {
        Ok(Identity {
            executable_sha256: sha256(exe)?,
            executable_stat: ExeStat::of(exe)?,
            criu_version: criu::version(criu)?,
        })
    }

    /// The variable that passes it to CRIU's action script.
    pub(crate) fn to_env(&self) -> (&'static str, String) {
        let value = format!(
            "{}\n{}\n{}",
            self.executable_sha256, self.executable_stat, self.criu_version
        );
        (DUMP_IDENTITY, value)
    }

    /// What [`Identity::to_env`] passed.
    pub(crate) fn from_env() -> std::io::Result<Identity> {
        let value = std::env::var(DUMP_IDENTITY)
            .map_err(|_| std::io::Error::other(format!("{DUMP_IDENTITY} not set")))?;
        Identity::parse(&value)
    }

    fn parse(value: &str) -> std::io::Result<Identity> {
        // Exactly three fields, split on every newline: an empty CRIU version is one.
        let malformed =
            || std::io::Error::other(format!("{DUMP_IDENTITY} is malformed: {value:?}"));
        let [sha256, stat, criu_version] = value.split('\n').collect::<Vec<_>>()[..] else {
            return Err(malformed());
        };
        Ok(Identity {
            executable_sha256: sha256.to_string(),
            executable_stat: stat.parse().map_err(|_| malformed())?,
            criu_version: criu_version.to_string(),
        })
    }
}

fn joined(numbers: &[i32]) -> String {
    numbers
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn malformed(what: &str) -> std::io::Error {
    std::io::Error::other(format!("the dump's description is malformed at {what}"))
}

/// The lines of an encoding, read in order.
struct Lines<'t>(std::str::Lines<'t>);

impl<'t> Lines<'t> {
    fn next(&mut self) -> std::io::Result<&'t str> {
        self.0.next().ok_or_else(|| malformed("its end"))
    }

    fn parse<T: FromStr>(&mut self) -> std::io::Result<T> {
        let line = self.next()?;
        line.parse().map_err(|_| malformed(line))
    }

    /// A list: its length, then as many lines.
    fn list(&mut self) -> std::io::Result<impl Iterator<Item = &'t str>> {
        let len: usize = self.parse()?;
        let items: Vec<_> = (0..len).map(|_| self.next()).collect::<Result<_, _>>()?;
        Ok(items.into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_reads_back_as_written() {
        let description = Description {
            created: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            executable: "/usr/bin/my app".into(),
            kernel: "6.18.44".into(),
            cpu_flags: vec!["sse2".into(), "avx2".into()],
            pid: 42,
            waiter_tid: 43,
            tids: vec![42, 43],
            private_pid_namespace: true,
            resident_bytes: 1 << 20,
            restore_options: vec!["--tcp-close".into()],
            listeners: vec![CarriedListener {
                address: "[::1]:8080".parse().unwrap(),
                shared: true,
            }],
            secret_env: vec!["DB_PASSWORD".into()],
            plan: vec![PlanLine {
                rank: 1,
                kind: "resource".into(),
                depth: 2,
                name: "db pool (src/main.rs:3)".into(),
            }],
            segments: vec![Segment {
                path: "/var/lib/crac/my app.heap/seg-1.heap".into(),
                len: 1 << 26,
                digest: "cd".repeat(32),
            }],
        };
        let encoded = description.encode();
        assert_eq!(Description::decode(&encoded).unwrap(), description);
        let truncated = &encoded[..encoded.len() / 2];
        assert!(Description::decode(truncated).is_err());
    }

    #[test]
    fn a_creation_time_out_of_range_is_refused_not_a_panic() {
        let text = format!("{}\n999999999\n", u64::MAX);
        let error = Description::decode(&text).unwrap_err();
        assert!(error.to_string().contains("creation time"), "{error}");
    }

    #[test]
    fn an_identity_reads_back_even_with_an_empty_criu_version() {
        let identity = Identity {
            executable_sha256: "ab".repeat(32),
            executable_stat: ExeStat {
                size: 10,
                mtime_ns: -5,
                dev: 2,
                ino: 3,
            },
            criu_version: String::new(),
        };
        let (_, value) = identity.to_env();
        assert_eq!(Identity::parse(&value).unwrap(), identity);
        assert!(Identity::parse("ab\n10 5 2").is_err());
    }
}
