//! `crac pack` and `crac unpack`: an image, heap segments included, travels as one file
//! and restores from where it is unpacked; a truncated, corrupted, resealed or wrongly
//! keyed packed file is refused naming what is wrong, with nothing written; a full disk
//! while unpacking leaves nothing behind; `crac restore FILE` unpacks into the image
//! cache once and restores from it; `--encrypt-to` makes it unreadable without the age
//! identity, and no plaintext file is ever named while it is packed; `crac run --image
//! FILE` restores it and never replaces it; `crac inspect FILE` and `crac doctor FILE`
//! tell what a host must match, from the file's head only.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{
    KillOnDrop, Run, alive, crac, crac_bin, crac_run, crac_run_command, image_pid,
    killed_by_sigkill, only_stdio, restore, scratch, seal_with, setup, tests, text,
};
use crate::mapped_heap::{mapped, store};
use crate::storage::Tmpfs;

tests![
    a_packed_image_unpacks_elsewhere_and_restores,
    a_mapped_heap_image_travels_with_its_segments,
    damaged_packed_files_are_refused_by_name_with_nothing_written,
    a_full_disk_while_unpacking_leaves_nothing,
    a_packed_file_restores_through_the_cache_unpacked_once,
    an_encrypted_packed_file_needs_its_identity,
    crac_run_restores_a_packed_image_and_never_replaces_it,
    inspect_and_doctor_judge_a_packed_file_without_unpacking_it,
    an_encrypted_packed_file_is_inspected_with_its_identity_only,
    an_encrypted_pack_never_writes_the_plaintext_to_a_named_file,
    eviction_keeps_the_cache_entry_a_running_restore_uses,
];

fn pack(image: &Path, file: &Path) {
    let out = crac(&[
        "pack",
        image.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("MB of image in"), "{out:?}");
}

/// `crac pack IMAGE -o FILE --encrypt-to RECIPIENTS`, which must succeed.
fn pack_encrypted(image: &Path, file: &Path, recipients: &Path) {
    let out = crac(&[
        "pack",
        image.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
        "--encrypt-to",
        recipients.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

fn unpack(file: &Path, dir: &Path) -> Output {
    crac(&[
        "unpack",
        file.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
    ])
}

/// `crac unpack FILE -o DIR --identity IDENTITY`.
fn unpack_with_identity(file: &Path, dir: &Path, identity: &Path) -> Output {
    crac(&[
        "unpack",
        file.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ])
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn a_packed_image_unpacks_elsewhere_and_restores() {
    let (dir, image) = setup("pack-plain");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let file = dir.join("image.crac");
    pack(&image, &file);
    std::fs::remove_dir_all(&image).unwrap();

    let elsewhere = scratch("pack-plain-elsewhere").join("copy");
    let out = unpack(&file, &elsewhere);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("unpacked"), "{out:?}");
    let out = restore(&elsewhere);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // a second unpack to the same place replaces nothing
    let out = unpack(&file, &elsewhere);
    assert!(text(&out.stderr).contains("exists"), "{out:?}");
}

fn a_mapped_heap_image_travels_with_its_segments() {
    let (dir, image) = setup("pack-mapped");
    let out = mapped(&image).output();
    assert!(text(&out.stdout).contains("mapped warm ok"), "{out:?}");
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let segments: Vec<PathBuf> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("segment "))
        .map(|v| PathBuf::from(v.splitn(3, ' ').nth(2).unwrap()))
        .collect();
    assert!(!segments.is_empty(), "{manifest}");
    let file = dir.join("image.crac");
    pack(&image, &file);
    let packed = std::fs::metadata(&file).unwrap().len();
    assert!(packed < 96 << 20, "{packed}");
    for path in &segments {
        std::process::Command::new("chattr")
            .arg("-i")
            .arg(path)
            .status()
            .unwrap();
    }
    std::fs::remove_dir_all(&image).unwrap();
    std::fs::remove_dir_all(store(&image)).unwrap();

    let copy = scratch("pack-mapped-copy").join("image");
    let out = unpack(&file, &copy);
    assert!(out.status.success(), "{out:?}");
    for path in &segments {
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o7777, 0o400, "{}", path.display());
    }
    let out = crac(&["restore", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(text(&out.stdout).contains("mapped verify ok"), "{out:?}");

    // a second copy on this host shares the segments already in place
    let second = scratch("pack-mapped-second").join("image");
    assert!(unpack(&file, &second).status.success());
    // a different file where a segment must go is never replaced
    let third = scratch("pack-mapped-third").join("image");
    let segment = &segments[0];
    // placed immutable, as sealed segments are, where the file system allows it
    let immutable = std::process::Command::new("lsattr")
        .arg(segment)
        .output()
        .is_ok_and(|out| {
            text(&out.stdout)
                .split(' ')
                .next()
                .unwrap_or("")
                .contains('i')
        });
    let cleared = std::process::Command::new("chattr")
        .arg("-i")
        .arg(segment)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        immutable || !cleared,
        "a placed segment is immutable where chattr works"
    );
    let _ = std::fs::set_permissions(segment, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    std::fs::write(segment, b"another file").unwrap();
    let out = unpack(&file, &third);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains(&format!(
            "must be at {}, which holds another file",
            segment.display()
        )),
        "{stderr}"
    );
    assert!(!third.exists());
    assert_eq!(std::fs::read(segment).unwrap(), b"another file");
}

/// `packed` with its manifest replaced by `manifest` and its header digest made to match,
/// as the documented layout allows anyone to.
fn with_manifest(packed: &[u8], manifest: &str) -> Vec<u8> {
    let m = u32::from_le_bytes(packed[12..16].try_into().unwrap()) as usize;
    let n = u32::from_le_bytes(packed[16..20].try_into().unwrap()) as usize;
    let table = &packed[52 + m..52 + m + 54 * n];
    let mut fixed = packed[..20].to_vec();
    fixed[12..16].copy_from_slice(&(manifest.len() as u32).to_le_bytes());
    let mut hasher = blake3::Hasher::new();
    hasher
        .update(&fixed)
        .update(manifest.as_bytes())
        .update(table);
    [
        &fixed[..],
        hasher.finalize().as_bytes(),
        manifest.as_bytes(),
        table,
        &packed[52 + m + 54 * n..],
    ]
    .concat()
}

fn damaged_packed_files_are_refused_by_name_with_nothing_written() {
    let (dir, image) = setup("pack-damaged");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let file = dir.join("image.crac");
    pack(&image, &file);
    let good = std::fs::read(&file).unwrap();
    let m = u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
    let manifest = std::str::from_utf8(&good[52..52 + m]).unwrap().to_string();
    let body = &manifest[..manifest.trim_end().rfind('\n').unwrap() + 1];
    let edited = body.replace("\npid ", "\npid 1");
    // resealed without the key: the right key id, an unkeyed BLAKE3
    let id = manifest
        .rsplit_once("manifest-seal ")
        .unwrap()
        .1
        .split(' ')
        .next()
        .unwrap();
    let resealed = format!(
        "{edited}manifest-seal {id} {}\n",
        blake3::hash(edited.as_bytes())
    );
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(
        &other_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let other_sealed = seal_with(body, &other_key);

    // bytes of the compressed data changed all over its second half: one flipped bit near
    // the end once unpacked to the very same bytes (digests intact), which rightly passes
    let mut corrupted = good.clone();
    for at in (good.len() / 2..good.len() - 16).step_by(4093) {
        corrupted[at] ^= 0xff;
    }
    let mut header = good.clone();
    header[60] ^= 0x01;
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "it is truncated",
        ),
        ("corrupted", corrupted, "is damaged in the packed file"),
        (
            "header",
            header,
            "header, manifest or entry table is damaged",
        ),
        (
            "resealed",
            with_manifest(&good, &resealed),
            "resealed without the key",
        ),
        (
            "other-key",
            with_manifest(&good, &other_sealed),
            "it was sealed with key",
        ),
        (
            "foreign",
            b"PK\x03\x04 a zip file".to_vec(),
            "not a packed crac image",
        ),
    ];
    for (name, bytes, why) in cases {
        let bad = dir.join(format!("{name}.crac"));
        std::fs::write(&bad, bytes).unwrap();
        let target_parent = scratch(&format!("pack-damaged-{name}"));
        let target = target_parent.join("image");
        let out = unpack(&bad, &target);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{name}: {out:?}");
        assert!(
            stderr.contains(&format!("cannot unpack {}", bad.display())) && stderr.contains(why),
            "{name}: {why}: {stderr}"
        );
        assert!(
            listing(&target_parent).is_empty(),
            "{name}: {:?}",
            listing(&target_parent)
        );
    }
    // the same packed file under another host key
    let out = std::process::Command::new(crate::harness::crac_bin())
        .args(["unpack", file.to_str().unwrap(), "-o"])
        .arg(scratch("pack-damaged-key").join("image"))
        .env("CRAC_IMAGE_KEY", &other_key)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("it was sealed with key") && stderr.contains("other.key"),
        "{stderr}"
    );
    assert!(listing(&scratch("pack-damaged-key")).is_empty());
}

fn a_full_disk_while_unpacking_leaves_nothing() {
    let (dir, image) = setup("pack-full");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let file = dir.join("image.crac");
    pack(&image, &file);
    let bytes: u64 = std::fs::read_dir(&image)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // room for half the image
    let mount = Tmpfs::mount("pack-full-disk", &format!("size={}k", bytes / 2048));
    let out = unpack(&file, &mount.0.join("image"));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(listing(&mount.0).is_empty(), "{:?}", listing(&mount.0));
}

fn a_packed_file_restores_through_the_cache_unpacked_once() {
    let (dir, image) = setup("pack-cache");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let file = dir.join("image.crac");
    pack(&image, &file);
    std::fs::remove_dir_all(&image).unwrap();
    let cache = dir.join("cache");
    let restore_file = |verbose: &[&str]| {
        only_stdio(&mut std::process::Command::new(crac_bin()))
            .arg("restore")
            .args(verbose)
            .arg(&file)
            .env("CRAC_IMAGE_CACHE", &cache)
            .output()
            .unwrap()
    };
    let first = restore_file(&["--verbose"]);
    assert_eq!(first.status.code(), Some(7), "{first:?}");
    assert!(
        text(&first.stderr).contains("into the image cache"),
        "{first:?}"
    );
    // unpacking checked every byte and recorded it: the first restore does not hash
    assert!(
        text(&first.stderr).contains("(page data not hashed: unchanged since its image"),
        "{first:?}"
    );
    let entries = listing(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let manifest = cache.join(&entries[0]).join("image/crac-manifest");
    let inode = std::os::unix::fs::MetadataExt::ino(&manifest.metadata().unwrap());
    let mode = std::os::unix::fs::PermissionsExt::mode(&cache.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    let second = restore_file(&[]);
    assert_eq!(second.status.code(), Some(7), "{second:?}");
    assert!(!text(&second.stderr).contains("unpacked"), "{second:?}");
    assert_eq!(listing(&cache), entries);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&manifest.metadata().unwrap()),
        inode,
        "the cached copy was used as it was"
    );
}

/// A new age identity file and the recipients file of its public key, in `dir`.
fn age_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    use age::secrecy::ExposeSecret as _;
    let identity = age::x25519::Identity::generate();
    let (secret, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    std::fs::write(
        &secret,
        format!("# {name}\n{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    std::fs::write(&public, format!("{}\n", identity.to_public())).unwrap();
    (secret, public)
}

fn an_encrypted_packed_file_needs_its_identity() {
    let (dir, image) = setup("pack-encrypted");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let (identity, recipients) = age_keys(&dir, "ours");
    let (other_identity, _) = age_keys(&dir, "theirs");
    let file = dir.join("image.crac");
    pack_encrypted(&image, &file, &recipients);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let visible = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        !visible(b"CRACPACK") && !visible(b"format crac-image"),
        "the contents are encrypted"
    );
    assert!(
        listing(&dir).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        listing(&dir)
    );
    std::fs::remove_dir_all(&image).unwrap();

    let refused = |args: &[&str], why: &str| {
        let target = scratch("pack-encrypted-refused");
        let mut all = vec!["unpack", file.to_str().unwrap(), "-o"];
        let to = target.join("image");
        all.push(to.to_str().unwrap());
        all.extend(args);
        let out = crac(&all);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{why}: {stderr}"
        );
        assert!(listing(&target).is_empty(), "{:?}", listing(&target));
    };
    refused(&[], "it is encrypted (age): give the identity");
    refused(
        &["--identity", other_identity.to_str().unwrap()],
        "to none of the identities",
    );
    let truncated = dir.join("truncated.crac");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let target = scratch("pack-encrypted-truncated");
    let out = unpack_with_identity(&truncated, &target.join("image"), &identity);
    assert!(!out.status.success(), "{out:?}");
    assert!(listing(&target).is_empty());

    let copy = scratch("pack-encrypted-copy").join("image");
    let out = unpack_with_identity(&file, &copy, &identity);
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_dir_all(&copy).unwrap();
    // restored straight from the encrypted file, the identity in the environment
    let out = only_stdio(&mut std::process::Command::new(crac_bin()))
        .arg("restore")
        .arg(&file)
        .env("CRAC_IMAGE_CACHE", dir.join("cache"))
        .env("CRAC_PACK_IDENTITY", &identity)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

fn crac_run_restores_a_packed_image_and_never_replaces_it() {
    let (dir, image) = setup("pack-run");
    let exe = std::env::current_exe().unwrap();
    let first = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(first.status.code(), Some(7), "{first:?}");
    let file = dir.join("image.crac");
    pack(&image, &file);
    std::fs::remove_dir_all(&image).unwrap();
    let packed = std::fs::read(&file).unwrap();
    let run = |extra: &[&str]| {
        only_stdio(&mut crac_run_command(&exe, &file, "ready", extra))
            .env("CRAC_IMAGE_CACHE", dir.join("cache"))
            .output()
            .unwrap()
    };
    let restored = run(&[]);
    assert_eq!(restored.status.code(), Some(7), "{restored:?}");
    assert!(
        text(&restored.stdout).contains("ready Some(Restored)"),
        "{restored:?}"
    );
    let refused = run(&["--every", "5"]);
    assert!(
        text(&refused.stderr).contains("never replaces nor checkpoints to"),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        packed,
        "the packed file is untouched"
    );
}

/// `crac ARGS` with `envs` set, to its end.
fn crac_with(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = std::process::Command::new(crac_bin());
    only_stdio(&mut cmd)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// The key file's id as the seal line of a manifest names it.
fn sealed_with(file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let m = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let manifest = std::str::from_utf8(&bytes[52..52 + m]).unwrap();
    let seal = manifest.rsplit_once("manifest-seal ").unwrap().1;
    seal.split(' ').next().unwrap().to_string()
}

/// A key file of 32 random bytes, hex, mode 0600.
fn other_key(dir: &Path) -> PathBuf {
    let key = dir.join("other.key");
    let hex: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::write(&key, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    key
}

fn inspect_and_doctor_judge_a_packed_file_without_unpacking_it() {
    let (dir, image) = setup("pack-inspect");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let file = dir.join("image.crac");
    pack(&image, &file);
    std::fs::remove_dir_all(&image).unwrap();
    let cache = dir.join("cache");
    let envs = [("CRAC_IMAGE_CACHE", cache.as_path())];
    let key = sealed_with(&file);
    let exe = std::env::current_exe().unwrap();

    let out = crac_with(&["inspect", file.to_str().unwrap()], &envs);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for expected in [
        "packed file   ".to_string(),
        "encrypted     no".into(),
        format!("sealed with   key {key}: this host's, the seal holds"),
        format!("executable    {}", exe.display()),
        "cpu flags     ".into(),
        "OK   CPU features: this CPU has all".into(),
        "OK   executable: ".into(),
        "OK   sealing key".into(),
        "restorable    yes, on this host, once unpacked".into(),
    ] {
        assert!(stdout.contains(&expected), "{expected}: {stdout}");
    }
    let out = crac_with(
        &["inspect", "--timeout", "5", file.to_str().unwrap()],
        &envs,
    );
    assert!(
        out.status.code() == Some(70)
            && text(&out.stderr).contains("--timeout: applies to an image directory"),
        "an option of the directory form is refused, not ignored: {out:?}"
    );
    let out = crac_with(&["inspect", "--json", file.to_str().unwrap()], &envs);
    let json = text(&out.stdout);
    for expected in [
        r#""encrypted":false"#,
        r#""seal":"holds""#,
        r#""restorable":true"#,
        r#""cpu_flags":["#,
        r#""criu_version":"#,
    ] {
        assert!(json.contains(expected), "{expected}: {json}");
    }
    let out = crac_with(&["doctor", file.to_str().unwrap()], &envs);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for expected in [
        "OK   packed image: ",
        "OK   sealing key: sealed with",
        "OK   CPU features",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    // nothing was unpacked: no cache, no image, no private directory
    assert!(!cache.exists());
    assert_eq!(listing(&dir), ["image.crac"]);

    // under another key: said, with what to do
    let other = other_key(&scratch("pack-inspect-key"));
    let envs = [
        ("CRAC_IMAGE_CACHE", cache.as_path()),
        ("CRAC_IMAGE_KEY", &other),
    ];
    let out = crac_with(&["doctor", file.to_str().unwrap()], &envs);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains(&format!(
            "FAIL sealing key: sealed with key {key}; this host's key"
        )) && stdout.contains(&format!("do: install the key it was sealed with ({key})")),
        "{stdout}"
    );
    assert!(stdout.contains("does not work: sealing key"), "{stdout}");
    let out = crac_with(&["inspect", file.to_str().unwrap()], &envs);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains("not this host's") && stdout.contains("restorable    no: sealing key"),
        "{stdout}"
    );
    // not a packed file: refused by name
    let foreign = dir.join("foreign.crac");
    std::fs::write(&foreign, b"CRACPACK\x07\x00 not really").unwrap();
    let out = crac(&["inspect", foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stdout).contains("contents      not shown: it is of packed format version 7"),
        "{out:?}"
    );
}

fn an_encrypted_packed_file_is_inspected_with_its_identity_only() {
    let (dir, image) = setup("pack-inspect-encrypted");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let (identity, recipients) = age_keys(&dir, "ours");
    let file = dir.join("image.crac");
    pack_encrypted(&image, &file, &recipients);

    let out = crac(&["inspect", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains("encrypted     yes, with age, to 1 recipient\n")
            && stdout.contains("contents      not shown: its contents are encrypted: give"),
        "{stdout}"
    );
    assert!(!stdout.contains("executable"), "{stdout}");
    let out = crac(&["doctor", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains("FAIL packed image: its contents are encrypted")
            && stdout.contains("do: give an identity of one of its age recipients"),
        "{stdout}"
    );

    let with_identity = ["--identity", identity.to_str().unwrap()];
    let out = crac(&[&["inspect", file.to_str().unwrap()][..], &with_identity].concat());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout.contains("(its head decrypted with the identity given)")
            && stdout.contains("the seal holds"),
        "{stdout}"
    );
    let out = crac_with(
        &["doctor", "--json", file.to_str().unwrap()],
        &[("CRAC_PACK_IDENTITY", &identity)],
    );
    let json = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        json.contains(r#""name":"packed image","status":"ok""#)
            && json.contains("encrypted to 1 age recipient"),
        "{json}"
    );
}

/// Names created in or moved into each of `dirs` while `during` runs, as inotify saw them.
fn names_created(dirs: &[&Path], during: impl FnOnce()) -> Vec<String> {
    // SAFETY: plain system calls on a descriptor of this function's own.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    for dir in dirs {
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `path` is a valid C string for the call's duration.
        let wd = unsafe {
            libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_CREATE | libc::IN_MOVED_TO)
        };
        assert!(wd >= 0, "{}", dir.display());
    }
    during();
    let mut names = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        // SAFETY: `buffer` is writable for its length.
        let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at < n as usize {
            // struct inotify_event: wd, mask, cookie, len (4 bytes each), then the name
            let len = u32::from_ne_bytes(buffer[at + 12..at + 16].try_into().unwrap()) as usize;
            let name = &buffer[at + 16..at + 16 + len];
            let end = name.iter().position(|&b| b == 0).unwrap_or(len);
            names.push(String::from_utf8_lossy(&name[..end]).into_owned());
            at += 16 + len;
        }
    }
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
    names
}

fn an_encrypted_pack_never_writes_the_plaintext_to_a_named_file() {
    let (dir, image) = setup("pack-no-plaintext");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let (_, recipients) = age_keys(&dir, "ours");
    let out_dir = scratch("pack-no-plaintext-out");
    let file = out_dir.join("image.crac");
    let before = listing(&image);
    let mut out = None;
    let created = names_created(&[&out_dir, &image, &dir], || {
        out = Some(crac(&[
            "pack",
            image.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
            "--encrypt-to",
            recipients.to_str().unwrap(),
        ]));
    });
    let out = out.unwrap();
    assert!(out.status.success(), "{out:?}");
    // the ciphertext is written beside the output under a private name, then renamed;
    // the plaintext pack has no name anywhere, in the image's directory or elsewhere
    let temp = ".image.crac.encrypting-";
    assert!(
        created
            .iter()
            .all(|n| n == "image.crac" || n.starts_with(temp)),
        "{created:?}"
    );
    assert_eq!(listing(&out_dir), ["image.crac"]);
    assert_eq!(listing(&image), before);
    // what the packed format holds in the clear is nowhere in the output
    let bytes = std::fs::read(&file).unwrap();
    let manifest = std::fs::read(image.join("crac-manifest")).unwrap();
    let visible = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!visible(b"CRACPACK") && !visible(&manifest[..64]));
    let exe = std::env::current_exe().unwrap();
    assert!(!visible(exe.as_os_str().as_encoded_bytes()));
}

fn eviction_keeps_the_cache_entry_a_running_restore_uses() {
    let (dir, image) = setup("pack-lease");
    let first = Run::new("forever", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    let running = dir.join("running.crac");
    pack(&image, &running);
    let other_image = dir.join("other");
    assert!(killed_by_sigkill(
        Run::new("plain", &other_image).output().status
    ));
    let other = dir.join("other.crac");
    pack(&other_image, &other);
    // the same image packed otherwise: another cache entry
    let third = dir.join("third.crac");
    let out = crac(&[
        "pack",
        other_image.to_str().unwrap(),
        "-o",
        third.to_str().unwrap(),
        "--level",
        "3",
    ]);
    assert!(out.status.success(), "{out:?}");
    let cache = dir.join("cache");
    let restore_from = |file: &Path| {
        let mut cmd = std::process::Command::new(crac_bin());
        only_stdio(&mut cmd)
            .arg("restore")
            .arg(file)
            .env("CRAC_IMAGE_CACHE", &cache)
            .env("CRAC_IMAGE_CACHE_BYTES", "1");
        cmd
    };

    let copy_out = dir.join("copy.out");
    let mut restorer = restore_from(&running)
        .stdout(std::fs::File::create(&copy_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = KillOnDrop(pid as u32);
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&copy_out)
        .unwrap()
        .contains("round 1 outcome Restored")
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the copy never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let leased = listing(&cache);
    assert_eq!(leased.len(), 1, "{leased:?}");
    // another image unpacked with room for none: the running restore's entry stays
    let out = restore_from(&other).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(cache.join(&leased[0]).join("image/crac-manifest").is_file());
    assert_eq!(listing(&cache).len(), 2, "{:?}", listing(&cache));

    // once that restore ends, its entry goes at the next eviction
    restorer.kill().unwrap();
    restorer.wait().unwrap();
    let start = std::time::Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the copy outlived its restorer"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = restore_from(&third).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let left = listing(&cache);
    assert!(!left.contains(&leased[0]), "{left:?}");
    assert_eq!(left.len(), 1, "{left:?}");
}
