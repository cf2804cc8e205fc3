//! `examples/container/` with a real container runtime: podman (runc) runs the image
//! `scripts/container.sh` builds from the binaries cargo built for these tests (the
//! axum service, `crac`, CRIU), with the least privilege examples/container/README.md documents.
//!
//! - The first `podman run` warms the service up, checkpoints it at `ready()` onto the
//!   volume and serves; stopped and started again, the container restores from the
//!   volume; a second container restores the same volume image beside it.
//! - An image of another build of the service is replaced (`--replace-invalid`, the
//!   entrypoint's) or refused (without it).
//! - `podman kube play examples/container/pod.yaml` (its node-local image path moved
//!   to a scratch directory) serves, and serves again from a restore when played again.
//! - Each of the five capabilities is needed, and so is running without a seccomp
//!   filter; crac names what is missing and how to grant it.
//! - Pre-baking: an image layer holding the checkpoint restores on the first start where
//!   the key that sealed it is given as a secret (`CRAC_IMAGE_KEY`), and is refused,
//!   naming the keys, where it is not; pushed to a registry (Debian's docker-registry on
//!   127.0.0.1) and pulled into another storage root (another host's), it restores there.
//! - Restore-only: an image taken with `crac run --drop-capabilities` restores in
//!   containers with only CHECKPOINT_RESTORE, SETUID, SETGID and SETPCAP under the default
//!   seccomp profile (two beside each other, and `crac doctor` there), and in
//!   `examples/container/pod-restore-only.yaml` under `podman kube play`.
//!
//! The times to the first answer are printed (`--nocapture` is not needed: the harness
//! does not capture). Needs podman, runc and catatonit (`scripts/install-containers.sh`)
//! besides root and CRIU: without them these tests are ignored, with the reason printed.
//! `containers/podman.rs` builds the images and runs the containers and pods.

mod podman;
mod rootless_podman;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{scratch, tests};
use crate::redis_server::RedisServer;
pub(crate) use podman::problem;
use podman::{
    Container, OTHER_BUILD, Pod, SERVICE, Storage, images, least_privilege, podman, podman_ok,
    podman_ok_in, repo,
};

tests![
    the_first_start_checkpoints_onto_the_volume_a_restart_and_a_second_container_restore_it,
    an_image_of_another_build_is_replaced_with_replace_invalid_and_refused_without,
    the_pod_spec_plays_and_serves_again_from_a_restore,
    each_documented_privilege_is_needed_and_a_missing_one_is_named,
    an_image_layer_with_a_prebaked_checkpoint_restores_on_the_first_start_and_through_a_registry,
    a_restore_only_container_restores_without_sys_admin_under_the_default_seccomp_profile,
    the_restore_only_pod_spec_restores_what_a_privileged_pod_took,
];

/// Where the image lives in the container.
const IMAGE_IN_CONTAINER: &str = "/var/lib/crac/axum";

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A directory for an image volume, private to root as examples/container/README.md asks.
fn volume(name: &str) -> PathBuf {
    let volume = scratch(name).join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::set_permissions(&volume, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    volume
}

/// `item 7 = VALUE (hits N, instance ID)` → (VALUE, N, ID).
fn parse(body: &str) -> (String, u64, String) {
    let words: Vec<&str> = body.split_whitespace().collect();
    assert!(
        words.len() == 8 && words[0] == "item",
        "unexpected answer: {body}"
    );
    let hits = words[5].trim_end_matches(',').parse().unwrap();
    (
        words[3].to_string(),
        hits,
        words[7].trim_end_matches(')').to_string(),
    )
}

/// The service's settings in a container on the host's network: loopback `port` (it
/// warms up on ADDR and serves, restored, on PORT), `redis`, and without `volume`, the
/// image's own anonymous volume.
fn service_options(redis: &RedisServer, port: u16, volume: Option<&Path>) -> Vec<String> {
    let mut options = vec![
        "-e".into(),
        format!("REDIS_URL={}", redis.url()),
        "-e".into(),
        format!("ADDR=127.0.0.1:{port}"),
        "-e".into(),
        format!("PORT={port}"),
    ];
    if let Some(volume) = volume {
        options.extend(["-v".into(), format!("{}:/var/lib/crac", volume.display())]);
    }
    options
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The size of the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

fn the_first_start_checkpoints_onto_the_volume_a_restart_and_a_second_container_restore_it() {
    images();
    let redis = RedisServer::start();
    let volume = volume("container-restart");
    let port = free_port();
    let (first, first_start, (value, _, instance)) = first_start(&redis, &volume, port);
    let (restart, restarted_instance) = restart(&first, port, &value, &instance);
    let beside = second_container(&redis, &volume, &value, &restarted_instance, &first, port);
    print_times(&first, &volume.join("axum"), first_start, restart, beside);
}

/// The first start on an empty volume warms up, checkpoints onto it and serves,
/// restored: the container, the time to its first answer and that answer.
fn first_start(
    redis: &RedisServer,
    volume: &Path,
    port: u16,
) -> (Container, Duration, (String, u64, String)) {
    let started = Instant::now();
    let first = Container::run(
        "first",
        &service_options(redis, port, Some(volume)),
        SERVICE,
        &[],
    );
    let body = first.answer(port, "/item/7");
    let first_start = started.elapsed();
    let answer = parse(&body);
    assert_eq!(answer.1, 1, "{body}");
    let logs = first.logs();
    assert!(
        logs.contains(&format!("no image in {IMAGE_IN_CONTAINER}: started"))
            && logs.contains(&format!(
                "image written to {IMAGE_IN_CONTAINER}; restoring it"
            ))
            && logs.contains("crac: restored in "),
        "the first start warms up, checkpoints and restores:\n{logs}"
    );
    assert!(
        volume.join("axum").join("crac-manifest").is_file(),
        "the image is on the volume"
    );
    let key = std::fs::metadata(volume.join("image.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600,
        "the key that sealed it is on the volume, private"
    );
    (first, first_start, answer)
}

/// Stopped and started again, the container restores the volume's image (the warm
/// `value`, a new instance): the time to its first answer and the new instance.
fn restart(first: &Container, port: u16, value: &str, instance: &str) -> (Duration, String) {
    first.stop();
    let started = Instant::now();
    first.start();
    let body = first.answer(port, "/item/7");
    let restart = started.elapsed();
    let (restarted_value, hits, restarted_instance) = parse(&body);
    assert_eq!(restarted_value, value, "the warm cache came back: {body}");
    assert_eq!(hits, 2, "the same redis counts on: {body}");
    assert_ne!(
        restarted_instance, instance,
        "a restored copy is a new instance"
    );
    let logs = first.logs();
    assert_eq!(
        logs.matches("no image in").count(),
        1,
        "the restart restored the image instead of starting cold:\n{logs}"
    );
    assert_eq!(logs.matches("crac: restored in ").count(), 2, "{logs}");
    (restart, restarted_instance)
}

/// A second container restores the same image beside the first, moved to its own port
/// by `-e PORT` (the entrypoint's `--env PORT`), while the first (on its port) still
/// serves: the time to its first answer.
fn second_container(
    redis: &RedisServer,
    volume: &Path,
    value: &str,
    restarted_instance: &str,
    first: &Container,
    port: u16,
) -> Duration {
    let second_port = free_port();
    let options = service_options(redis, second_port, Some(volume));
    let started = Instant::now();
    let second = Container::run("second", &options, SERVICE, &[]);
    let body = second.answer(second_port, "/item/7");
    let beside = started.elapsed();
    let (second_value, hits, second_instance) = parse(&body);
    assert_eq!(second_value, value, "{body}");
    assert_eq!(hits, 3, "{body}");
    assert_ne!(second_instance, restarted_instance);
    assert!(!second.logs().contains("no image in"), "{}", second.logs());
    let (_, hits, _) = parse(&first.answer(port, "/item/7"));
    assert_eq!(hits, 4, "the first container still serves");
    beside
}

/// Prints the times to the first answer beside what the container runtime itself takes
/// (a container that only prints crac's version), and the sizes of the images.
fn print_times(
    first: &Container,
    image: &Path,
    first_start: Duration,
    restart: Duration,
    beside: Duration,
) {
    let container_image: u64 = podman_ok(&["image", "inspect", "--format", "{{.Size}}", SERVICE])
        .trim()
        .parse()
        .unwrap();
    let started = Instant::now();
    podman_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--entrypoint",
        "crac",
        SERVICE,
        "--version",
    ]);
    let runtime = started.elapsed();
    let said = |what: &str| {
        let logs = first.logs();
        let line = logs
            .lines()
            .rev()
            .find(|l| l.contains(what))
            .unwrap_or("")
            .to_string();
        line.rsplit_once(what)
            .map(|(_, rest)| rest.to_string())
            .unwrap_or(line)
    };
    eprintln!(
        "containers: first start to first answer {:.2} s (warm-up {}, checkpoint, restore); \
         restart to first answer {:.2} s (restore {}); a second container {:.2} s; an empty \
         container {:.2} s; checkpoint image {:.0} MB; container image {:.0} MB",
        first_start.as_secs_f64(),
        said("warm in "),
        restart.as_secs_f64(),
        said("restored in "),
        beside.as_secs_f64(),
        runtime.as_secs_f64(),
        megabytes(size_of(image)),
        megabytes(container_image),
    );
}

fn an_image_of_another_build_is_replaced_with_replace_invalid_and_refused_without() {
    images();
    let redis = RedisServer::start();
    let volume = volume("container-other-build");
    let port = free_port();
    let first = Container::run(
        "this-build",
        &service_options(&redis, port, Some(&volume)),
        SERVICE,
        &[],
    );
    let (value, _, _) = parse(&first.answer(port, "/item/7"));
    first.stop();
    let manifest = volume.join("axum").join("crac-manifest");
    let ours = std::fs::read(&manifest).unwrap();

    // Without --replace-invalid (the entrypoint spelled out without it): refused.
    let mut options = service_options(&redis, port, Some(&volume));
    options.extend(["--entrypoint".into(), "crac".into()]);
    let refused = Container::run(
        "refused",
        &options,
        OTHER_BUILD,
        &[
            "run",
            "--image",
            IMAGE_IN_CONTAINER,
            "--",
            "/usr/local/bin/axum_service",
        ],
    );
    assert_eq!(refused.exit_code(), 70, "{}", refused.logs());
    let logs = refused.logs();
    assert!(
        logs.contains(&format!("cannot restore {IMAGE_IN_CONTAINER}: "))
            && logs.contains("pass --replace-invalid"),
        "the refusal names the image and the way out:\n{logs}"
    );
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        ours,
        "a refused image is left as it was"
    );

    // With the image's own entrypoint (--replace-invalid): a fresh checkpoint.
    let replaced = Container::run(
        "replaced",
        &service_options(&redis, port, Some(&volume)),
        OTHER_BUILD,
        &[],
    );
    let (new_value, _, _) = parse(&replaced.answer(port, "/item/7"));
    assert_eq!(new_value, value, "the same service, warmed up again");
    let logs = replaced.logs();
    assert!(
        logs.contains(&format!("replacing the image in {IMAGE_IN_CONTAINER}: "))
            && logs.contains(&format!(
                "image written to {IMAGE_IN_CONTAINER}; restoring it"
            )),
        "{logs}"
    );
    assert_ne!(std::fs::read(&manifest).unwrap(), ours, "a new image");
}

fn the_pod_spec_plays_and_serves_again_from_a_restore() {
    images();
    let spec = std::fs::read_to_string(repo().join("examples/container/pod.yaml")).unwrap();
    let node_path = "path: /var/lib/crac-images/axum-service";
    assert!(
        spec.contains(node_path),
        "pod.yaml's hostPath moved: {spec}"
    );
    let dir = scratch("pod");
    let yaml = dir.join("pod.yaml");
    let images = dir.join("images");
    std::fs::write(
        &yaml,
        spec.replace(node_path, &format!("path: {}", images.display())),
    )
    .unwrap();

    let started = Instant::now();
    let pod = Pod::play(&yaml);
    let body = pod.answer("/item/7");
    let first_start = started.elapsed();
    let (value, _, _) = parse(&body);
    let logs = pod.logs();
    assert!(
        logs.contains("no image in") && logs.contains("crac: restored in "),
        "{logs}"
    );
    // What the spec grants is what the container got.
    let caps = podman_ok(&[
        "inspect",
        "--format",
        "{{.EffectiveCaps}}",
        "axum-service-service",
    ]);
    assert_eq!(
        caps.trim(),
        "[CAP_NET_ADMIN CAP_SETPCAP CAP_SYS_ADMIN CAP_SYS_CHROOT CAP_SYS_TIME]"
    );
    assert!(images.join("axum").join("crac-manifest").is_file());
    drop(pod);

    let started = Instant::now();
    let pod = Pod::play(&yaml);
    let body = pod.answer("/item/7");
    let restart = started.elapsed();
    assert_eq!(parse(&body).0, value, "{body}");
    let logs = pod.logs();
    assert!(
        !logs.contains("no image in") && logs.contains("crac: restored in "),
        "played again, the pod restores:\n{logs}"
    );
    eprintln!(
        "containers: pod.yaml first play to first answer {:.2} s; played again {:.2} s",
        first_start.as_secs_f64(),
        restart.as_secs_f64()
    );
}

fn each_documented_privilege_is_needed_and_a_missing_one_is_named() {
    images();
    let redis = RedisServer::start();
    // SETPCAP is left out: without it CRIU's restorer hits a BUG() and the restore
    // hangs until `crac restore`'s timeout (300 s) instead of failing (measured; see
    // examples/container/README.md).
    let cases: [(&str, Vec<String>, &str); 5] = [
        (
            "no-sys-admin",
            least_privilege(Some("SYS_ADMIN")),
            "lacks CAP_SYS_ADMIN",
        ),
        (
            "no-net-admin",
            least_privilege(Some("NET_ADMIN")),
            "lacks CAP_NET_ADMIN",
        ),
        (
            "no-sys-time",
            least_privilege(Some("SYS_TIME")),
            "lacks CAP_SYS_TIME",
        ),
        (
            "no-sys-chroot",
            least_privilege(Some("SYS_CHROOT")),
            "lacks CAP_SYS_CHROOT",
        ),
        (
            "seccomp",
            least_privilege(None)
                .into_iter()
                .filter(|arg| arg != "--security-opt" && arg != "seccomp=unconfined")
                .collect(),
            "runs under a seccomp filter",
        ),
    ];
    for (label, privileges, named) in cases {
        let volume = volume(&format!("container-{label}"));
        let options = service_options(&redis, free_port(), Some(&volume));
        let container = Container::run_with(label, &privileges, &options, SERVICE, &[]);
        let code = container.exit_code();
        let logs = container.logs();
        assert_ne!(code, 0, "{label}: {logs}");
        assert!(
            logs.contains(named) && logs.contains("needs privileges"),
            "{label}: the failure names what is missing:\n{logs}"
        );
    }
}

/// A podman secret holding a file, removed when dropped.
struct Secret(String);

impl Secret {
    fn create(file: &Path) -> Secret {
        let name = format!("crac-e2e-{}-image-key", std::process::id());
        let _ = podman().args(["secret", "rm", &name]).output();
        podman_ok(&["secret", "create", &name, file.to_str().unwrap()]);
        Secret(name)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = podman().args(["secret", "rm", &self.0]).output();
    }
}

/// The service image with the image in `volume` copied into a layer on top (the
/// recipe's step 2, examples/container/README.md), removed when dropped.
struct Baked(String);

impl Baked {
    fn build(volume: &Path, tag: &str) -> Baked {
        let context = scratch(&format!("container-{tag}-context"));
        let copied = Command::new("cp")
            .arg("-a")
            .arg(volume.join("axum"))
            .arg(context.join("axum"))
            .status()
            .unwrap();
        assert!(copied.success());
        std::fs::write(
            context.join("Containerfile"),
            format!("FROM {SERVICE}\nCOPY axum {IMAGE_IN_CONTAINER}\n"),
        )
        .unwrap();
        let baked = Baked(format!("localhost/crac-axum-service:{tag}"));
        podman_ok(&[
            "build",
            "--quiet",
            "--tag",
            &baked.0,
            context.to_str().unwrap(),
        ]);
        baked
    }
}

impl Drop for Baked {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "-f", &self.0]).output();
    }
}

fn an_image_layer_with_a_prebaked_checkpoint_restores_on_the_first_start_and_through_a_registry() {
    images();
    let redis = RedisServer::start();
    let volume = volume("container-bake");
    let port = free_port();
    // Step 1 of the recipe: run the image once with the volume where the image lands.
    let baking = Container::run(
        "baking",
        &service_options(&redis, port, Some(&volume)),
        SERVICE,
        &[],
    );
    let (value, _, _) = parse(&baking.answer(port, "/item/7"));
    baking.stop();
    drop(baking);

    // Step 2: an image layer holding the checkpoint.
    let layered = Baked::build(&volume, "e2e-baked");
    let baked = layered.0.as_str();

    // Without the key that sealed it (the entrypoint spelled out without
    // --replace-invalid): refused, naming both keys.
    let mut options = service_options(&redis, port, None);
    options.extend(["--entrypoint".into(), "crac".into()]);
    let app = "/usr/local/bin/axum_service";
    let args = ["run", "--image", IMAGE_IN_CONTAINER, "--", app];
    let keyless = Container::run("baked-keyless", &options, baked, &args);
    assert_eq!(keyless.exit_code(), 70, "{}", keyless.logs());
    assert!(
        keyless
            .logs()
            .contains("an image that travels needs the same key on both hosts"),
        "{}",
        keyless.logs()
    );

    // Step 3: the first start of the baked image (a fresh anonymous volume, filled from
    // the layer), given the baking host's key as a secret, restores.
    let secret = Secret::create(&volume.join("image.key"));
    let mut options = service_options(&redis, port, None);
    options.extend([
        "--secret".into(),
        format!("{},mode=0400", secret.0),
        "-e".into(),
        format!("CRAC_IMAGE_KEY=/run/secrets/{}", secret.0),
    ]);
    let started = Instant::now();
    let container = Container::run("baked", &options, baked, &[]);
    let body = container.answer(port, "/item/7");
    let first_answer = started.elapsed();
    assert_eq!(parse(&body).0, value, "{body}");
    let logs = container.logs();
    assert!(
        !logs.contains("no image in") && logs.contains("crac: restored in "),
        "the baked checkpoint was restored:\n{logs}"
    );
    eprintln!(
        "containers: first start of the image with a baked checkpoint to first answer {:.2} s",
        first_answer.as_secs_f64()
    );
    drop(container);

    // Step 4: pushed to a registry, pulled into another storage (another host's), run there.
    through_a_registry(baked, &redis, port, &volume.join("image.key"), &value);
}

/// Pushes `baked` to a registry on 127.0.0.1, pulls it into a second podman storage (another
/// host's), and runs it there with the key in `key_file`: it restores and answers `value`.
fn through_a_registry(baked: &str, redis: &RedisServer, port: u16, key_file: &Path, value: &str) {
    let registry = Registry::start();
    let remote = format!("{}/crac-axum-service:e2e-baked", registry.address);
    podman_ok(&["push", "--quiet", "--tls-verify=false", baked, &remote]);
    let storage = Storage::other_host(&scratch("container-other-host"));
    struct Reset(Storage);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = podman::podman_in(&self.0)
                .args(["system", "reset", "--force"])
                .output();
        }
    }
    let _reset = Reset(storage.clone());
    podman_ok_in(
        &storage,
        &["pull", "--quiet", "--tls-verify=false", &remote],
    );
    let key = format!("crac-e2e-{}-other-host-key", std::process::id());
    podman_ok_in(
        &storage,
        &["secret", "create", &key, key_file.to_str().unwrap()],
    );
    let mut options = service_options(redis, port, None);
    options.extend([
        "--secret".into(),
        format!("{key},mode=0400"),
        "-e".into(),
        format!("CRAC_IMAGE_KEY=/run/secrets/{key}"),
    ]);
    let pulled = Container::run_in(
        &storage,
        "other-host",
        &least_privilege(None),
        &options,
        &remote,
        &[],
    );
    let body = pulled.answer(port, "/item/7");
    assert_eq!(parse(&body).0, value, "{body}");
    let logs = pulled.logs();
    assert!(
        logs.contains("crac: restored in "),
        "the checkpoint pulled from the registry was restored:\n{logs}"
    );
}

/// Debian's docker-registry serving on a free port of 127.0.0.1 from a scratch
/// directory, stopped when dropped.
struct Registry {
    child: std::process::Child,
    address: String,
}

impl Registry {
    fn start() -> Registry {
        let dir = scratch("container-registry");
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (scripts/install-containers.sh installs it)");
        let registry = Registry { child, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}: {}",
                registry.address,
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The restore-only runtime (examples/container/README.md): the image is taken by a
/// privileged start, and production containers restore it with
/// `--cap-drop ALL --cap-add CHECKPOINT_RESTORE,SETUID,SETGID,SETPCAP` under the default
/// seccomp profile — no SYS_ADMIN — with `criu restore --unprivileged` in the
/// container's own PID namespace; two of them beside each other.
fn a_restore_only_container_restores_without_sys_admin_under_the_default_seccomp_profile() {
    images();
    let redis = RedisServer::start();
    let volume = volume("container-restore-only");
    let port = free_port();
    // The privileged start that takes the image runs the service with no capability
    // the restore-only containers could not give it back; CRIU then also needs
    // SYS_PTRACE to trace it (measured: `Unable to interrupt task` without).
    let mut options = service_options(&redis, port, Some(&volume));
    options.extend(["--entrypoint".into(), "crac".into()]);
    let mut taking_privileges = least_privilege(None);
    taking_privileges.extend(["--cap-add".into(), "SYS_PTRACE".into()]);
    let taking = Container::run_with(
        "taking",
        &taking_privileges,
        &options,
        SERVICE,
        &[
            "run",
            "--image",
            IMAGE_IN_CONTAINER,
            "--drop-capabilities",
            "--env",
            "PORT",
            "--",
            "/usr/local/bin/axum_service",
        ],
    );
    let (value, _, _) = parse(&taking.answer(port, "/item/7"));
    taking.stop();
    drop(taking);

    let restore_only: Vec<String> = [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHECKPOINT_RESTORE,SETUID,SETGID,SETPCAP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut instances = Vec::new();
    for label in ["restore-only-1", "restore-only-2"] {
        let port = free_port();
        let started = Instant::now();
        let container = Container::run_with(
            label,
            &restore_only,
            &service_options(&redis, port, Some(&volume)),
            SERVICE,
            &[],
        );
        let body = container.answer(port, "/item/7");
        let first_answer = started.elapsed();
        let (restored, _, instance) = parse(&body);
        assert_eq!(restored, value, "the warm cache came back: {body}");
        let logs = container.logs();
        assert!(
            !logs.contains("no image in") && logs.contains("crac: restored in "),
            "restored, not started cold:\n{logs}"
        );
        assert!(
            logs.contains("axum_service: restored where Instant counts the time in the image"),
            "Restore::monotonic_time_kept says what the warning says:\n{logs}"
        );
        let granted = podman_ok(&[
            "inspect",
            "--format",
            "{{.EffectiveCaps}} {{.HostConfig.SecurityOpt}}",
            &format!("crac-e2e-{}-{label}", std::process::id()),
        ]);
        assert!(
            granted.starts_with("[CAP_CHECKPOINT_RESTORE CAP_SETGID CAP_SETPCAP CAP_SETUID]")
                && !granted.contains("seccomp=unconfined"),
            "{granted}"
        );
        eprintln!(
            "containers: a restore-only container (no SYS_ADMIN, default seccomp) to first \
             answer {:.2} s",
            first_answer.as_secs_f64()
        );
        instances.push((container, instance));
    }
    assert_ne!(instances[0].1, instances[1].1, "two copies, two instances");
    drop(instances);
    rootless_podman::restores_in_rootless_podman(&volume, &redis, &value);

    doctor_in_a_restore_only_container(&redis, port, &volume, &restore_only);
}

/// `crac doctor` in a restore-only container (`privileges`) judges restore-only mode,
/// the image in `volume` included.
fn doctor_in_a_restore_only_container(
    redis: &RedisServer,
    port: u16,
    volume: &Path,
    privileges: &[String],
) {
    let mut options = service_options(redis, port, Some(volume));
    options.extend(["--entrypoint".into(), "crac".into()]);
    let doctor = Container::run_with(
        "restore-only-doctor",
        privileges,
        &options,
        SERVICE,
        &["doctor", IMAGE_IN_CONTAINER],
    );
    let code = doctor.exit_code();
    let logs = doctor.logs();
    assert_eq!(code, 0, "{logs}");
    for line in [
        "restore-only mode",
        "OK   root's capabilities: CAP_CHECKPOINT_RESTORE, CAP_SETUID, CAP_SETGID, CAP_SETPCAP",
        "OK   seccomp: a filter: restores work under it",
        "WARN time namespaces: restore-only",
        &format!("OK   image: {IMAGE_IN_CONTAINER} can be restored here"),
        "mode restore-only (in use): works",
    ] {
        assert!(logs.contains(line), "{line:?} in {logs}");
    }
}

/// pod-restore-only.yaml under `podman kube play`: a privileged play of pod.yaml (its
/// service run with `--drop-capabilities`, and SYS_PTRACE) takes the image on the node
/// path, then the restore-only pod restores it with no SYS_ADMIN and the default
/// seccomp profile.
fn the_restore_only_pod_spec_restores_what_a_privileged_pod_took() {
    images();
    let dir = scratch("pod-restore-only");
    let images = dir.join("images");
    let node_path = "path: /var/lib/crac-images/axum-service";
    let moved = |spec: String| {
        assert!(spec.contains(node_path), "the hostPath moved: {spec}");
        spec.replace(node_path, &format!("path: {}", images.display()))
    };
    let privileged =
        moved(std::fs::read_to_string(repo().join("examples/container/pod.yaml")).unwrap());
    let caps = r#"add: ["SYS_ADMIN", "NET_ADMIN", "SYS_TIME", "SYS_CHROOT", "SETPCAP"]"#;
    let image = "      image: crac-axum-service:latest\n";
    assert!(
        privileged.contains(caps) && privileged.contains(image),
        "{privileged}"
    );
    let taking = privileged
        .replace(
            caps,
            r#"add: ["SYS_ADMIN", "NET_ADMIN", "SYS_TIME", "SYS_CHROOT", "SETPCAP", "SYS_PTRACE"]"#,
        )
        .replace(
            image,
            &format!(
                "{image}      command: [\"crac\", \"run\", \"--image\", \"{IMAGE_IN_CONTAINER}\", \
                 \"--drop-capabilities\", \"--env\", \"PORT\", \"--\", \
                 \"/usr/local/bin/axum_service\"]\n"
            ),
        );
    let taking_yaml = dir.join("taking.yaml");
    std::fs::write(&taking_yaml, taking).unwrap();
    let pod = Pod::play(&taking_yaml);
    let (value, _, _) = parse(&pod.answer("/item/7"));
    assert!(pod.logs().contains("no image in"), "{}", pod.logs());
    drop(pod);
    assert!(images.join("axum").join("crac-manifest").is_file());

    let spec = moved(
        std::fs::read_to_string(repo().join("examples/container/pod-restore-only.yaml")).unwrap(),
    );
    let yaml = dir.join("pod-restore-only.yaml");
    std::fs::write(&yaml, spec).unwrap();
    let started = Instant::now();
    let pod = Pod::play_named(&yaml, "axum-service-restore-only");
    let body = pod.answer("/item/7");
    let first_answer = started.elapsed();
    assert_eq!(parse(&body).0, value, "the warm cache came back: {body}");
    let logs = pod.logs();
    assert!(
        !logs.contains("no image in") && logs.contains("crac: restored in "),
        "restored, not started cold:\n{logs}"
    );
    let granted = podman_ok(&[
        "inspect",
        "--format",
        "{{.EffectiveCaps}}",
        "axum-service-restore-only-service",
    ]);
    assert_eq!(
        granted.trim(),
        "[CAP_CHECKPOINT_RESTORE CAP_SETGID CAP_SETPCAP CAP_SETUID]"
    );
    let pid = podman_ok(&[
        "inspect",
        "--format",
        "{{.State.Pid}}",
        "axum-service-restore-only-service",
    ]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "crac restores under the runtime's seccomp filter: {status}"
    );
    eprintln!(
        "containers: pod-restore-only.yaml (no SYS_ADMIN, default seccomp) to first answer \
         {:.2} s",
        first_answer.as_secs_f64()
    );
}
