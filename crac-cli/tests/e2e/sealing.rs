//! Images sealed with the host's key: an image edited and resealed without the key (as
//! an attacker who can write the image but not read the key would) is refused, and so is
//! one sealed with another key, naming both; one key installed on two "hosts" restores;
//! a key file that is a symbolic link, another user's or open to others is refused by
//! name; the key is made on first use, private, and is never in an image.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::attacker::attacker;
use crate::harness::{Run, crac_bin, host_key, killed_by_sigkill, only_stdio, setup, tests, text};

tests![
    an_image_edited_and_resealed_without_the_key_is_refused_naming_the_image_and_the_key,
    an_image_sealed_with_another_key_is_refused_with_both_ids,
    the_same_key_installed_on_two_hosts_restores,
    a_key_file_that_is_a_link_another_users_or_open_to_others_is_refused_by_name,
    the_key_is_made_on_first_use_private_and_is_not_in_the_image,
    another_user_cannot_read_the_host_key,
];

/// `crac ARGS` with `CRAC_IMAGE_KEY=key` (the host's own key without one), to its end.
fn crac_with_key(key: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(crac_bin());
    only_stdio(&mut cmd).args(args).stdin(Stdio::null());
    match key {
        Some(key) => cmd.env("CRAC_IMAGE_KEY", key),
        None => cmd.env_remove("CRAC_IMAGE_KEY"),
    };
    cmd.output().unwrap()
}

/// A checkpoint of the `plain` scenario into `image`, sealed with `key`.
fn checkpoint(image: &Path, key: Option<&Path>) {
    let run = Run::new("plain", image);
    let run = match key {
        Some(key) => run.env("CRAC_IMAGE_KEY", key.to_str().unwrap()),
        None => run,
    };
    let out = run.output();
    assert!(killed_by_sigkill(out.status), "{out:?}");
}

/// `crac key show`'s id for `key`.
fn key_id(key: Option<&Path>) -> String {
    let out = crac_with_key(key, &["key", "show"]);
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout).split(' ').next().unwrap().to_string()
}

/// A restore with `key`, refused before CRIU ran with `expected` in its message; the
/// copy never ran, and `crac inspect` refuses it too.
fn refused(image: &Path, key: Option<&Path>, expected: &str) {
    let dir = image.to_str().unwrap();
    let out = crac_with_key(key, &["restore", dir]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("crac: cannot restore {dir}: ")) && stderr.contains(expected),
        "expected {expected:?}:\n{stderr}"
    );
    assert!(
        !stderr.contains("criu restore failed"),
        "CRIU ran: {stderr}"
    );
    assert!(
        !text(&out.stdout).contains("round 1 outcome"),
        "the copy ran: {out:?}"
    );
    let inspected = crac_with_key(key, &["inspect", dir]);
    assert_eq!(inspected.status.code(), Some(1), "{inspected:?}");
    assert!(
        text(&inspected.stderr).contains(expected),
        "crac inspect says why: {inspected:?}"
    );
}

/// Restored with `key`: the scenario's own exit.
fn restores(image: &Path, key: Option<&Path>) {
    let out = crac_with_key(key, &["restore", image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        text(&out.stdout).contains("round 1 outcome Restored"),
        "{out:?}"
    );
}

/// What the attacker did to an image they could write: heap bytes changed in
/// `pages-1.img`, every `file` line's digest recomputed, and the manifest "sealed" as
/// well as one can without the key (its key id copied, BLAKE3 without a key).
fn forge_without_the_key(image: &Path) {
    let pages = image.join("pages-1.img");
    let mut bytes = std::fs::read(&pages).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b = !*b;
    }
    std::fs::write(&pages, &bytes).unwrap();
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let (body, seal) = manifest
        .trim_end()
        .rsplit_once('\n')
        .map(|(body, seal)| (format!("{body}\n"), seal))
        .unwrap();
    let body: String = body
        .lines()
        .map(|line| match line.strip_prefix("file ") {
            Some(entry) => {
                let name = entry.splitn(3, ' ').nth(2).unwrap();
                let contents = std::fs::read(image.join(name)).unwrap();
                let digest = blake3::hash(&contents);
                format!("file {} {digest} {name}\n", contents.len())
            }
            None => format!("{line}\n"),
        })
        .collect();
    let id = seal.split(' ').nth(1).unwrap();
    let forged = format!(
        "{body}manifest-seal {id} {}\n",
        blake3::hash(body.as_bytes())
    );
    std::fs::write(image.join("crac-manifest"), forged).unwrap();
}

fn an_image_edited_and_resealed_without_the_key_is_refused_naming_the_image_and_the_key() {
    let (_, image) = setup("sealing-forged");
    checkpoint(&image, None);
    let original = std::fs::read(image.join("crac-manifest")).unwrap();
    forge_without_the_key(&image);
    let key = host_key();
    refused(
        &image,
        None,
        &format!(
            "the image was damaged or changed after the dump: crac-manifest: its seal does \
             not match its text: the image was changed after the dump and resealed without \
             the key ({}, id {})",
            key.display(),
            key_id(None)
        ),
    );
    // the format before keys, with its unkeyed digest: refused as outdated
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let body = manifest[..manifest.trim_end().rfind('\n').unwrap() + 1]
        .replace("format crac-image 3", "format crac-image 2");
    let old = format!("{body}manifest-blake3 {}\n", blake3::hash(body.as_bytes()));
    std::fs::write(image.join("crac-manifest"), old).unwrap();
    refused(&image, None, "an image of an earlier crac-rs");
    assert_ne!(
        original,
        std::fs::read(image.join("crac-manifest")).unwrap()
    );
}

/// Two key files made with `crac key init`.
fn two_keys(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("keys/a.key"), dir.join("keys/b.key"));
    for key in [&a, &b] {
        let out = crac_with_key(Some(key), &["key", "init"]);
        assert!(out.status.success(), "{out:?}");
    }
    (a, b)
}

fn an_image_sealed_with_another_key_is_refused_with_both_ids() {
    let (dir, image) = setup("sealing-other-key");
    let (a, b) = two_keys(&dir);
    checkpoint(&image, Some(&a));
    let (id_a, id_b) = (key_id(Some(&a)), key_id(Some(&b)));
    assert_ne!(id_a, id_b);
    refused(
        &image,
        Some(&b),
        &format!(
            "it was sealed with key {id_a}, and this host's key ({}) is {id_b}; an image that \
             travels needs the same key on both hosts: see `crac key`",
            b.display()
        ),
    );
    // no key at all where it is restored
    let missing = dir.join("keys/missing.key");
    refused(
        &image,
        Some(&missing),
        &format!(
            "it was sealed with key {id_a}, and there is no image key at {} on this host",
            missing.display()
        ),
    );
}

fn the_same_key_installed_on_two_hosts_restores() {
    let (dir, image) = setup("sealing-same-key");
    let (a, b) = two_keys(&dir);
    checkpoint(&image, Some(&a));
    // the operator copies host A's key over host B's
    std::fs::write(&b, std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(key_id(Some(&a)), key_id(Some(&b)));
    restores(&image, Some(&b));
}

fn a_key_file_that_is_a_link_another_users_or_open_to_others_is_refused_by_name() {
    let (dir, image) = setup("sealing-bad-key");
    let (a, _) = two_keys(&dir);
    checkpoint(&image, Some(&a));
    let link = dir.join("keys/link.key");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let open = dir.join("keys/open.key");
    std::fs::copy(&a, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let theirs = dir.join("keys/theirs.key");
    std::fs::copy(&a, &theirs).unwrap();
    let user = attacker();
    std::os::unix::fs::lchown(&theirs, Some(user.uid), Some(user.gid)).unwrap();
    for (key, problem) in [
        (&link, "is a symbolic link, which is refused".to_string()),
        (&open, "is open to group or others (mode 0644)".to_string()),
        (
            &theirs,
            format!("is owned by uid {}, not by this user", user.uid),
        ),
    ] {
        let named = format!("the image key {}: {problem}", key.display());
        refused(&image, Some(key), &named);
        let shown = crac_with_key(Some(key), &["key", "show"]);
        assert_eq!(shown.status.code(), Some(70), "{shown:?}");
        assert!(text(&shown.stderr).contains(&named), "{shown:?}");
        // a checkpoint is refused before any hook runs, the image left as it was
        let out = Run::new("plain", &image)
            .env("CRAC_IMAGE_KEY", key.to_str().unwrap())
            .output();
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(
            stdout.contains("round 1 error ")
                && stdout.contains(&format!("CRAC_IMAGE_KEY: {named}")),
            "{stdout}"
        );
    }
    restores(&image, Some(&a));
}

fn the_key_is_made_on_first_use_private_and_is_not_in_the_image() {
    let (dir, image) = setup("sealing-first-use");
    let key = dir.join("state/crac/image.key");
    checkpoint(&image, Some(&key));
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), 0);
    let parent = std::fs::metadata(key.parent().unwrap()).unwrap();
    assert_eq!(parent.mode() & 0o7777, 0o700);
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let id = key_id(Some(&key));
    assert!(
        manifest.contains(&format!("\nmanifest-seal {id} ")),
        "{manifest}"
    );
    // the key was read by the dump's action script, never by the checkpointed process
    let hex = std::fs::read_to_string(&key).unwrap();
    let hex = hex.trim();
    let raw: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    for entry in std::fs::read_dir(&image).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for needle in [hex.as_bytes(), &raw[..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the key is in {}",
                path.display()
            );
        }
    }
    restores(&image, Some(&key));
}

/// What makes a forgery fail: the user who can write an image cannot read the key.
fn another_user_cannot_read_the_host_key() {
    let made = crac_with_key(None, &["key", "init"]);
    assert!(made.status.success(), "{made:?}");
    let key = host_key();
    let user = attacker();
    let read = user.command("cat").arg(&key).output().unwrap();
    assert!(
        !read.status.success(),
        "the key read by another user: {read:?}"
    );
    assert!(text(&read.stderr).contains("Permission denied"), "{read:?}");
    let shown = user
        .command(crac_bin())
        .args(["key", "show"])
        .env("CRAC_IMAGE_KEY", &key)
        .output()
        .unwrap();
    assert_eq!(shown.status.code(), Some(70), "{shown:?}");
    assert!(
        text(&shown.stderr).contains(&format!("the image key {}: ", key.display())),
        "{shown:?}"
    );
}
