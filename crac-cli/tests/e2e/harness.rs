//! What every topic shares: whether CRIU can run here, scratch directories, starting
//! the scenario and the `crac` binary, and reading what they printed.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// One topic's tests, by name.
pub(crate) type Tests = &'static [(&'static str, fn())];

/// `tests![a, b]` exports functions `a` and `b` as the topic's `TESTS`, named as written.
macro_rules! tests {
    ($($test:ident),+ $(,)?) => {
        pub(crate) const TESTS: $crate::harness::Tests = &[$((stringify!($test), $test)),+];
    };
}
pub(crate) use tests;

/// Why CRIU end-to-end tests cannot run here, if they cannot: they need root and a CRIU
/// that passes `criu check`.
pub(crate) fn criu_problem() -> Option<String> {
    let criu = match crac_shared::criu::probe() {
        Ok(criu) => criu,
        Err(why) => return Some(why.to_string()),
    };
    match Command::new(&criu).arg("check").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(
            format!(
                "`{} check` failed ({}) {}",
                criu.display(),
                out.status,
                text(&out.stderr).trim()
            )
            .trim_end()
            .to_string(),
        ),
        Err(e) => Some(format!("cannot run {}: {e}", criu.display())),
    }
}

/// CRIU where the library looks for it (`crac-shared`'s search order).
pub(crate) fn criu() -> Result<PathBuf, String> {
    crac_shared::criu::criu_binary().map_err(|missing| missing.to_string())
}

/// Starts `cmd` with stdio only, as a service manager would: fds the test runner
/// inherited from its own parent must not reach the checkpointed program (the
/// open-resource check would rightly refuse them).
pub(crate) fn only_stdio(cmd: &mut Command) -> &mut Command {
    // SAFETY: the hook only calls close_range, which is async-signal-safe.
    unsafe { cmd.pre_exec(close_beyond_stdio) }
}

fn close_beyond_stdio() -> std::io::Result<()> {
    // SAFETY: in the child about to exec, every fd beyond stdio is the child's to close.
    checked(unsafe { libc::close_range(3, libc::c_uint::MAX, 0) })
}

fn checked(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `cmd` as a careless shell, IDE terminal or CI runner would: with /dev/null
/// on fd 10 and a pipe's write end on fd 251, both inherited (not close-on-exec).
pub(crate) fn stray_fds(cmd: &mut Command) -> &mut Command {
    // SAFETY: the hook only makes async-signal-safe calls (open, pipe, dup2, close).
    unsafe { cmd.pre_exec(open_stray_fds) }
}

fn open_stray_fds() -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path; the new fd is the child's.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    checked(null)?;
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for the two fds the call writes.
    checked(unsafe { libc::pipe(pipe.as_mut_ptr()) })?;
    move_fd(null, 10)?;
    move_fd(pipe[1], 251)?;
    // SAFETY: the child's own read end, never needed.
    checked(unsafe { libc::close(pipe[0]) })?;
    Ok(())
}

/// Puts `fd` at `target`. The fd may already be there: a runner that leaks
/// fds 3..=9 makes `open` return 10, and closing it after `dup2` would lose it.
fn move_fd(fd: i32, target: i32) -> std::io::Result<()> {
    if fd == target {
        return Ok(());
    }
    // SAFETY: `target` is free in the child, or taken over on purpose.
    checked(unsafe { libc::dup2(fd, target) })?;
    // SAFETY: the child's own copy, duplicated above where it must stay.
    checked(unsafe { libc::close(fd) })?;
    Ok(())
}

/// A fresh directory for one test, and the image path inside it.
pub(crate) fn setup(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let image = dir.join("image");
    (dir, image)
}

/// Makes a temp directory of this run's own the temp directory of this process and of
/// every process it starts (`TMPDIR`): the tests' scratch directories and what `crac`
/// leaves there (logs of the restores the tests fail on purpose, which `crac` keeps a
/// day) are then removed together by [`remove_scratch`]. Called before any thread
/// exists.
pub(crate) fn use_own_temp_dir() {
    let dir = std::env::temp_dir().join(format!("crac-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // SAFETY: main calls this first, while this process has a single thread.
    unsafe { std::env::set_var("TMPDIR", &dir) };
    RUN_TEMP_DIR.set(dir).unwrap();
}

static RUN_TEMP_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Removes this run's temp directory (see [`use_own_temp_dir`]).
pub(crate) fn remove_scratch() {
    if let Some(dir) = RUN_TEMP_DIR.get() {
        remove_tree(dir);
    }
}

/// Removes `dir` and everything in it, sealed heap segments too: they are immutable
/// (`chattr +i`) where the file system allows it.
fn remove_tree(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_err() && dir.exists() {
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A fresh directory for one test's images and files.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    remove_tree(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `crac` binary cargo built for these tests.
pub(crate) fn crac_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_crac"))
}

/// `exe` as PID 2 of a private PID namespace, under `crac __init` as PID 1 — what
/// `crac run` launches, spelled out here so these tests depend only on the binary.
pub(crate) fn in_private_pids(exe: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(crac_bin())
        .args(["__init", "--"])
        .arg(exe);
    cmd
}

/// Writes an executable stand-in for `criu` at `path`, for `CRAC_CRIU`: a shell script
/// that hands every command but `dump` to the real CRIU, and runs `dump` as `body` says
/// (with `$CRIU` the real one and `"$@"` its arguments).
pub(crate) fn criu_wrapper(path: &Path, body: &str) {
    let real = criu().unwrap();
    write_script(
        path,
        &format!(
            "#!/bin/sh\nCRIU={}\n[ \"$1\" = dump ] || exec \"$CRIU\" \"$@\"\n{body}\n",
            real.display()
        ),
    );
}

/// Writes `text` to `path` as an executable file.
pub(crate) fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// One process as `/proc/PID/stat` shows it.
pub(crate) struct Proc {
    pub(crate) pid: i32,
    pub(crate) comm: String,
    /// `R`, `S`, `T` (stopped), `Z` (zombie)...
    pub(crate) state: char,
    pub(crate) pgrp: i32,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (state {})", self.pid, self.comm, self.state)
    }
}

/// The PID the image was taken with.
pub(crate) fn image_pid(first_stdout: &[u8]) -> i32 {
    lines(&text(first_stdout))[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Every process on the host, as far as they can be read.
pub(crate) fn processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_string();
            let mut fields = rest.split(' ');
            let state = fields.next()?.chars().next()?;
            let pgrp = fields.nth(1)?.parse().ok()?; // after the parent's PID
            Some(Proc {
                pid,
                comm,
                state,
                pgrp,
            })
        })
        .collect()
}

/// One start of the scenario program, checkpointing to `image`.
pub(crate) struct Run {
    pub(crate) exe: PathBuf,
    scenario: &'static str,
    image: PathBuf,
    env: Vec<(&'static str, String)>,
    /// Launch in a private PID namespace (`crac __init`), so the image restores many times at once.
    pub(crate) private_pids: bool,
    /// Leave stray inherited fds open in the launched command instead of only stdio.
    pub(crate) stray_fds: bool,
}

impl Run {
    pub(crate) fn new(scenario: &'static str, image: &Path) -> Run {
        Run {
            exe: std::env::current_exe().unwrap(),
            scenario,
            image: image.to_path_buf(),
            env: Vec::new(),
            private_pids: false,
            stray_fds: false,
        }
    }

    pub(crate) fn env(mut self, key: &'static str, value: &str) -> Run {
        self.env.push((key, value.to_string()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = if self.private_pids {
            in_private_pids(&self.exe)
        } else {
            Command::new(&self.exe)
        };
        if self.stray_fds {
            stray_fds(&mut cmd);
        } else {
            only_stdio(&mut cmd);
        }
        cmd.env("CRAC_E2E_SCENARIO", self.scenario)
            .env("CRAC_CHECKPOINT_TO", &self.image)
            .env_remove("CRAC_ENGINE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the scenario to its end with stdout captured.
    pub(crate) fn output(&self) -> Output {
        self.command().stderr(Stdio::piped()).output().unwrap()
    }

    pub(crate) fn spawn(&self, stdout: Stdio) -> Child {
        self.command()
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }
}

/// Starts `run` (the `request` scenario) with its stdout in `out_path`; returns it once
/// it is ready for requests.
pub(crate) fn ready_for_requests(run: Run, out_path: &Path) -> Child {
    let child = run.spawn(std::fs::File::create(out_path).unwrap().into());
    wait_for_line(out_path, "ready");
    child
}

/// Waits until the program has printed `line` to `out_path`.
pub(crate) fn wait_for_line(out_path: &Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(out_path).unwrap().contains(line) {
        assert!(
            Instant::now() < deadline,
            "the program never printed {line:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `crac ARGS` with stdio only, to its end.
pub(crate) fn crac(args: &[&str]) -> Output {
    crac_started(args).wait_with_output().unwrap()
}

/// `crac ARGS` with stdio only, started, its output piped.
pub(crate) fn crac_started(args: &[&str]) -> Child {
    only_stdio(&mut Command::new(crac_bin()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn restore(image: &Path) -> Output {
    crac(&["restore", image.to_str().unwrap()])
}

/// `crac run --image IMAGE EXTRA -- EXE` for `scenario`, not yet started.
pub(crate) fn crac_run_command(
    exe: &Path,
    image: &Path,
    scenario: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(crac_bin());
    cmd.args(["run", "--image", image.to_str().unwrap()])
        .args(extra)
        .arg("--")
        .arg(exe)
        .env("CRAC_E2E_SCENARIO", scenario)
        .env_remove("CRAC_CHECKPOINT_TO")
        .stdin(Stdio::null());
    cmd
}

/// `crac run --image IMAGE EXTRA -- EXE` for `scenario`, with stdio only, to its end.
pub(crate) fn crac_run(exe: &Path, image: &Path, scenario: &str, extra: &[&str]) -> Output {
    only_stdio(&mut crac_run_command(exe, image, scenario, extra))
        .output()
        .unwrap()
}

/// Truncates (or extends) the file at `path` to `len` bytes: damage for an image file.
pub(crate) fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Rewrites the image's manifest with `edit` and seals it again with this host's key
/// (root can read it), as only the key's holder can: for tests of the checks behind the
/// seal.
pub(crate) fn forge_manifest(image: &Path, edit: impl FnOnce(String) -> String) {
    let path = image.join("crac-manifest");
    let text = std::fs::read_to_string(&path).unwrap();
    let body = &text[..text.trim_end().rfind('\n').unwrap() + 1];
    let body = edit(body.to_string());
    std::fs::write(path, seal_with(&body, &host_key())).unwrap();
}

/// The file of the key `crac` seals and checks images with here: `CRAC_IMAGE_KEY`, else
/// root's default.
pub(crate) fn host_key() -> PathBuf {
    std::env::var_os("CRAC_IMAGE_KEY")
        .map_or_else(|| "/var/lib/crac/image.key".into(), PathBuf::from)
}

/// `body` followed by its seal line made with the key in `key_file`, as
/// `crac-criu/src/image/seal.rs` makes it.
pub(crate) fn seal_with(body: &str, key_file: &Path) -> String {
    let text = std::fs::read_to_string(key_file).unwrap();
    let key: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let id = blake3::derive_key("crac-rs 2026-12 image key id", &key);
    let id: String = id[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mac_key = blake3::derive_key("crac-rs 2026-12 manifest seal", &key);
    let mac = blake3::keyed_hash(&mac_key, body.as_bytes());
    format!("{body}manifest-seal {id} {mac}\n")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines the scenario printed, in order, without what else shares the stream
/// (`script` on a terminal, or a stray line from a launcher).
pub(crate) fn lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| {
            [
                "pid ",
                "hook ",
                "round ",
                "exiting",
                "still ",
                "ready",
                "restored ",
                "connection ",
                "unique ",
                "periodic ",
                "crashing",
                "tokio ",
                "clock ",
                "direct ",
                "listening ",
                "soak ",
                "secrets ",
                "port ",
                "journal ",
                "mapped ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect()
}

/// The last word of a line: the checksum in the scenario's lines that end with one.
pub(crate) fn checksum_of(line: &str) -> &str {
    line.rsplit(' ').next().unwrap()
}

/// Kills a spawned program if the test fails before it ends.
pub(crate) struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: plain kill; harmless if the process is gone.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

pub(crate) fn killed_by_sigkill(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}
