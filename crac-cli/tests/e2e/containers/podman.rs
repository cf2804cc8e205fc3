//! Driving podman for the container tests: the images they run, built once from this
//! build's binaries; containers and pods removed when dropped; and the check that podman,
//! runc and catatonit are there.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::attacker::Attacker;
use crate::harness::{scratch, text};

/// The service image (`scripts/container.sh service`'s default tag, named in pod.yaml).
pub(super) const SERVICE: &str = "localhost/crac-axum-service:latest";
/// The same service from another build: a different executable.
pub(super) const OTHER_BUILD: &str = "localhost/crac-axum-service:e2e-other-build";
/// pod.yaml's redis, built from Debian's package.
const REDIS: &str = "localhost/redis:7-bookworm";

/// The capabilities and security options examples/container/README.md and pod.yaml document: every
/// capability dropped but these five, and no seccomp filter.
const LEAST_PRIVILEGE: [&str; 5] = [
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_TIME",
    "SYS_CHROOT",
    "SETPCAP",
];

/// Why the container tests cannot run here, if they cannot.
pub(crate) fn problem() -> Option<String> {
    for (program, package) in [("podman", "podman"), ("runc", "runc")] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(found, Ok(status) if status.success()) {
            return Some(format!("{program} not found (Debian package {package})"));
        }
    }
    let catatonit = ["/usr/libexec/podman/catatonit", "/usr/bin/catatonit"];
    if !catatonit.iter().any(|p| Path::new(p).exists()) {
        return Some(
            "catatonit not found (podman kube play builds its infra image from it)".into(),
        );
    }
    None
}

/// The repository's root.
pub(super) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// Settings for every podman command of these tests: runc, and ulimits within this
/// host's hard limits (podman's defaults exceed them on some hosts and are refused).
fn containers_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let dir = scratch("podman");
        let hard = |resource| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `limit` is a valid rlimit for the call to fill.
            assert_eq!(unsafe { libc::getrlimit(resource, &mut limit) }, 0);
            limit.rlim_max.min(1 << 20)
        };
        // (runc sets these after dropping capabilities: a higher NPROC than the
        // runtime's own is refused, so a modest one)
        let nofile = hard(libc::RLIMIT_NOFILE);
        let nproc = hard(libc::RLIMIT_NPROC).min(4096);
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \
                 \"nproc={nproc}:{nproc}\"]\n[engine]\nruntime = \"runc\"\n"
            ),
        )
        .unwrap();
        conf
    })
}

pub(super) fn podman() -> Command {
    podman_in(&Storage::default())
}

/// Where podman keeps images and containers: root's own storage (the default), another
/// storage root of root's (another host's, for images that travel through a registry),
/// or an ordinary user's (rootless podman).
#[derive(Debug, Clone, Default)]
pub(super) struct Storage {
    /// `--root` and `--runroot`, or nothing.
    roots: Vec<String>,
    /// The user rootless podman runs as, and the home holding their storage, runtime
    /// directory and settings.
    user: Option<(Attacker, PathBuf)>,
}

impl Storage {
    /// Root's storage in `dir`, standing for another host's.
    pub(super) fn other_host(dir: &Path) -> Storage {
        Storage {
            roots: vec![
                "--root".into(),
                dir.join("root").display().to_string(),
                "--runroot".into(),
                dir.join("runroot").display().to_string(),
            ],
            user: None,
        }
    }

    /// `user`'s rootless podman, its storage in `home` (made theirs, private).
    pub(super) fn rootless(user: Attacker, home: &Path) -> Storage {
        let run = home.join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::copy(containers_conf(), home.join("containers.conf")).unwrap();
        for path in [home, &run, &home.join("containers.conf")] {
            user.own(path);
        }
        for dir in [home, &run] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Storage {
            roots: Vec::new(),
            user: Some((user, home.into())),
        }
    }
}

/// `podman` working in `storage`.
pub(super) fn podman_in(storage: &Storage) -> Command {
    let mut cmd = match &storage.user {
        None => {
            let mut cmd = Command::new("podman");
            cmd.env("CONTAINERS_CONF", containers_conf());
            cmd
        }
        Some((user, home)) => {
            let mut cmd = user.command("podman");
            cmd.env("HOME", home)
                .env("XDG_RUNTIME_DIR", home.join("run"))
                .env("CONTAINERS_CONF", home.join("containers.conf"))
                .current_dir(home);
            cmd
        }
    };
    cmd.args(&storage.roots).stdin(Stdio::null());
    cmd
}

/// `podman ARGS`, which must succeed: its stdout.
pub(super) fn podman_ok(args: &[&str]) -> String {
    podman_ok_in(&Storage::default(), args)
}

/// `podman ARGS` in `storage`, which must succeed: its stdout.
pub(super) fn podman_ok_in(storage: &Storage, args: &[&str]) -> String {
    let out = podman_in(storage).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "podman {} failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The images these tests run, built once from this build's binaries.
pub(super) fn images() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        // target/<profile>/deps/e2e-… → target, <profile>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let target = profile_dir.parent().unwrap();
        let service = profile_dir.join("examples").join("axum_service");
        if !service.is_file() {
            return Err(format!(
                "{} is missing: build it first with `cargo build --features axum --example \
                 axum_service` (scripts/test.sh does)",
                service.display()
            ));
        }
        // Another build of the service: the same code with a section of its own.
        let dir = scratch("other-build");
        let other = dir.join("axum_service");
        let note = dir.join("note");
        std::fs::write(&note, "another build\n").unwrap();
        let objcopy = Command::new("objcopy")
            .arg(format!("--add-section=.note.crac-e2e={}", note.display()))
            .arg(&service)
            .arg(&other)
            .output()
            .map_err(|e| format!("cannot run objcopy (binutils): {e}"))?;
        if !objcopy.status.success() {
            return Err(format!("objcopy failed: {}", text(&objcopy.stderr)));
        }
        let script = repo().join("scripts/container.sh");
        let builds: [&[&str]; 3] = [
            &["service", "--profile", profile, "--tag", SERVICE],
            &[
                "service",
                "--profile",
                profile,
                "--tag",
                OTHER_BUILD,
                "--service",
                other.to_str().unwrap(),
            ],
            &["redis", "--tag", REDIS],
        ];
        for args in builds {
            let out = Command::new(&script)
                .args(args)
                .env("CARGO_TARGET_DIR", target)
                .env("CONTAINERS_CONF", containers_conf())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if !out.status.success() {
                return Err(format!(
                    "scripts/container.sh {} failed: {}",
                    args.join(" "),
                    text(&out.stderr)
                ));
            }
        }
        Ok(())
    });
    if let Err(why) = built {
        panic!("{why}");
    }
}

/// A container of these tests, removed (with its anonymous volumes) when dropped.
pub(super) struct Container {
    name: String,
    storage: Storage,
}

impl Container {
    /// `podman run -d` of `image` on the host's network (loopback only is used) with the
    /// least privilege, CRIU's kdat cache on a tmpfs, and `options`.
    pub(super) fn run(label: &str, options: &[String], image: &str, command: &[&str]) -> Container {
        Container::run_with(label, &least_privilege(None), options, image, command)
    }

    pub(super) fn run_with(
        label: &str,
        privileges: &[String],
        options: &[String],
        image: &str,
        command: &[&str],
    ) -> Container {
        Container::run_in(
            &Storage::default(),
            label,
            privileges,
            options,
            image,
            command,
        )
    }

    /// [`Container::run_with`] in `storage` (see [`podman_in`]).
    pub(super) fn run_in(
        storage: &Storage,
        label: &str,
        privileges: &[String],
        options: &[String],
        image: &str,
        command: &[&str],
    ) -> Container {
        let name = format!("crac-e2e-{}-{label}", std::process::id());
        let _ = podman_in(storage).args(["rm", "-f", "-v", &name]).output();
        let mut args: Vec<String> = ["run", "-d", "--name", &name, "--network", "host"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(privileges.iter().cloned());
        args.extend(["--tmpfs".into(), "/run/crac-criu:mode=0700".into()]);
        args.extend(options.iter().cloned());
        args.push(image.into());
        args.extend(command.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_ok_in(storage, &args);
        Container {
            name,
            storage: storage.clone(),
        }
    }

    pub(super) fn logs(&self) -> String {
        let out = podman_in(&self.storage)
            .args(["logs", &self.name])
            .output()
            .unwrap();
        text(&out.stdout) + &text(&out.stderr)
    }

    /// `podman inspect --format FORMAT` of the container.
    pub(super) fn inspect(&self, format: &str) -> String {
        podman_ok_in(&self.storage, &["inspect", "--format", format, &self.name])
    }

    fn running(&self) -> bool {
        podman_ok_in(
            &self.storage,
            &["inspect", "--format", "{{.State.Running}}", &self.name],
        )
        .trim()
            == "true"
    }

    /// `GET path` on `port` of the host's loopback, retried until the service answers.
    pub(super) fn answer(&self, port: u16, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(body) = get(port, path) {
                return body;
            }
            assert!(
                self.running(),
                "container {} stopped without answering on port {port}:\n{}",
                self.name,
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "container {} did not answer on port {port}:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the container to stop by itself: its exit code.
    pub(super) fn exit_code(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.running() {
            assert!(
                Instant::now() < deadline,
                "container {} still runs:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        podman_ok_in(
            &self.storage,
            &["inspect", "--format", "{{.State.ExitCode}}", &self.name],
        )
        .trim()
        .parse()
        .unwrap()
    }

    pub(super) fn stop(&self) {
        podman_ok_in(&self.storage, &["stop", "-t", "10", &self.name]);
    }

    pub(super) fn start(&self) {
        podman_ok_in(&self.storage, &["start", &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_in(&self.storage)
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

/// `--cap-drop ALL`, the documented capabilities but `without`, and no seccomp filter.
pub(super) fn least_privilege(without: Option<&str>) -> Vec<String> {
    let mut args = vec!["--cap-drop".to_string(), "ALL".to_string()];
    for cap in LEAST_PRIVILEGE.iter().filter(|&&cap| Some(cap) != without) {
        args.extend(["--cap-add".to_string(), cap.to_string()]);
    }
    args.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    args
}

/// `GET path` on 127.0.0.1:`port` of this thread's network namespace, once: the body of
/// a 200 answer; `None` when nothing (or not yet the service) answers.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200 ").then(|| body.to_string())
}

/// The service container's PID on the host and a fresh pod from pod.yaml (its
/// hostPath moved to `images`), played with no network but the pod's own loopback.
pub(super) struct Pod {
    yaml: PathBuf,
    /// `metadata.name` in the spec.
    name: &'static str,
}

impl Pod {
    /// Plays pod.yaml (its pod is `axum-service`).
    pub(super) fn play(yaml: &Path) -> Pod {
        Pod::play_named(yaml, "axum-service")
    }

    /// Plays the spec in `yaml`, whose pod is `name`.
    pub(super) fn play_named(yaml: &Path, name: &'static str) -> Pod {
        let out = podman()
            .args(["kube", "play", "--replace", "--network", "none"])
            .arg(yaml)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman kube play failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        Pod {
            yaml: yaml.into(),
            name,
        }
    }

    pub(super) fn logs(&self) -> String {
        let out = podman()
            .arg("logs")
            .arg(format!("{}-service", self.name))
            .output()
            .unwrap();
        text(&out.stdout) + &text(&out.stderr)
    }

    /// `GET path` on the pod's port 3000, from a thread that joins the pod's network
    /// namespace: retried until the service answers.
    pub(super) fn answer(&self, path: &str) -> String {
        let infra = podman_ok(&[
            "pod",
            "inspect",
            "--format",
            "{{.InfraContainerID}}",
            self.name,
        ]);
        let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", infra.trim()]);
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", pid.trim())).unwrap();
        let path = path.to_string();
        let answer = std::thread::spawn(move || {
            // SAFETY: moves this thread alone (a fresh one, ending below) into the
            // pod's network namespace; `netns` is an open namespace fd.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if let Some(body) = get(3000, &path) {
                    return Some(body);
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .join()
        .unwrap();
        answer.unwrap_or_else(|| panic!("the pod did not answer:\n{}", self.logs()))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podman().args(["kube", "down"]).arg(&self.yaml).output();
    }
}
