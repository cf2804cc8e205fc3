//! What an unprivileged user on the same host can and cannot do to an image root took
//! (the user: `attacker.rs`).

use std::os::unix::fs::PermissionsExt as _;

use crate::attacker::attacker;
use crate::harness::{Run, killed_by_sigkill, setup, tests, text};

tests![another_user_can_read_nothing_of_an_image];

/// An image is the process's memory: its directory is root's and closed to others, so
/// another user can neither list it nor read a file of it, even where the directory
/// above it is open to everyone.
fn another_user_can_read_nothing_of_an_image() {
    let (dir, image) = setup("security-read");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let mode = std::fs::metadata(&image).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "image directory mode {mode:o}");
    let user = attacker();
    for args in [
        vec!["ls".to_string(), image.display().to_string()],
        vec![
            "cat".to_string(),
            image.join("crac-manifest").display().to_string(),
        ],
        vec![
            "cat".to_string(),
            image.join("pages-1.img").display().to_string(),
        ],
    ] {
        let out = user.command(&args[0]).args(&args[1..]).output().unwrap();
        assert!(!out.status.success(), "{args:?} as another user: {out:?}");
        assert!(text(&out.stderr).contains("Permission denied"), "{out:?}");
    }
}
