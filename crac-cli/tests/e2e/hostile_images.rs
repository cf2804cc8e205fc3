//! Hostile image files: whoever writes an image can put anything in it, and a restore or
//! an inspection must neither hang on it, nor read outside the image, nor pass terminal
//! escapes through. The images here are root's own, with hostile entries planted and the
//! manifest resealed (`forge_manifest`): what the owner of an image could do to it.

use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, Run, crac_started, forge_manifest, killed_by_sigkill, setup, tests, text,
};

tests![
    a_fifo_as_an_image_file_is_refused_by_name_at_once,
    a_link_to_dev_zero_is_refused_by_name,
    a_path_as_a_file_name_is_refused_without_reading_it,
    a_manifest_over_the_cap_is_refused_with_its_size,
    many_listed_files_are_checked_and_an_unlisted_one_found,
    control_characters_in_a_plan_name_are_printed_escaped,
    a_slow_check_ends_on_sigterm_and_at_the_timeout,
];

/// A fresh image of the `plain` scenario, taken by root.
fn image(name: &str) -> PathBuf {
    let (_, image) = setup(name);
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    image
}

/// The name of the image file whose name starts with `prefix`.
fn file_named(image: &Path, prefix: &str) -> String {
    std::fs::read_dir(image)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| name.starts_with(prefix))
        .unwrap()
}

/// The manifest made to list `name` with `size` and the digest of `bytes`, resealed.
fn list_as(image: &Path, name: &str, size: u64, bytes: &[u8]) {
    let digest = blake3::hash(bytes).to_hex().to_string();
    forge_manifest(image, |body| {
        body.lines()
            .map(|line| match line.rsplit_once(' ') {
                Some((_, listed)) if line.starts_with("file ") && listed == name => {
                    format!("file {size} {digest} {name}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect()
    });
}

/// `crac ARGS`, which must end within `limit`: killed, and the test failed, if not.
fn within(limit: Duration, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = crac_started(args);
    let guard = KillOnDrop(child.id());
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < limit,
            "`crac {}` still runs after {limit:?}: it hangs",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    std::mem::forget(guard);
    (out, started.elapsed())
}

/// `crac restore --timeout 10` and `crac inspect` both refuse `image` within a few
/// seconds, saying `what`; the restore starts nothing.
fn both_refuse(image: &Path, what: &str) {
    let dir = image.to_str().unwrap();
    let (out, took) = within(Duration::from_secs(8), &["restore", "--timeout", "10", dir]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("crac: cannot restore {dir}: ")) && stderr.contains(what),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("after_restore"), "{out:?}");
    eprintln!("refused in {took:?}: {}", stderr.trim_end());
    let (out, _) = within(Duration::from_secs(8), &["inspect", dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains(what), "{out:?}");
}

fn a_fifo_as_an_image_file_is_refused_by_name_at_once() {
    let image = image("hostile-fifo");
    let fs = file_named(&image, "fs-");
    std::fs::remove_file(image.join(&fs)).unwrap();
    let path = std::ffi::CString::new(image.join(&fs).into_os_string().into_vec()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    list_as(&image, &fs, 0, b"");
    // before: `open` waited for a writer forever, deaf to SIGTERM
    both_refuse(
        &image,
        &format!(
            "the image was damaged or changed after the dump: image file {fs} is a FIFO (named \
             pipe), not a regular file"
        ),
    );
    // the manifest itself
    let manifest = image.join("crac-manifest");
    std::fs::remove_file(&manifest).unwrap();
    let path = std::ffi::CString::new(manifest.into_os_string().into_vec()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    both_refuse(
        &image,
        "crac-manifest is a FIFO (named pipe), not a regular file",
    );
}

fn a_link_to_dev_zero_is_refused_by_name() {
    let image = image("hostile-zero");
    let fs = file_named(&image, "fs-");
    std::fs::remove_file(image.join(&fs)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", image.join(&fs)).unwrap();
    // /dev/zero's size is 0: before, the size matched and the hash never ended
    list_as(&image, &fs, 0, b"");
    both_refuse(
        &image,
        &format!("image file {fs} is a symbolic link, not a regular file"),
    );
}

fn a_path_as_a_file_name_is_refused_without_reading_it() {
    let image = image("hostile-path");
    // up to / from the image directory, then into /etc
    let depth = image.components().count() - 1;
    let shadow = format!("{}etc/shadow", "../".repeat(depth));
    let size = std::fs::metadata("/etc/shadow").unwrap().len();
    forge_manifest(&image, |body| {
        format!("{body}file 0 {} {shadow}\n", blake3::hash(b"").to_hex())
    });
    both_refuse(
        &image,
        &format!(
            "`file` {shadow:?} is a path, not a file name: an image lists the plain names of \
             the files in its own directory"
        ),
    );
    // before, the error told /etc/shadow's size, then (with the size right) its digest
    let out = crac_started(&["restore", image.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains(&format!("{size} bytes")) && !stderr.contains("blake3"),
        "{stderr}"
    );
}

fn a_manifest_over_the_cap_is_refused_with_its_size() {
    let image = image("hostile-large");
    // 8 MB of well-formed plan lines, resealed
    let padding: String = (0..100_000)
        .map(|i| format!("plan 0 resource 0 padding {i:0>60}\n"))
        .collect();
    forge_manifest(&image, |body| {
        let (head, files) = body.split_at(body.find("\nfile ").unwrap() + 1);
        format!("{head}{padding}{files}")
    });
    let size = std::fs::metadata(image.join("crac-manifest"))
        .unwrap()
        .len();
    assert!(size > 8_000_000);
    let what = format!(
        "crac-manifest: {size} bytes, more than a manifest may hold (4194304); not an image \
         crac-rs wrote"
    );
    both_refuse(&image, &what);
    // nothing of it printed
    let (out, _) = within(
        Duration::from_secs(8),
        &["inspect", image.to_str().unwrap()],
    );
    assert!(out.stdout.is_empty() && out.stderr.len() < 1000, "{out:?}");
}

fn many_listed_files_are_checked_and_an_unlisted_one_found() {
    let image = image("hostile-many");
    let empty = blake3::hash(b"").to_hex().to_string();
    let names: Vec<String> = (0..40_000).map(|i| format!("x-{i}.img")).collect();
    for name in &names {
        std::fs::write(image.join(name), b"").unwrap();
    }
    let listed: String = names
        .iter()
        .map(|n| format!("file 0 {empty} {n}\n"))
        .collect();
    forge_manifest(&image, |body| format!("{body}{listed}"));
    std::fs::write(image.join("stray.img"), b"").unwrap();
    let dir = image.to_str().unwrap();
    let (out, took) = within(Duration::from_secs(60), &["inspect", dir]);
    eprintln!("40,000 listed files checked by crac inspect in {took:?}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stdout).contains(
            "it holds stray.img, which its manifest does not list (remove stray.img if it is \
             yours)"
        ),
        "{out:?}"
    );
    std::fs::remove_file(image.join("stray.img")).unwrap();
    let (out, took) = within(Duration::from_secs(60), &["inspect", dir]);
    eprintln!("and again, nothing unlisted, in {took:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // 120,000 entries are more than a manifest may hold
    let more: String = (40_000..120_000)
        .map(|i| format!("file 0 {empty} x-{i}.img\n"))
        .collect();
    forge_manifest(&image, |body| format!("{body}{more}"));
    let (out, took) = within(Duration::from_secs(60), &["inspect", dir]);
    eprintln!("120,000 entries refused in {took:?}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("bytes, more than a manifest may hold (4194304)"),
        "{out:?}"
    );
}

fn control_characters_in_a_plan_name_are_printed_escaped() {
    let image = image("hostile-escapes");
    // retitles the window, clears the screen, and reverses what follows
    let name = "evil \u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}gnp.exe";
    forge_manifest(&image, |body| {
        let (head, files) = body.split_at(body.find("\nfile ").unwrap() + 1);
        format!("{head}plan 9 resource 0 {name}\n{files}")
    });
    let dir = image.to_str().unwrap();
    let (out, _) = within(Duration::from_secs(30), &["inspect", dir]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(r"evil \u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}gnp.exe [rank 9, resource]"),
        "{shown}"
    );
    assert!(
        !shown.contains(['\u{1b}', '\u{7}', '\u{202e}']),
        "{shown:?}"
    );
    let (out, _) = within(Duration::from_secs(30), &["inspect", "--json", dir]);
    let json = text(&out.stdout);
    assert!(
        json.contains(r#""name":"evil \u001b]0;owned\u0007\u001b[2J\u202egnp.exe""#),
        "{json}"
    );
}

fn a_slow_check_ends_on_sigterm_and_at_the_timeout() {
    let image = image("hostile-slow");
    // a 1 TB file (sparse: it takes no room) hashes for many minutes
    let slow = "zz-slow.img";
    let size = 1u64 << 40;
    std::fs::File::create(image.join(slow))
        .unwrap()
        .set_len(size)
        .unwrap();
    forge_manifest(&image, |body| {
        format!("{body}file {size} {} {slow}\n", blake3::hash(b"").to_hex())
    });
    let dir = image.to_str().unwrap();

    // before, the signal was noted and acted on only once the check ended
    let mut restore = crac_started(&["restore", dir]);
    let guard = KillOnDrop(restore.id());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(restore.try_wait().unwrap().is_none(), "still checking");
    let signalled = Instant::now();
    // SAFETY: plain kill of our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(restore.id() as i32, libc::SIGTERM) }, 0);
    while restore.try_wait().unwrap().is_none() {
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "crac restore did not end on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = restore.wait_with_output().unwrap();
    std::mem::forget(guard);
    eprintln!("ended {:?} after SIGTERM", signalled.elapsed());
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(
        text(&out.stderr).contains(&format!(
            "crac: cannot restore {dir}: signal SIGTERM came while it was being checked; \
             nothing was started"
        )),
        "{out:?}"
    );

    // before, --timeout counted from the end of the check
    let (out, took) = within(Duration::from_secs(10), &["restore", "--timeout", "2", dir]);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(
        text(&out.stderr).contains(&format!(
            "crac: cannot restore {dir}: its check had not finished when the 2 s allowed were \
             up (crac restore --timeout SECS allows more); nothing was started"
        )),
        "{out:?}"
    );
    let (out, _) = within(Duration::from_secs(10), &["inspect", "--timeout", "2", dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stdout).contains(
            "restorable    no: not known: its check had not finished when the 2 s allowed \
             were up (crac inspect --timeout SECS allows more)"
        ),
        "{out:?}"
    );
}
