//! `crac doctor`: what this host allows crac to do, one check a line, each failing one
//! with what to do. The mode is the one `crac` would use here: *root*, or *rootless*
//! (not root: a user namespace of its own, `criu restore --unprivileged`, see the
//! guide's "Without root"). A check is needed by one mode, by both, or by none (then it
//! only informs); the verdict is whether the mode in use works.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::env::PACK_IDENTITY;
use crate::image::key::{HostKey, KeyError};
use crate::image::manifest::Manifest;
use crate::image::pack::describe::Verdict;
use crate::launcher::{inspect, inspect_packed};
use crate::sys::{criu, privileges};

/// How `crac` runs CRIU on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As root: CRIU with every capability.
    Root,
    /// Not root: in a user namespace of crac's own, CRIU restoring `--unprivileged`.
    Rootless,
    /// Root without CAP_SYS_ADMIN, with CAP_CHECKPOINT_RESTORE (a least-privilege
    /// container): restores only, `--unprivileged`, in this PID namespace.
    RestoreOnly,
}

/// Every mode, in the order verdicts are given.
const MODES: [Mode; 3] = [Mode::Root, Mode::Rootless, Mode::RestoreOnly];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Rootless => "rootless",
            Mode::RestoreOnly => "restore-only",
        }
    }
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As crac needs it.
    Ok,
    /// Works, at a cost (slower, or a promise weakened): the remedy says how to avoid it.
    Warn,
    /// Missing: what needs it cannot work.
    Fail,
}

/// Who needs a check to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NeededBy {
    /// Every mode.
    Always,
    /// The modes that checkpoint (root and rootless).
    Checkpointing,
    /// One mode only.
    In(Mode),
    /// Nobody: it informs.
    Never,
}

/// One check: what it looked at, what it found, and what to do when it is not OK.
#[derive(Debug, Clone)]
pub struct Check {
    /// What is checked, e.g. `user namespaces`.
    pub name: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was found.
    pub found: String,
    /// What to do, when it is not OK.
    pub remedy: Option<String>,
    needed: NeededBy,
}

impl Check {
    fn new(
        name: &'static str,
        needed: NeededBy,
        status: Status,
        found: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status,
            found: found.into(),
            remedy: None,
            needed,
        }
    }

    fn ok(name: &'static str, needed: NeededBy, found: impl Into<String>) -> Check {
        Check::new(name, needed, Status::Ok, found)
    }

    fn remedy(mut self, remedy: impl Into<String>) -> Check {
        self.remedy = Some(remedy.into());
        self
    }

    /// Whether this check failing stops `mode`.
    fn stops(&self, mode: Mode) -> bool {
        self.status == Status::Fail
            && match self.needed {
                NeededBy::Always => true,
                NeededBy::Checkpointing => mode != Mode::RestoreOnly,
                NeededBy::In(needed) => needed == mode,
                NeededBy::Never => false,
            }
    }
}

/// The checks of this host, and the mode they were judged for.
#[derive(Debug)]
pub struct Report {
    /// The mode `crac` uses here.
    pub mode: Mode,
    /// Every check, in the order printed.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check the mode in use needs passed.
    pub fn works(&self) -> bool {
        !self.checks.iter().any(|c| c.stops(self.mode))
    }

    /// One line a check (`OK`, `WARN`, `FAIL`), its remedy indented below, then the
    /// verdict for each mode.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(out, "{status} {}: {}", c.name, c.found);
            if let Some(remedy) = &c.remedy {
                let _ = writeln!(out, "       do: {remedy}");
            }
        }
        // Root's checks say nothing of root mode when run without root; as root, those
        // of rootless mode tell what an ordinary user could do.
        let modes: &[Mode] = match self.mode {
            Mode::Root => &[Mode::Root, Mode::Rootless],
            Mode::Rootless => &[Mode::Rootless],
            Mode::RestoreOnly => &[Mode::RestoreOnly],
        };
        for &mode in modes {
            let using = if mode == self.mode {
                " (in use)"
            } else {
                " (an ordinary user)"
            };
            let stops: Vec<&str> = self
                .checks
                .iter()
                .filter(|c| c.stops(mode))
                .map(|c| c.name)
                .collect();
            let verdict = if stops.is_empty() {
                "works".to_string()
            } else {
                format!("does not work: {}", stops.join(", "))
            };
            let _ = writeln!(out, "mode {}{using}: {verdict}", mode.name());
        }
        out.trim_end().to_string()
    }

    /// One JSON object: the mode, whether it works, and every check.
    pub fn to_json(&self) -> String {
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                let status = match c.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "fail",
                };
                let modes: Vec<String> = MODES
                    .iter()
                    .filter(|&&mode| match c.needed {
                        NeededBy::Always => true,
                        NeededBy::Checkpointing => mode != Mode::RestoreOnly,
                        NeededBy::In(needed) => needed == mode,
                        NeededBy::Never => false,
                    })
                    .map(|mode| format!(r#""{}""#, mode.name()))
                    .collect();
                let needed_by = format!("[{}]", modes.join(","));
                format!(
                    r#"{{"name":{},"status":"{status}","found":{},"remedy":{},"needed_by":{needed_by}}}"#,
                    inspect::json(c.name),
                    inspect::json(&c.found),
                    c.remedy.as_deref().map_or("null".into(), inspect::json),
                )
            })
            .collect();
        format!(
            r#"{{"mode":"{}","works":{},"checks":[{}]}}"#,
            self.mode.name(),
            self.works(),
            checks.join(",")
        )
    }
}

/// Checks this host, and `image` if given (whether this host can restore it): an image
/// directory, or a packed image (`crac pack`), whose head is decrypted with the age
/// identities in `identity` (else `CRAC_PACK_IDENTITY`'s) if it is encrypted.
pub fn doctor(image: Option<&Path>, identity: Option<&Path>) -> Report {
    let mode = if privileges::rootless() {
        Mode::Rootless
    } else if privileges::restore_only() {
        Mode::RestoreOnly
    } else {
        Mode::Root
    };
    let criu = crac_shared::criu::criu_binary();
    let mut checks = vec![
        kernel(),
        user(mode),
        criu_found(
            criu.as_ref().ok().map(PathBuf::as_path),
            criu.as_ref().err(),
        ),
    ];
    if let Ok(criu) = &criu {
        checks.push(criu_check(criu, mode));
        checks.push(file_capabilities(criu));
    }
    checks.extend([
        root_capabilities(mode),
        user_namespaces(mode),
        time_namespaces(mode),
        seccomp(mode),
        ptrace_scope(),
        checkpoint_restore_bounding(),
        kdat_cache(mode),
        image_key(),
        lazy_pages(mode),
    ]);
    match image {
        Some(file) if crate::image::pack::cache::is_packed(file) => {
            checks.extend(packed(file, identity, mode));
        }
        Some(dir) => checks.push(restorable(dir, mode)),
        None => {}
    }
    Report { mode, checks }
}

fn kernel() -> Check {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    Check::ok("kernel", NeededBy::Never, release)
}

fn user(mode: Mode) -> Check {
    let uid = nix::unistd::geteuid();
    let found = match mode {
        Mode::Root => "root (uid 0): root mode".to_string(),
        Mode::Rootless => {
            format!("uid {uid}, not root: rootless mode (a user namespace of crac's own)")
        }
        Mode::RestoreOnly => "root without CAP_SYS_ADMIN, with CAP_CHECKPOINT_RESTORE: \
                              restore-only mode (criu restore --unprivileged in this PID \
                              namespace)"
            .to_string(),
    };
    Check::ok("user", NeededBy::Never, found)
}

fn criu_found(criu: Option<&Path>, missing: Option<&crac_shared::criu::CriuMissing>) -> Check {
    const RUN_INSTALL: &str = "install CRIU 4.1 or newer (scripts/install-criu.sh builds it), or \
                               point CRAC_CRIU at it";
    let (Some(criu), None) = (criu, missing) else {
        let found = missing.map_or("not found".into(), ToString::to_string);
        return Check::new("criu", NeededBy::Always, Status::Fail, found).remedy(RUN_INSTALL);
    };
    match criu::version(criu) {
        Ok(version) if at_least(&version, (3, 18)) => Check::ok(
            "criu",
            NeededBy::Always,
            format!("{}, version {version}", criu.display()),
        ),
        Ok(version) => Check::new(
            "criu",
            NeededBy::Always,
            Status::Fail,
            format!(
                "{}, version {version}: older than 3.18 (no --unprivileged; 3.17 fails on recent kernels)",
                criu.display()
            ),
        )
        .remedy(RUN_INSTALL),
        Err(e) => Check::new(
            "criu",
            NeededBy::Always,
            Status::Fail,
            format!("{} does not run: {e}", criu.display()),
        )
        .remedy(RUN_INSTALL),
    }
}

/// Whether `version` (`4.2.1`) is `min` or newer.
fn at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}

/// `criu check` as the mode runs CRIU: as root, or in a user namespace `--unprivileged`
/// (where only the lack of TCP repair is expected, and not a failure of crac's).
fn criu_check(criu: &Path, mode: Mode) -> Check {
    let mut cmd = match mode {
        Mode::Root | Mode::RestoreOnly => Command::new(criu),
        Mode::Rootless => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--user", "--map-root-user"]).arg(criu);
            cmd
        }
    };
    cmd.arg("check");
    if mode != Mode::Root {
        cmd.arg("--unprivileged");
    }
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => {
            return Check::new(
                "criu check",
                NeededBy::In(mode),
                Status::Fail,
                format!("cannot run it: {e}"),
            );
        }
    };
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Error") && !l.contains("RLIMIT_NOFILE"))
        .collect();
    if text.contains("Looks good") && errors.is_empty() {
        return Check::ok("criu check", NeededBy::In(mode), "looks good");
    }
    // Unprivileged, CRIU cannot use what needs CAP_NET_ADMIN on the host, nor (in a
    // container, whose /proc/sys is read-only) ns_last_pid: said, not failed
    // (`criu restore --unprivileged` does without, and sets PIDs with clone3).
    let network = |l: &&str| {
        l.contains("TCP repair") || l.contains("criu/net.c") || l.contains("ns_last_pid")
    };
    if mode != Mode::Root && errors.iter().all(network) {
        return Check::ok(
            "criu check",
            NeededBy::In(mode),
            "looks good but for what needs CAP_NET_ADMIN on the host: no TCP repair, so \
             established connections are not carried",
        );
    }
    let found = if errors.is_empty() {
        text.lines().last().unwrap_or("failed").to_string()
    } else {
        errors.join("; ")
    };
    Check::new("criu check", NeededBy::In(mode), Status::Fail, found)
        .remedy("install a CRIU that supports this kernel (4.1 or newer: scripts/install-criu.sh)")
}

/// The file capabilities of the `criu` binary: crac does not need any (root mode runs it
/// as root, rootless mode in a user namespace), but they change what CRIU may do.
fn file_capabilities(criu: &Path) -> Check {
    match privileges::file_capabilities(criu) {
        Ok(None) => Check::ok(
            "criu file capabilities",
            NeededBy::Never,
            "none (none needed)",
        ),
        Ok(Some(caps)) => Check::ok(
            "criu file capabilities",
            NeededBy::Never,
            format!(
                "{} (not needed by crac; a setcap'd CRIU whose restorer cannot drop a \
                 capability missing from the bounding set hits a BUG, see `crac doctor`'s \
                 bounding set line)",
                privileges::names(caps)
            ),
        ),
        Err(e) => Check::ok(
            "criu file capabilities",
            NeededBy::Never,
            format!("unknown ({e})"),
        ),
    }
}

/// Root mode needs root's capabilities in the effective set (a container may drop them);
/// restore-only mode the four it restores with.
fn root_capabilities(mode: Mode) -> Check {
    let name = "root's capabilities";
    if mode == Mode::Rootless {
        return Check::ok(name, NeededBy::In(Mode::Root), "not root: not used");
    }
    if mode == Mode::RestoreOnly {
        let missing = privileges::missing_from_effective(privileges::RESTORE_ONLY_SET);
        return if missing == 0 {
            Check::ok(
                name,
                NeededBy::In(Mode::RestoreOnly),
                "CAP_CHECKPOINT_RESTORE, CAP_SETUID, CAP_SETGID, CAP_SETPCAP: all a \
                 restore-only restore uses",
            )
        } else {
            Check::new(
                name,
                NeededBy::In(Mode::RestoreOnly),
                Status::Fail,
                format!("this process lacks {}", privileges::names(missing)),
            )
            .remedy("docker/podman run --cap-add CHECKPOINT_RESTORE,SETUID,SETGID,SETPCAP")
        };
    }
    let missing = privileges::missing(privileges::TO_RESTORE);
    match privileges::problem("a restore as root", &missing, false) {
        None => Check::ok(name, NeededBy::In(Mode::Root), "all a restore uses"),
        Some(problem) => Check::new(name, NeededBy::In(Mode::Root), Status::Fail, problem)
            .remedy("grant them as said, or run crac as an ordinary user (rootless mode)"),
    }
}

/// Rootless mode makes a user namespace, with PID and mount namespaces in it: the
/// sysctls that forbid that, then the real thing.
fn user_namespaces(mode: Mode) -> Check {
    let name = "user namespaces";
    let needed = NeededBy::In(Mode::Rootless);
    if mode == Mode::RestoreOnly {
        return Check::ok(name, needed, "not used in restore-only mode");
    }
    let sysctl = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|v| v.trim().to_string())
    };
    if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Check::new(name, needed, Status::Fail, "user.max_user_namespaces is 0").remedy(
            "sysctl -w user.max_user_namespaces=15000 (as root; in /etc/sysctl.d to keep it)",
        );
    }
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Check::new(
            name,
            needed,
            Status::Fail,
            "kernel.unprivileged_userns_clone is 0: only root may make them",
        )
        .remedy(
            "sysctl -w kernel.unprivileged_userns_clone=1 (as root; in /etc/sysctl.d to keep it)",
        );
    }
    let apparmor = sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let probe = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => Check::ok(
            name,
            needed,
            format!(
                "an ordinary user may make them (user.max_user_namespaces {})",
                sysctl("/proc/sys/user/max_user_namespaces").unwrap_or_else(|| "unknown".into())
            ),
        ),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let remedy = if apparmor.as_deref() == Some("1") {
                "kernel.apparmor_restrict_unprivileged_userns is 1: allow crac and criu an \
                 AppArmor profile with `userns,`, or sysctl -w \
                 kernel.apparmor_restrict_unprivileged_userns=0 (as root)"
            } else {
                "allow unprivileged user namespaces (user.max_user_namespaces, \
                 kernel.unprivileged_userns_clone), or run crac as root"
            };
            Check::new(
                name,
                needed,
                Status::Fail,
                format!("`unshare --user --map-root-user --pid --fork --mount-proc` failed: {why}"),
            )
            .remedy(remedy)
        }
        Err(e) => Check::new(
            name,
            needed,
            Status::Fail,
            format!("cannot run unshare: {e}"),
        )
        .remedy("install util-linux's unshare"),
    }
}

/// A restored process keeps its monotonic clock through a time namespace: as root CRIU
/// makes it; rootless, crac makes it inside its user namespace.
fn time_namespaces(mode: Mode) -> Check {
    let name = "time namespaces";
    if !Path::new("/proc/self/ns/time").exists() {
        return Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            "not in this kernel: a restored process's monotonic clock (Instant) jumps by the \
             time spent in the image",
        )
        .remedy("a kernel 5.6 or newer with CONFIG_TIME_NS");
    }
    if mode == Mode::Root {
        return Check::ok(name, NeededBy::Never, "available: monotonic time is kept");
    }
    if mode == Mode::RestoreOnly {
        return Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            "restore-only: none can be made without CAP_SYS_ADMIN, so a restored process's \
             monotonic clock (Instant) jumps by the time spent in the image",
        )
        .remedy("restore as root, or rootless (a user namespace makes one)");
    }
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--time", "--fork", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if probe.is_ok_and(|s| s.success()) {
        Check::ok(
            name,
            NeededBy::Never,
            "available inside a user namespace: monotonic time is kept",
        )
    } else {
        Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            "cannot be made inside a user namespace: a rootless restore's monotonic clock \
             jumps by the time spent in the image",
        )
    }
}

fn seccomp(mode: Mode) -> Check {
    let name = "seccomp";
    if privileges::under_seccomp_filter() && mode == Mode::RestoreOnly {
        Check::ok(
            name,
            NeededBy::Checkpointing,
            "a filter: restores work under it (checkpoints would not)",
        )
    } else if privileges::under_seccomp_filter() {
        Check::new(
            name,
            NeededBy::Checkpointing,
            Status::Fail,
            "this process runs under a seccomp filter: CRIU cannot checkpoint a process \
             started here (restoring works)",
        )
        .remedy("run without a filter (docker/podman --security-opt seccomp=unconfined)")
    } else {
        Check::ok(name, NeededBy::Checkpointing, "no filter")
    }
}

/// Yama's `ptrace_scope` 3 forbids every ptrace, CRIU's included.
fn ptrace_scope() -> Check {
    let name = "ptrace scope";
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Err(_) => Check::ok(name, NeededBy::Checkpointing, "no Yama: no restriction"),
        Ok(scope) if scope.trim() == "3" => Check::new(
            name,
            NeededBy::Checkpointing,
            Status::Fail,
            "kernel.yama.ptrace_scope is 3: no process may be traced, CRIU cannot dump",
        )
        .remedy("set it to 1 or 2 (it cannot be lowered from 3 without a reboot)"),
        Ok(scope) => Check::ok(
            name,
            NeededBy::Checkpointing,
            format!(
                "kernel.yama.ptrace_scope is {}: CRIU may trace what it dumps",
                scope.trim()
            ),
        ),
    }
}

/// CAP_CHECKPOINT_RESTORE (Linux 5.9+) is what a restore-only container or a setcap'd
/// CRIU needs; neither mode here does.
fn checkpoint_restore_bounding() -> Check {
    let name = "CAP_CHECKPOINT_RESTORE";
    if privileges::in_bounding_set(privileges::CHECKPOINT_RESTORE_BIT) {
        Check::ok(
            name,
            NeededBy::Never,
            "in the bounding set: a restore-only container may be granted it",
        )
    } else {
        Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            "not in the bounding set (a kernel before 5.9, or a runtime that dropped it): no \
             least-privilege restore with it",
        )
        .remedy("a kernel 5.9 or newer; grant it to the container (--cap-add CHECKPOINT_RESTORE)")
    }
}

/// CRIU caches its kernel probe (~30 ms a call) only on a tmpfs: `/run/criu.kdat` as
/// root, `$XDG_RUNTIME_DIR/criu.kdat` unprivileged.
fn kdat_cache(mode: Mode) -> Check {
    let name = "kdat cache";
    let dir = match mode {
        Mode::Root => Some(PathBuf::from("/run")),
        Mode::Rootless | Mode::RestoreOnly => {
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        }
    };
    let slower = "every CRIU call probes the kernel again (~30 ms more a restore)";
    match dir {
        None => Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            format!("XDG_RUNTIME_DIR is not set: {slower}"),
        )
        .remedy("log in through a session that sets it (systemd-logind: /run/user/UID)"),
        Some(dir) if crate::sys::fs::is_tmpfs(&dir) => Check::ok(
            name,
            NeededBy::Never,
            format!("{}/criu.kdat, on a tmpfs", dir.display()),
        ),
        Some(dir) => Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            format!("{} is not a tmpfs: {slower}", dir.display()),
        )
        .remedy(match mode {
            Mode::Root => "mount a tmpfs on /run (systemd hosts have one)",
            Mode::Rootless | Mode::RestoreOnly => {
                "point XDG_RUNTIME_DIR at a tmpfs directory of your own"
            }
        }),
    }
}

fn image_key() -> Check {
    let name = "image key";
    match HostKey::load() {
        Ok(key) => Check::ok(
            name,
            NeededBy::Always,
            format!("{} in {}", key.id(), key.file().display()),
        ),
        Err(KeyError::Missing { path }) => Check::new(
            name,
            NeededBy::Always,
            Status::Warn,
            format!("none yet at {}", path.display()),
        )
        .remedy("`crac key init` makes it (crac run does on first use)"),
        Err(e) => Check::new(name, NeededBy::Always, Status::Fail, e.to_string())
            .remedy("fix the file as said, or point CRAC_IMAGE_KEY at a key of yours"),
    }
}

/// `--lazy` needs CRIU's lazy-pages server, which does not run unprivileged.
fn lazy_pages(mode: Mode) -> Check {
    let name = "lazy pages";
    match mode {
        Mode::Root => Check::ok(
            name,
            NeededBy::Never,
            "userfaultfd available to root: --lazy works",
        ),
        Mode::RestoreOnly => Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            "not measured in restore-only mode",
        )
        .remedy("restore without --lazy"),
        Mode::Rootless => Check::new(
            name,
            NeededBy::Never,
            Status::Warn,
            "CRIU's lazy-pages server does not run unprivileged: no --lazy rootless",
        )
        .remedy("restore without --lazy, or as root"),
    }
}

/// Whether `crac restore DIR` would proceed here, and in this mode.
fn restorable(dir: &Path, mode: Mode) -> Check {
    let name = "image";
    let needed = NeededBy::Always;
    let inspection = match inspect::inspect(dir, false, None) {
        Ok(inspection) => inspection,
        Err(e) => {
            return Check::new(
                name,
                needed,
                Status::Fail,
                inspect::printable(&e.to_string()),
            );
        }
    };
    if let Err(why) = inspection.restorable() {
        return Check::new(name, needed, Status::Fail, inspect::printable(why))
            .remedy("`crac inspect` says more; take a fresh image on this host");
    }
    if mode == Mode::Rootless && !Manifest::read(dir).is_ok_and(|m| m.private_pid_namespace) {
        return Check::new(
            name,
            needed,
            Status::Fail,
            format!(
                "{} was not taken under crac run: it needs its original PID, which only root \
                 can ask for",
                dir.display()
            ),
        )
        .remedy("take the image under `crac run`, or restore it as root");
    }
    Check::ok(
        name,
        needed,
        format!("{} can be restored here", dir.display()),
    )
}

/// Whether this host can take the packed image `file`: the file read as far as its
/// manifest, then each thing the image needs of a host (key, CPU features, CRIU,
/// kernel, executable, heap segment paths), each miss with its remedy.
fn packed(file: &Path, identity: Option<&Path>, mode: Mode) -> Vec<Check> {
    let name = "packed image";
    let needed = NeededBy::Always;
    let inspection = match inspect_packed::inspect_packed(file, identity) {
        Ok(inspection) => inspection,
        Err(e) => {
            return vec![
                Check::new(
                    name,
                    needed,
                    Status::Fail,
                    inspect::printable(&e.to_string()),
                )
                .remedy("copy the file again from where it was packed"),
            ];
        }
    };
    let described = inspection.described();
    let contents = match &described.contents {
        Ok(contents) => contents,
        Err(why) => {
            let remedy = if described.encrypted_to.is_some() {
                format!(
                    "give an identity of one of its age recipients: crac doctor FILE \
                     --identity KEY, or {PACK_IDENTITY}"
                )
            } else {
                "copy the file again from where it was packed".into()
            };
            return vec![
                Check::new(name, needed, Status::Fail, inspect::printable(why)).remedy(remedy),
            ];
        }
    };
    let encrypted = match described.encrypted_to {
        Some(n) => format!(", encrypted to {n} age recipient(s)"),
        None => String::new(),
    };
    let mut checks = vec![Check::ok(
        name,
        needed,
        format!(
            "{}: {} entries, {} unpacked{encrypted}",
            file.display(),
            contents.entries,
            inspect::mb(contents.unpacked_bytes)
        ),
    )];
    for fit in inspection.fits() {
        let status = match fit.verdict {
            Verdict::Ok => Status::Ok,
            Verdict::Warn => Status::Warn,
            Verdict::Fail => Status::Fail,
        };
        let check = Check::new(fit.name, needed, status, inspect::printable(&fit.found));
        checks.push(match &fit.remedy {
            Some(remedy) => check.remedy(inspect::printable(remedy)),
            None => check,
        });
    }
    if mode == Mode::Rootless && !contents.manifest.private_pid_namespace {
        checks.push(
            Check::new(
                "PID namespace",
                needed,
                Status::Fail,
                "the image was not taken under crac run: it needs its original PID, which only \
                 root can ask for",
            )
            .remedy("take the image under `crac run`, or restore it as root"),
        );
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert!(at_least("4.2.1", (3, 18)));
        assert!(at_least("3.18", (3, 18)));
        assert!(!at_least("3.17.1", (3, 18)));
        assert!(!at_least("garbage", (3, 18)));
    }

    #[test]
    fn a_failure_stops_only_the_modes_that_need_it() {
        let report = Report {
            mode: Mode::Root,
            checks: vec![
                Check::new("a", NeededBy::In(Mode::Rootless), Status::Fail, "x"),
                Check::new("b", NeededBy::Never, Status::Fail, "y"),
                Check::new("c", NeededBy::Always, Status::Warn, "z"),
            ],
        };
        assert!(report.works());
        let text = report.to_text();
        assert!(text.contains("mode root (in use): works"), "{text}");
        assert!(
            text.contains("mode rootless (an ordinary user): does not work: a"),
            "{text}"
        );
        assert!(
            report
                .to_json()
                .starts_with(r#"{"mode":"root","works":true,"#)
        );
        let report = Report {
            mode: Mode::Rootless,
            ..report
        };
        assert!(!report.works());
    }
}
