//! Image targets that fail under the dump: a full disk and a read-only one; and those
//! refused before it (a symbolic link, a mount point). The process
//! keeps running with its resources rolled back, the error names the cause, and a
//! previous image stays intact and restorable; nothing half-written is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Run, checksum_of, lines, restore, scratch, tests, text};

tests![
    a_full_disk_fails_the_dump_and_keeps_the_previous_image,
    a_read_only_target_fails_the_dump_naming_the_path,
    a_symlink_or_a_mount_point_as_the_image_directory_is_refused_before_any_hook,
];

/// A tmpfs of `size` mounted at a fresh directory, unmounted when dropped.
pub(crate) struct Tmpfs(pub(crate) PathBuf);

impl Tmpfs {
    pub(crate) fn mount(name: &str, options: &str) -> Tmpfs {
        let dir = scratch(name).join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                options,
                "crac-e2e",
                dir.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "mount -o {options}");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Everything beside the image in `mount` (no staging directory survives a failure).
fn others(mount: &Path) -> Vec<String> {
    std::fs::read_dir(mount)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "image" && name != "image.dump-failed.log")
        .collect()
}

fn a_full_disk_fails_the_dump_and_keeps_the_previous_image() {
    // room for one image of the scenario (about 5 MB), not for a second beside it
    let mount = Tmpfs::mount("disk-full", "size=8m");
    let image = mount.0.join("image");
    let out = Run::new("twice", &image)
        .env("CRAC_LEAVE_RUNNING", "1")
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    let checksum = checksum_of(lines(&stdout)[0]).to_string();
    assert!(
        stdout.contains("round 1 outcome LeftRunning"),
        "the first image fits: {stdout}"
    );
    assert!(
        stdout.contains("criu dump failed; the process was not checkpointed and continues")
            && stdout.contains("No space left on device"),
        "the error says why: {stdout}"
    );
    assert!(
        stdout.contains("hook server after_restore RolledBack")
            && stdout.contains(&format!("still running checksum {checksum}")),
        "rolled back and running: {stdout}"
    );
    assert_eq!(
        others(&mount.0),
        Vec::<String>::new(),
        "nothing half-written"
    );
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(3), "{restored:?}");
    assert!(
        text(&restored.stdout).contains(&format!(
            "round 1 outcome Restored generation 1 checksum {checksum}"
        )),
        "the previous image restores: {restored:?}"
    );
}

fn a_read_only_target_fails_the_dump_naming_the_path() {
    let mount = Tmpfs::mount("read-only", "ro,size=1m");
    let image = mount.0.join("image");
    let out = Run::new("plain", &image).output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&mount.0.display().to_string()) && stdout.contains("Read-only file system"),
        "the error names the path and the cause: {stdout}"
    );
    assert!(
        stdout.contains("hook server after_restore RolledBack"),
        "{stdout}"
    );
}

fn a_symlink_or_a_mount_point_as_the_image_directory_is_refused_before_any_hook() {
    let dir = scratch("odd-targets");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    let to_dir = dir.join("link");
    std::os::unix::fs::symlink(&real, &to_dir).unwrap();
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let mount = Tmpfs::mount("odd-targets-mount", "size=1m");
    let refused = |image: &Path, problem: &str| {
        let out = Run::new("plain", image).output();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("the image directory {}", image.display()))
                && stdout.contains(problem),
            "names the path and the cause: {stdout}"
        );
        assert!(
            !stdout.contains("hook "),
            "refused before any hook ran: {stdout}"
        );
    };
    refused(
        &to_dir,
        &format!("is a symbolic link to {}; a checkpoint", real.display()),
    );
    refused(&dangling, "which does not exist;");
    refused(&mount.0, "is a mount point;");
    assert!(
        std::fs::symlink_metadata(&to_dir).unwrap().is_symlink(),
        "the link stays"
    );
    assert_eq!(
        std::fs::read_dir(&real).unwrap().count(),
        0,
        "nothing written through it"
    );
}
