//! Field attributes with a real restore: `#[crac(restore_env = "NAME")]` set from
//! `crac restore --env`; `#[crac(reopen)]` files closed for the image and reopened by
//! path after it (where they were, where the restorer says, or not at all when gone).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{Run, crac, killed_by_sigkill, lines, restore, setup, tests, text};

tests![
    a_restore_env_field_takes_the_restorers_value_and_a_bad_one_fails_the_restore_by_name,
    a_reopened_log_continues_at_its_offset_after_restore,
    the_file_at_the_path_at_restore_is_the_one_reopened,
    a_file_gone_at_restore_fails_it_naming_the_path,
    path_env_reopens_the_file_where_the_restorer_says,
];

fn a_restore_env_field_takes_the_restorers_value_and_a_bad_one_fails_the_restore_by_name() {
    let (_, image) = setup("restore-env");
    let original = Run::new("restore-env", &image).output();
    assert!(killed_by_sigkill(original.status), "{original:?}");
    let image = image.to_str().unwrap();

    let moved = crac(&["restore", image, "--env", "CRAC_E2E_PORT=9123"]);
    assert_eq!(moved.status.code(), Some(7), "{moved:?}");
    assert_eq!(ports(&moved.stdout), ["port 9123 Restored"]);

    let bad = crac(&["restore", image, "--env", "CRAC_E2E_PORT=eighty"]);
    assert_eq!(bad.status.code(), Some(7), "the process runs on: {bad:?}");
    let stdout = text(&bad.stdout);
    assert!(
        stdout.contains(
            "`listen.port` failed in after_restore: the restore-time variable \
             CRAC_E2E_PORT=\"eighty\" is not a valid `u16` (invalid digit found in string)"
        ),
        "{stdout}"
    );
    assert!(
        ports(&bad.stdout)[0].starts_with("port 8080 error after restore"),
        "the field keeps its value: {stdout}"
    );

    let plain = restore(Path::new(image));
    assert_eq!(ports(&plain.stdout), ["port 8080 Restored"]);
}

/// What the scenario printed of its port.
fn ports(stdout: &[u8]) -> Vec<String> {
    lines(&text(stdout))
        .into_iter()
        .filter(|line| line.starts_with("port "))
        .map(String::from)
        .collect()
}

/// Checkpoints the `reopen` scenario, whose log holds `before\n` in the image.
fn checkpoint_journal(name: &str) -> (PathBuf, PathBuf) {
    let (dir, image) = setup(name);
    let log = dir.join("app.log");
    let original = Run::new("reopen", &image)
        .env("CRAC_E2E_LOG", log.to_str().unwrap())
        .output();
    assert!(killed_by_sigkill(original.status), "{original:?}");
    assert_eq!(read(&log), "before\n");
    (image, log)
}

fn journal_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("journal "))
        .unwrap_or_else(|| panic!("no journal line: {out:?}"));
    line.to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn a_reopened_log_continues_at_its_offset_after_restore() {
    let (image, log) = checkpoint_journal("reopen");
    let files = std::fs::read(image.join("files.img")).unwrap();
    assert!(
        !files.windows(b"app.log".len()).any(|w| w == b"app.log"),
        "CRIU's file table holds no fd on the log"
    );
    let out = restore(&image);
    assert_eq!(journal_line(&out), "journal Restored; after written");
    assert_eq!(read(&log), "before\nafter\n", "written on at offset 7");
}

fn the_file_at_the_path_at_restore_is_the_one_reopened() {
    let (image, log) = checkpoint_journal("reopen-replaced");
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&log, "rotated\n").unwrap();
    let out = restore(&image);
    assert_eq!(journal_line(&out), "journal Restored; after written");
    assert_eq!(
        read(&log),
        "rotatedafter\n",
        "the new file, at the recorded offset 7"
    );
    assert_eq!(read(&rotated), "before\n", "the old file is left alone");
}

fn a_file_gone_at_restore_fails_it_naming_the_path() {
    let (image, log) = checkpoint_journal("reopen-missing");
    std::fs::remove_file(&log).unwrap();
    let out = restore(&image);
    let line = journal_line(&out);
    assert!(
        line.starts_with("journal error after restore, 1 failure:"),
        "the process runs on, told why: {line}"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "`journal.log` failed in after_restore: reopening {} (open at checkpoint at offset \
             7): No such file or directory (os error 2); put it back, or write \
             `reopen(create)` to create a missing file",
            log.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("; after not written: Bad file descriptor"),
        "writes to the placeholder fail: {stdout}"
    );
    assert!(!log.exists(), "nothing was created");
}

fn path_env_reopens_the_file_where_the_restorer_says() {
    let (image, log) = checkpoint_journal("reopen-moved");
    let moved = log.with_file_name("moved.log");
    std::fs::copy(&log, &moved).unwrap();
    let out = crac(&[
        "restore",
        image.to_str().unwrap(),
        "--env",
        &format!("CRAC_E2E_LOG_AT={}", moved.display()),
    ]);
    assert_eq!(journal_line(&out), "journal Restored; after written");
    assert_eq!(read(&moved), "before\nafter\n");
    assert_eq!(read(&log), "before\n", "the old path is left alone");
}
