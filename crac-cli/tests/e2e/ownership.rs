//! Who may have written an image: a restore runs the image's memory with root's
//! privileges, so root restores none that another user owns or can write (or could swap
//! through a directory above it), unless told to; the files of an image and a failed
//! dump's log are private; and a checkpoint request for another user's process is denied
//! as such (the user: `attacker.rs`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use crate::attacker::attacker;
use crate::harness::{
    KillOnDrop, Run, crac, crac_bin, crac_run, criu_wrapper, killed_by_sigkill, only_stdio,
    ready_for_requests, restore, setup, tests, text,
};

tests![
    an_image_another_user_owns_is_refused_naming_the_owner,
    an_image_open_to_everyone_is_refused_naming_the_mode,
    a_writable_directory_above_the_image_is_refused_unless_sticky,
    crac_run_refuses_an_image_whose_parent_another_user_owns,
    the_override_restores_such_an_image_with_a_warning,
    an_image_and_a_failed_dumps_log_are_private,
    a_checkpoint_request_for_another_users_process_is_denied,
];

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A fresh image of the `plain` scenario at `image`.
fn checkpointed(image: &Path) {
    let out = Run::new("plain", image).output();
    assert!(killed_by_sigkill(out.status), "{out:?}");
}

/// `image` and everything in it made the attacker's, as if they had made it (no edit:
/// what is refused is who could have made one, whatever the seal says).
fn give_to_attacker(image: &Path) {
    let user = attacker();
    user.own(image);
    for entry in std::fs::read_dir(image).unwrap() {
        user.own(&entry.unwrap().path());
    }
}

/// A refused restore: exit status 70, the message naming the image and `problem`, and
/// the override.
fn assert_refused(out: &Output, image: &Path, problem: &str) {
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot restore {}: {problem}", image.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "--insecure-image-permissions (or CRAC_INSECURE_IMAGE_PERMISSIONS=1) restores it anyway"
        ),
        "{stderr}"
    );
}

fn restored(out: &Output) -> bool {
    out.status.code() == Some(7) && text(&out.stdout).contains("round 1 outcome Restored")
}

/// The attack as found: root restored an image directory a user owned (and had edited
/// and resealed). Now the owner alone refuses it, in `crac restore` and `crac inspect`.
fn an_image_another_user_owns_is_refused_naming_the_owner() {
    let (_dir, image) = setup("ownership-owned");
    checkpointed(&image);
    give_to_attacker(&image);
    let user = attacker();
    let problem = format!(
        "{} is owned by crac-e2e-attacker (uid {}), who could change or replace the image, \
         and a restore runs what an image holds with root's privileges: make it root's \
         (chown root {0})",
        image.display(),
        user.uid
    );
    assert_refused(&restore(&image), &image, &problem);

    let inspected = crac(&["inspect", image.to_str().unwrap()]);
    assert_eq!(inspected.status.code(), Some(1), "{inspected:?}");
    assert!(
        text(&inspected.stdout).contains(&format!(
            "restorable    no: cannot restore {}: {problem}",
            image.display()
        )),
        "{inspected:?}"
    );
}

/// A 0777 directory of 0666 files: anyone could have rewritten it. The first path found
/// so is named, with its mode and the chmod that closes it.
fn an_image_open_to_everyone_is_refused_naming_the_mode() {
    let (_dir, image) = setup("ownership-open");
    checkpointed(&image);
    let pages = image.join("pages-1.img");
    chmod(&pages, 0o666);
    let problem = format!(
        "{} is writable by group and others (mode 0666), any of whom could change or replace \
         the image, and a restore runs what an image holds with root's privileges: chmod go-w {0}",
        pages.display()
    );
    assert_refused(&restore(&image), &image, &problem);

    for entry in std::fs::read_dir(&image).unwrap() {
        chmod(&entry.unwrap().path(), 0o666);
    }
    chmod(&image, 0o777);
    let problem = format!(
        "{} is writable by group and others (mode 0777)",
        image.display()
    );
    assert_refused(&restore(&image), &image, &problem);
}

/// Whoever can write a directory above the image can rename it aside and put another in
/// its place; in a sticky directory (such as /tmp) they cannot touch what is not theirs.
fn a_writable_directory_above_the_image_is_refused_unless_sticky() {
    let (dir, _) = setup("ownership-above");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    let image = shared.join("image");
    checkpointed(&image);
    chmod(&shared, 0o777);
    let problem = format!(
        "{} is writable by group and others (mode 0777)",
        shared.display()
    );
    assert_refused(&restore(&image), &image, &problem);
    chmod(&shared, 0o1777);
    let out = restore(&image);
    assert!(restored(&out), "a sticky directory above is fine: {out:?}");
}

/// The swap attack: a user who owns the directory above `crac run --image DIR` renames
/// root's image aside and puts one of theirs in its place; root's next `crac run`
/// restored it. Now `crac run` refuses the image there, and a first run refuses to
/// write one there at all.
fn crac_run_refuses_an_image_whose_parent_another_user_owns() {
    let (dir, _) = setup("ownership-run");
    let exe = std::env::current_exe().unwrap();
    let parent = dir.join("theirs");
    std::fs::create_dir(&parent).unwrap();
    let image = parent.join("image");
    assert_eq!(crac_run(&exe, &image, "ready", &[]).status.code(), Some(7));
    let user = attacker();
    user.own(&parent);
    // What owning the parent allows: root's image renamed (and one put in its place).
    for (from, to) in [
        (&image, &parent.join("aside")),
        (&parent.join("aside"), &image),
    ] {
        let moved = user.command("mv").arg(from).arg(to).output().unwrap();
        assert!(moved.status.success(), "the owner of the parent: {moved:?}");
    }
    let owner = format!(
        "{} is owned by crac-e2e-attacker (uid {})",
        parent.display(),
        user.uid
    );
    let refused = crac_run(&exe, &image, "ready", &[]);
    assert_refused(&refused, &image, &owner);
    assert!(
        !text(&refused.stdout).contains("ready"),
        "nothing ran: {refused:?}"
    );

    let elsewhere = parent.join("new");
    let refused = crac_run(&exe, &elsewhere, "ready", &[]);
    assert_eq!(refused.status.code(), Some(70), "{refused:?}");
    assert!(
        text(&refused.stderr).contains(&format!(
            "crac: --image: crac run would write its image to {}, but {owner}",
            elsewhere.display()
        )),
        "{refused:?}"
    );
    assert!(!elsewhere.exists(), "nothing was started: {refused:?}");
}

/// For those who must: the flag, or the variable, restores such an image (and `crac
/// inspect` says it would), with a warning naming what is wrong.
fn the_override_restores_such_an_image_with_a_warning() {
    let (_dir, image) = setup("ownership-override");
    checkpointed(&image);
    give_to_attacker(&image);
    let warning = format!(
        "crac: warning: {} is owned by crac-e2e-attacker",
        image.display()
    );
    let path = image.to_str().unwrap();
    let cracked = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(crac_bin());
        if let Some(value) = env {
            cmd.env("CRAC_INSECURE_IMAGE_PERMISSIONS", value);
        }
        only_stdio(&mut cmd).args(args).output().unwrap()
    };
    let out = cracked(&["restore", "--insecure-image-permissions", path], None);
    assert!(restored(&out), "{out:?}");
    assert!(text(&out.stderr).contains(&warning), "{out:?}");

    let out = cracked(&["restore", path], Some("1"));
    assert!(restored(&out), "{out:?}");
    assert!(text(&out.stderr).contains(&warning), "{out:?}");

    let inspected = cracked(&["inspect", "--insecure-image-permissions", path], None);
    assert_eq!(inspected.status.code(), Some(0), "{inspected:?}");
    assert!(text(&inspected.stdout).contains("restorable    yes"));

    let out = cracked(&["restore", path], Some("yes"));
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(
        text(&out.stderr)
            .contains("CRAC_INSECURE_IMAGE_PERMISSIONS is \"yes\", which is neither 1 nor 0"),
        "{out:?}"
    );
}

/// An image is the process's memory: its directory 0700 and every file 0600 from the
/// start (CRIU writes them 0644), also after a restore (CRIU adds `stats-restore`), and
/// so is the log a failed dump leaves, also when crac writes it itself (CRIU left none).
fn an_image_and_a_failed_dumps_log_are_private() {
    let (dir, image) = setup("ownership-modes");
    checkpointed(&image);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let all_private = || {
        assert_eq!(mode(&image), 0o700);
        let mut files = 0;
        for entry in std::fs::read_dir(&image).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files += 1;
        }
        assert!(files > 5, "{files} files");
    };
    all_private();
    let out = restore(&image);
    assert!(restored(&out), "{out:?}");
    assert!(image.join("stats-restore").exists());
    all_private();

    let criu = dir.join("criu-fails");
    criu_wrapper(&criu, "exit 1");
    let failed = dir.join("failed");
    let out = Run::new("plain", &failed)
        .env("CRAC_CRIU", criu.to_str().unwrap())
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let log = dir.join("failed.dump-failed.log");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("criu left no log"),
        "crac wrote it"
    );
    assert_eq!(mode(&log), 0o600);
}

/// Only a process's own user and root may ask it to checkpoint; another user's request
/// says so, instead of claiming the process has no image directory.
fn a_checkpoint_request_for_another_users_process_is_denied() {
    let (dir, image) = setup("ownership-request");
    let mut child = ready_for_requests(Run::new("request", &image), &dir.join("stdout"));
    let reaper = KillOnDrop(child.id());
    let user = attacker();
    let pid = child.id().to_string();
    let asked = user
        .command(crac_bin())
        .args(["checkpoint", &pid])
        .output()
        .unwrap();
    assert_eq!(asked.status.code(), Some(70), "{asked:?}");
    assert!(
        text(&asked.stderr).contains(&format!(
            "crac: permission denied: process {pid} runs as root (uid 0) and you are \
             crac-e2e-attacker (uid {}); only its own user and root may ask it to checkpoint: \
             run `crac checkpoint {pid}` as one of them",
            user.uid
        )),
        "{asked:?}"
    );
    assert!(!image.exists(), "no image was taken");
    drop(reaper);
    child.wait().unwrap();
}
