//! What goes wrong, and how it is reported: a refusing hook, open resources, CRIU
//! failing, a damaged image, a changed executable, an image directory not our own.

use std::io::Write as _;

use crate::harness::{
    Run, checksum_of, forge_manifest, killed_by_sigkill, lines, restore, scratch, set_len, setup,
    tests, text,
};

tests![
    a_failing_hook_means_no_image_and_the_process_continues_rolled_back,
    an_unclaimed_open_file_is_refused_by_name,
    an_established_tcp_connection_is_refused_before_criu_sees_it,
    when_criu_fails_the_process_continues_and_the_error_carries_criu_reason,
    a_truncated_image_is_refused_before_criu_runs,
    an_image_is_refused_when_the_executable_changed,
    a_directory_that_holds_other_files_is_never_used_as_the_image,
    a_criu_that_cannot_be_run_is_named,
];

fn a_failing_hook_means_no_image_and_the_process_continues_rolled_back() {
    let (dir, image) = setup("hook-error");
    let out = Run::new("hook-error", &image).output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    let l = lines(&stdout);
    assert_eq!(
        l[1..],
        [
            "hook server before_checkpoint",
            "hook index before_checkpoint",
            "hook index after_restore RolledBack",
            "hook server after_restore RolledBack",
            "round 1 error checkpoint refused, no image taken, resources rolled back; 1 failure:",
            &format!("still running checksum {}", checksum_of(l[0])),
        ]
    );
    assert!(
        stdout.contains("  - `server` failed in before_checkpoint: requests still in flight"),
        "{stdout}"
    );
    assert!(!image.exists(), "no image");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no staging leftovers"
    );
}

fn an_unclaimed_open_file_is_refused_by_name() {
    let (_, image) = setup("open-file");
    let out = Run::new("open-file", &image).output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 open file descriptor would be captured in the image:"),
        "{stdout}"
    );
    assert!(stdout.contains(" (file): /etc/hostname\n"), "{stdout}");
    assert!(
        stdout.contains("hook server after_restore RolledBack"),
        "{stdout}"
    );
    assert!(!image.exists());
}

fn an_established_tcp_connection_is_refused_before_criu_sees_it() {
    let (_, image) = setup("tcp");
    let out = Run::new("tcp", &image).output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    let conn = lines(&stdout)
        .into_iter()
        .find(|l| l.starts_with("connection "))
        .unwrap();
    let (client, server) = conn["connection ".len()..].split_once(" -> ").unwrap();
    assert!(
        stdout.contains("2 open file descriptors would be captured in the image:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(tcp): TCP {client} -> {server} (ESTABLISHED)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(tcp): TCP {server} -> {client} (ESTABLISHED)")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("TCP listening"),
        "the claimed listener is not refused: {stdout}"
    );
}

fn when_criu_fails_the_process_continues_and_the_error_carries_criu_reason() {
    let (dir, image) = setup("criu-fails");
    // let the connection through the fd check: CRIU itself refuses it
    let out = Run::new("tcp", &image)
        .env("CRAC_FD_POLICY", "kind:tcp=ignore")
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("criu dump failed; the process was not checkpointed and continues:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Connected TCP socket, consider using --tcp-established option."),
        "{stdout}"
    );
    let log = dir.join("image.dump-failed.log");
    assert!(
        stdout.contains(&format!("full CRIU log: {}", log.display())),
        "{stdout}"
    );
    assert!(log.is_file());
    assert!(
        stdout.contains("hook server after_restore RolledBack"),
        "{stdout}"
    );
    assert!(!image.exists(), "a failed dump leaves no image");
}

fn a_truncated_image_is_refused_before_criu_runs() {
    let (_, image) = setup("truncated");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let pages = image.join("pages-1.img");
    let size = std::fs::metadata(&pages).unwrap().len();
    set_len(&pages, size / 2);
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(70));
    assert_eq!(
        text(&out.stderr),
        format!(
            "crac: cannot restore {}: the image was damaged or changed after the dump: image file \
             pages-1.img is {} bytes, the manifest says {size}; take a new checkpoint\n",
            image.display(),
            size / 2
        )
    );
    set_len(&pages, size);
    forge_manifest(&image, |m| {
        m.replace("\ncpu-flags ", "\ncpu-flags crac_quantum_unit ")
    });
    let out = restore(&image);
    assert!(
        text(&out.stderr).contains(
            "this CPU lacks features the checkpointed process may use: crac_quantum_unit;"
        ),
        "{out:?}"
    );

    std::fs::remove_file(image.join("crac-manifest")).unwrap();
    let out = restore(&image);
    assert!(
        text(&out.stderr).contains("no crac-manifest: not a complete crac-rs image"),
        "{out:?}"
    );
}

fn an_image_is_refused_when_the_executable_changed() {
    let (dir, image) = setup("other-exe");
    let exe = dir.join("app-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let mut run = Run::new("plain", &image);
    run.exe = exe.clone();
    assert!(killed_by_sigkill(run.output().status));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .unwrap()
        .write_all(b"\0")
        .unwrap();
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(70));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is not the executable that was checkpointed",
            exe.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("restore needs the exact binary"),
        "{stderr}"
    );
}

fn a_directory_that_holds_other_files_is_never_used_as_the_image() {
    let dir = scratch("not-an-image");
    std::fs::write(dir.join("important.txt"), "keep me").unwrap();
    let out = Run::new("plain", &dir)
        .env("CRAC_LEAVE_RUNNING", "1")
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "round 1 error checkpoint engine `criu` is unavailable: the image directory {} (CRAC_CHECKPOINT_TO, crac run --image) holds files but no crac image; a checkpoint replaces that directory, so point it at a directory of its own",
            dir.display()
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hook "),
        "refused before any hook ran: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("important.txt")).unwrap(),
        "keep me"
    );
}

/// `CRAC_CRIU` pointing at a file that is not executable: the restore says which file.
fn a_criu_that_cannot_be_run_is_named() {
    let (dir, image) = setup("criu-not-executable");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let not_criu = dir.join("criu");
    std::fs::write(&not_criu, b"not a program").unwrap();
    let out = std::process::Command::new(crate::harness::crac_bin())
        .args(["restore", image.to_str().unwrap()])
        .env("CRAC_CRIU", &not_criu)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(
        text(&out.stderr).starts_with(&format!("crac: running {}: ", not_criu.display())),
        "{out:?}"
    );
}
