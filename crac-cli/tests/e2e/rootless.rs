//! Without root: `crac doctor`'s verdicts as root and as an ordinary user, and rootless
//! mode — an ordinary user (the suite's unprivileged user, `attacker.rs`) runs a program
//! under `crac run`, which checkpoints it in a user namespace of crac's own, then
//! restores concurrent copies with restore-time environment and stdio, the monotonic
//! clock kept through a time namespace; `crac inspect` and `#[crac::test]` as that user.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::attacker::{Attacker, attacker};
use crate::harness::{crac, crac_bin, lines, only_stdio, scratch, tests, text, wait_for_line};

tests![
    crac_doctor_judges_the_mode_in_use_and_says_what_to_do,
    an_ordinary_user_checkpoints_under_crac_run_and_restores_concurrent_copies,
    an_ordinary_users_service_restarts_from_its_last_periodic_image,
    an_ordinary_user_checkpoints_on_request,
    a_rootless_lazy_restore_is_refused_naming_why,
    an_ordinary_users_crac_tests_checkpoint_and_restore_their_copies,
];

/// A directory of the user's own for one test (its image, its key), and the user.
fn own_scratch(name: &str) -> (Attacker, PathBuf) {
    let user = attacker();
    let dir = scratch(name);
    user.own(&dir);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    (user, dir)
}

/// `crac` and this executable (the program under test), copied where the user can run
/// them: the build tree may be in a directory only root can enter (a CI runner's home).
fn binaries() -> &'static (PathBuf, PathBuf) {
    static COPIES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    COPIES.get_or_init(|| {
        let dir = scratch("rootless-bin");
        let open = std::fs::Permissions::from_mode(0o755);
        for up in [&dir, dir.parent().unwrap()] {
            std::fs::set_permissions(up, open.clone()).unwrap();
        }
        let copy = |from: &Path| {
            let to = dir.join(from.file_name().unwrap());
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, open.clone()).unwrap();
            to
        };
        (copy(crac_bin()), copy(&std::env::current_exe().unwrap()))
    })
}

/// `crac ARGS` as `user`, with stdio only, whose key is kept in `dir`.
fn crac_as(user: &Attacker, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = user.command(&binaries().0);
    only_stdio(&mut cmd)
        .args(args)
        .env("XDG_STATE_HOME", dir.join("state"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn crac_doctor_judges_the_mode_in_use_and_says_what_to_do() {
    let as_root = crac(&["doctor"]);
    let out = text(&as_root.stdout);
    assert_eq!(as_root.status.code(), Some(0), "{as_root:?}");
    for line in [
        "OK   user: root (uid 0): root mode",
        "OK   criu check: looks good",
        "OK   root's capabilities: all a restore uses",
        "mode root (in use): works",
        "mode rootless (an ordinary user): works",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }

    let no_criu = only_stdio(&mut Command::new(crac_bin()))
        .arg("doctor")
        .env("CRAC_CRIU", "/nonexistent/criu")
        .output()
        .unwrap();
    let out = text(&no_criu.stdout);
    assert_eq!(no_criu.status.code(), Some(1), "{no_criu:?}");
    assert!(
        out.contains(
            "FAIL criu: CRAC_CRIU=/nonexistent/criu is not a file\n       do: install CRIU"
        ),
        "{out}"
    );
    assert!(
        out.contains("mode root (in use): does not work: criu"),
        "{out}"
    );

    let (user, dir) = own_scratch("doctor-rootless");
    let rootless = crac_as(&user, &dir, &["doctor"]).output().unwrap();
    let out = text(&rootless.stdout);
    assert_eq!(rootless.status.code(), Some(0), "{rootless:?}");
    for line in [
        "not root: rootless mode",
        "OK   user namespaces: an ordinary user may make them",
        "OK   time namespaces: available inside a user namespace",
        "no TCP repair",
        "mode rootless (in use): works",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        !out.contains("mode root "),
        "root's checks say nothing here: {out}"
    );
    let json = crac_as(&user, &dir, &["doctor", "--json"])
        .output()
        .unwrap();
    assert!(
        text(&json.stdout)
            .starts_with(r#"{"mode":"rootless","works":true,"checks":[{"name":"kernel","#),
        "{json:?}"
    );

    // an image that is not there is a failure of what was asked
    let missing = dir.join("no-image");
    let asked = crac_as(&user, &dir, &["doctor", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(asked.status.code(), Some(1), "{asked:?}");
    assert!(text(&asked.stdout).contains("FAIL image: "), "{asked:?}");
}

/// The copies restored at once: the issue's four.
const COPIES: usize = 4;

fn an_ordinary_user_checkpoints_under_crac_run_and_restores_concurrent_copies() {
    let (user, dir) = own_scratch("rootless-run");
    let image = dir.join("image");
    let exe = &binaries().1;
    let runtime = RuntimeDir::new(&user);
    let first = crac_as(
        &user,
        &dir,
        &[
            "run",
            "--image",
            image.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
        ],
    )
    .env("CRAC_E2E_SCENARIO", "ready-copy")
    .env("XDG_RUNTIME_DIR", &runtime.0)
    .output()
    .unwrap();
    assert_eq!(first.status.code(), Some(7), "{first:?}");
    let stdout = text(&first.stdout);
    let checksum = lines(&stdout)[0]
        .strip_prefix("pid 2 checksum ")
        .unwrap()
        .to_string();
    let said = lines(&stdout)
        .into_iter()
        .find(|l| l.starts_with("copy "))
        .unwrap_or_default();
    assert!(
        said.starts_with(&format!("copy None checksum {checksum} stdin \"\"")),
        "the first run is checkpointed as PID 2 and goes on restored: {stdout}"
    );
    let manifest = std::fs::metadata(image.join("crac-manifest")).unwrap();
    assert_eq!(manifest.uid(), user.uid, "the image is the user's own");
    judged_restorable_by_its_owner(&user, &dir, &image);
    restored_without_hashing_again(&user, &dir, &image, &runtime);

    // the time in the image passes for the wall clock only, as it does as root
    let downtime = Duration::from_secs(3);
    std::thread::sleep(downtime);
    let copies: Vec<_> = (1..=COPIES)
        .map(|n| {
            let mut copy = crac_as(
                &user,
                &dir,
                &[
                    "restore",
                    image.to_str().unwrap(),
                    "--env",
                    &format!("E2E_COPY={n}"),
                ],
            )
            .env("XDG_RUNTIME_DIR", &runtime.0)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
            let mut stdin = copy.stdin.take().unwrap();
            writeln!(stdin, "hello {n}").unwrap();
            copy
        })
        .collect();
    let outputs: Vec<Output> = copies
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (n, out) in (1..=COPIES).zip(&outputs) {
        assert_eq!(out.status.code(), Some(7), "copy {n}: {out:?}");
        let stdout = text(&out.stdout);
        let line = lines(&stdout)
            .into_iter()
            .find(|l| l.starts_with("copy "))
            .unwrap_or_else(|| panic!("copy {n} said nothing: {out:?}"))
            .to_string();
        assert!(
            line.starts_with(&format!(
                "copy Some(\"{n}\") checksum {checksum} stdin \"hello {n}\" monotonic "
            )),
            "each copy has the image's state, its own --env and its own stdin: {line}"
        );
        let field = |name: &str| -> u128 {
            let words: Vec<&str> = line.split(' ').collect();
            let at = words.iter().position(|w| *w == name).unwrap();
            words[at + 1].parse().unwrap()
        };
        // the time namespace's offsets are whole seconds, rounded up
        assert!(
            field("wall") - field("monotonic") >= downtime.as_millis() - 1100,
            "the {} ms in the image are not monotonic time: {line}",
            downtime.as_millis()
        );
        assert!(
            line.ends_with(" kept Some(true)"),
            "Restore says the monotonic clock was kept: {line}"
        );
        assert!(text(&out.stderr).contains("crac: restored in "), "{out:?}");
    }
}

/// `crac doctor` and `crac inspect`, run by the user whose image it is, find `image`
/// restorable.
fn judged_restorable_by_its_owner(user: &Attacker, dir: &Path, image: &Path) {
    assert_eq!(
        crac_as(user, dir, &["doctor", image.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .code(),
        Some(0),
        "crac doctor finds the image restorable"
    );
    let inspected = crac_as(user, dir, &["inspect", image.to_str().unwrap()])
        .output()
        .unwrap();
    let described = text(&inspected.stdout);
    assert_eq!(inspected.status.code(), Some(0), "{inspected:?}");
    assert!(
        described.contains(&format!(
            "executable    {} (sha256 ",
            binaries().1.display()
        )) && described.ends_with("restorable    yes, on this host\n\n"),
        "crac inspect describes the user's image as root's: {described}"
    );
}

/// A runtime directory of `user`'s own on a tmpfs, as systemd-logind makes
/// `/run/user/UID`, removed when dropped.
struct RuntimeDir(PathBuf);

impl RuntimeDir {
    fn new(user: &Attacker) -> RuntimeDir {
        let dir = PathBuf::from(format!("/dev/shm/crac-e2e-runtime-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        user.own(&dir);
        RuntimeDir(dir)
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// With a runtime directory, the page data the rootless checkpoint just wrote is
/// recorded intact there, as root's is in /run/crac-criu: a restore does not hash it.
fn restored_without_hashing_again(user: &Attacker, dir: &Path, image: &Path, runtime: &RuntimeDir) {
    let out = crac_as(
        user,
        dir,
        &["restore", "--verbose", image.to_str().unwrap()],
    )
    .env("XDG_RUNTIME_DIR", &runtime.0)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        text(&out.stderr).contains("(page data not hashed: unchanged since its image was written"),
        "{out:?}"
    );
}

/// `crac run --every` rootless: left-running images taken in the user namespace, and
/// after a crash the restart from the last one.
fn an_ordinary_users_service_restarts_from_its_last_periodic_image() {
    let (user, dir) = own_scratch("rootless-periodic");
    let image = dir.join("image");
    let exe = &binaries().1;
    let out = crac_as(
        &user,
        &dir,
        &[
            "run",
            "--image",
            image.to_str().unwrap(),
            "--on",
            "request",
            "--every",
            "1",
            "--",
            exe.to_str().unwrap(),
        ],
    )
    .env("CRAC_E2E_SCENARIO", "periodic")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    crate::run::restarted_from_the_last_periodic_image(&text(&out.stdout));
}

/// `crac checkpoint PID` from the same ordinary user, to a process in crac's user
/// namespace (the PID is the host's).
fn an_ordinary_user_checkpoints_on_request() {
    let (user, dir) = own_scratch("rootless-request");
    let image = dir.join("image");
    let exe = &binaries().1;
    let mut running = crac_as(
        &user,
        &dir,
        &[
            "run",
            "--image",
            image.to_str().unwrap(),
            "--on",
            "request",
            "--",
            exe.to_str().unwrap(),
        ],
    )
    .env("CRAC_E2E_SCENARIO", "request")
    .stdout(std::fs::File::create(dir.join("out")).unwrap())
    .spawn()
    .unwrap();
    wait_for_line(&dir.join("out"), "ready");
    let mut stderr = std::io::BufReader::new(running.stderr.take().unwrap());
    let mut announced = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut announced).unwrap();
    let pid = announced
        .trim_end()
        .rsplit(' ')
        .next()
        .and_then(|p| p.strip_suffix('`'))
        .unwrap_or_else(|| panic!("no PID announced: {announced}"))
        .to_string();
    let asked = crac_as(&user, &dir, &["checkpoint", &pid])
        .output()
        .unwrap();
    assert_eq!(asked.status.code(), Some(0), "{asked:?}");
    assert!(
        text(&asked.stderr).contains(&format!(
            "process {pid} was checkpointed to {} and has stopped",
            image.display()
        )),
        "{asked:?}"
    );
    let status = running.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the copy restored at once ends as the program does"
    );
}

fn a_rootless_lazy_restore_is_refused_naming_why() {
    let (user, dir) = own_scratch("rootless-lazy");
    let image = dir.join("image");
    let out = crac_as(&user, &dir, &["restore", "--lazy", image.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(
        text(&out.stderr).contains("--lazy: a lazy restore needs root"),
        "{out:?}"
    );
}

/// `#[crac::test]` as an ordinary user: the crate's own `tests/restored_copies.rs` (five
/// tests, three to two concurrent copies each, one expecting a copy's panic), run in
/// parallel as the user, each checkpointing in a user namespace of its own.
fn an_ordinary_users_crac_tests_checkpoint_and_restore_their_copies() {
    let (user, dir) = own_scratch("rootless-crac-test");
    let tests = restored_copies_tests();
    let out = user
        .command(&tests)
        .env("CRAC_CLI", &binaries().0)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("TMPDIR", &dir)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 5 passed; 0 failed"),
        "{} as {}: {out:?}",
        tests.display(),
        user.uid
    );
}

/// The integration test `tests/restored_copies.rs` of the `crac` crate, built beside this
/// executable by `cargo test --workspace --features crac/testing` (scripts/test.sh),
/// copied where the user can run it; the newest build if there are several.
fn restored_copies_tests() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let build = "build it with `cargo test --features testing --test restored_copies --no-run`";
    let (built, at) = std::fs::read_dir(&deps)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().ok()?;
            let executable = meta.permissions().mode() & 0o111 != 0;
            (name.starts_with("restored_copies-") && !name.contains('.') && executable)
                .then(|| (e.path(), meta.modified().ok()))
        })
        .max_by_key(|(_, at)| *at)
        .unwrap_or_else(|| {
            panic!(
                "no restored_copies test executable in {}: {build}",
                deps.display()
            )
        });
    // an executable older than a source file of the crates it links is a stale one
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = [
        "src",
        "crac-core/src",
        "crac-criu/src",
        "crac-derive/src",
        "tests",
    ]
    .map(|dir| newest_file_under(&repo.join(dir)));
    assert!(
        sources.iter().all(|source| at >= *source),
        "{} predates a change to the sources: {build}",
        built.display()
    );
    let copy = binaries().0.with_file_name("restored_copies");
    std::fs::copy(&built, &copy).unwrap();
    copy
}

/// When the newest file under `dir` was modified.
fn newest_file_under(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            if meta.is_dir() {
                newest_file_under(&e.path())
            } else {
                meta.modified().ok()
            }
        })
        .max()
}
