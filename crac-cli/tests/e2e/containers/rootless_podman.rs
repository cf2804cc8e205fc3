//! Rootless podman: an ordinary user (the suite's, `attacker.rs`) pulls the service image
//! with a restore-only checkpoint baked in and runs it in podman of their own — the
//! container's root is that user, its capabilities those of a user namespace. It
//! restores with CHECKPOINT_RESTORE added alone (podman's default set has SETUID, SETGID
//! and SETPCAP), under the default seccomp profile; with nothing added it is refused,
//! naming the capability.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::podman::{Container, Storage, podman_in, podman_ok, podman_ok_in};
use super::{Baked, free_port, parse, service_options};
use crate::attacker::attacker;
use crate::harness::scratch;
use crate::redis_server::RedisServer;

/// Runs the image in `volume` (taken with `crac run --drop-capabilities`), baked into a
/// layer, in an ordinary user's rootless podman: it answers `value` restored.
pub(super) fn restores_in_rootless_podman(volume: &Path, redis: &RedisServer, value: &str) {
    let baked = Baked::build(volume, "e2e-restore-only-baked");
    let user = attacker();
    // Directories the user can reach whatever the umask the tests run with.
    let dir = scratch("container-rootless-podman");
    for up in [&dir, dir.parent().unwrap()] {
        std::fs::set_permissions(up, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let storage = Storage::rootless(user, &dir.join("home"));
    struct Reset(Storage);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = podman_in(&self.0)
                .args(["system", "reset", "--force"])
                .output();
        }
    }
    let _reset = Reset(storage.clone());

    // The user's storage gets the image as a pull would, from an archive root saved.
    let exchange = dir.join("exchange");
    std::fs::create_dir(&exchange).unwrap();
    let archive = exchange.join("image.tar");
    let key = exchange.join("image.key");
    podman_ok(&[
        "save",
        "--quiet",
        "--format",
        "oci-archive",
        "--output",
        archive.to_str().unwrap(),
        &baked.0,
    ]);
    std::fs::copy(volume.join("image.key"), &key).unwrap();
    for path in [&exchange, &archive, &key] {
        user.own(path);
    }
    podman_ok_in(
        &storage,
        &["load", "--quiet", "--input", archive.to_str().unwrap()],
    );
    let secret = "crac-e2e-rootless-image-key";
    podman_ok_in(
        &storage,
        &["secret", "create", secret, key.to_str().unwrap()],
    );

    let run = |label: &str, privileges: &[&str]| {
        let port = free_port();
        let mut options = service_options(redis, port, None);
        options.extend([
            "--secret".into(),
            format!("{secret},mode=0400"),
            "-e".into(),
            format!("CRAC_IMAGE_KEY=/run/secrets/{secret}"),
        ]);
        let privileges: Vec<String> = privileges.iter().map(|s| s.to_string()).collect();
        let container = Container::run_in(&storage, label, &privileges, &options, &baked.0, &[]);
        (container, port)
    };

    let started = std::time::Instant::now();
    let (container, port) = run("rootless", &["--cap-add", "CHECKPOINT_RESTORE"]);
    let body = container.answer(port, "/item/7");
    eprintln!(
        "containers: rootless podman, CHECKPOINT_RESTORE added alone, to first answer {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(parse(&body).0, value, "the warm cache came back: {body}");
    let logs = container.logs();
    assert!(
        logs.contains("crac: restored in ")
            && logs.contains("axum_service: restored where Instant counts the time in the image"),
        "restored, not started cold, and told its monotonic clock was not kept:\n{logs}"
    );
    let granted = container.inspect("{{.EffectiveCaps}} {{.HostConfig.SecurityOpt}}");
    assert!(
        granted.contains("CAP_CHECKPOINT_RESTORE")
            && !granted.contains("CAP_SYS_ADMIN")
            && !granted.contains("seccomp=unconfined"),
        "{granted}"
    );
    drop(container);

    let (refused, _) = run("rootless-without", &[]);
    assert_ne!(refused.exit_code(), 0, "{}", refused.logs());
    let logs = refused.logs();
    assert!(
        logs.contains("rootless podman: --cap-add CHECKPOINT_RESTORE alone"),
        "the failure says what to add:\n{logs}"
    );
}
