//! Image integrity: a damaged page, an edited manifest or a file slipped into the image is
//! refused by name, and the damaged copy never runs.

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use crate::harness::{
    Run, checksum_of, crac, killed_by_sigkill, lines, restore, setup, tests, text,
};

tests![
    damaged_page_data_is_refused_by_name_and_the_copy_never_runs,
    an_edited_manifest_or_an_added_file_is_refused,
    page_data_changed_after_a_successful_restore_is_still_refused,
];

/// Inverts `len` bytes of the file at `path` from `offset`: damage that keeps its size.
fn flip(path: &Path, offset: usize, len: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[offset..offset + len] {
        *b = !*b;
    }
    std::fs::write(path, bytes).unwrap();
}

/// Inverts `len` bytes of the file at `path` from `offset` in place: the same inode and
/// size, only its times move.
fn flip_in_place(path: &Path, offset: u64, len: usize) {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, offset).unwrap();
    for b in &mut bytes {
        *b = !*b;
    }
    file.write_all_at(&bytes, offset).unwrap();
}

/// Restores `image` with `-v`, expecting the scenario's own exit; returns its stderr.
fn restored(image: &Path) -> String {
    let out = crac(&["restore", "-v", image.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    text(&out.stderr)
}

/// Restores `image`, expecting a refusal for damage that names `what`; the copy must not
/// have run a single hook.
fn refused_as_damaged(image: &Path, what: &str) {
    let out = restore(image);
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "crac: cannot restore {}: the image was damaged or changed after the dump: {what}",
            image.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("take a new checkpoint"), "{stderr}");
    assert!(
        !text(&out.stdout).contains("after_restore"),
        "the damaged copy ran: {out:?}"
    );
    let inspected = crac(&["inspect", image.to_str().unwrap()]);
    assert_eq!(inspected.status.code(), Some(1), "{inspected:?}");
    let said = text(&inspected.stdout) + &text(&inspected.stderr);
    assert!(said.contains(what), "crac inspect says why: {inspected:?}");
}

fn damaged_page_data_is_refused_by_name_and_the_copy_never_runs() {
    let (dir, image) = setup("damaged-pages");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let pages = image.join("pages-1.img");
    let good = dir.join("pages-good");
    std::fs::copy(&pages, &good).unwrap();
    let size = std::fs::metadata(&pages).unwrap().len() as usize;

    // the same size, 100 KB in the middle inverted: checked while CRIU reads it
    flip(&pages, size / 2, 100 << 10);
    refused_as_damaged(&image, "image file pages-1.img does not match its digest");
    // the first page (code or the stack, once restored: a crash, not a message, without
    // the check)
    std::fs::copy(&good, &pages).unwrap();
    flip(&pages, 0, 4096);
    refused_as_damaged(&image, "image file pages-1.img does not match its digest");
    // a small file: refused before CRIU starts
    std::fs::copy(&good, &pages).unwrap();
    let core = std::fs::read_dir(&image)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| name.starts_with("core-"))
        .unwrap();
    flip(&image.join(&core), 8, 4);
    refused_as_damaged(
        &image,
        &format!("image file {core} does not match its digest"),
    );
}

fn an_edited_manifest_or_an_added_file_is_refused() {
    let (_, image) = setup("edited");
    let first = Run::new("plain", &image).output();
    assert!(killed_by_sigkill(first.status));
    let manifest_path = image.join("crac-manifest");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();

    // without its CPU flags, the CPU check would pass anywhere
    let cpu_flags = manifest
        .lines()
        .find(|l| l.starts_with("cpu-flags "))
        .unwrap();
    std::fs::write(
        &manifest_path,
        manifest.replace(&format!("{cpu_flags}\n"), ""),
    )
    .unwrap();
    refused_as_damaged(&image, "crac-manifest: its seal does not match its text");
    std::fs::write(&manifest_path, &manifest).unwrap();

    std::fs::write(image.join("extra.img"), b"slipped in").unwrap();
    refused_as_damaged(
        &image,
        "it holds extra.img, which its manifest does not list (remove extra.img if it is yours)",
    );
    std::fs::remove_file(image.join("extra.img")).unwrap();

    // undamaged again: it restores, with the state it was checkpointed with
    let out = restore(&image);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the scenario's own exit: {out:?}"
    );
    let checksum = checksum_of(lines(&text(&first.stdout))[0]).to_string();
    let restored = text(&out.stdout);
    assert!(
        restored.contains(&format!("Restored generation 1 checksum {checksum}")),
        "{restored}"
    );
}

/// Publishing records the page data it has just hashed, and a restore that found it
/// intact does too, so that restores of the same unchanged files need not hash it; any
/// change to them must still be caught.
fn page_data_changed_after_a_successful_restore_is_still_refused() {
    const NOT_HASHED: &str = "page data not hashed: unchanged since its image was written or \
                              an earlier restore found it intact";
    let (_, image) = setup("changed-after-restore");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    let first = restored(&image);
    let second = restored(&image);
    // records are kept only in a root-only tmpfs (scripts/install-criu.sh makes one)
    if Path::new("/run/crac-criu/verified-pages").is_dir() {
        for (which, said) in [("first", &first), ("second", &second)] {
            assert!(
                said.contains(NOT_HASHED),
                "the {which} restore did not use the record: {said}"
            );
        }
    }

    let pages = image.join("pages-1.img");
    let offset = std::fs::metadata(&pages).unwrap().len() / 2;
    flip_in_place(&pages, offset, 4096);
    refused_as_damaged(&image, "image file pages-1.img does not match its digest");
    flip_in_place(&pages, offset, 4096);
    let again = restored(&image);
    assert!(
        !again.contains(NOT_HASHED),
        "changed files are hashed again: {again}"
    );

    // the modification time put back after the change: its change time still moves
    let modified = std::fs::metadata(&pages).unwrap().modified().unwrap();
    flip_in_place(&pages, offset, 4096);
    std::fs::File::options()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&pages).unwrap().modified().unwrap(),
        modified
    );
    refused_as_damaged(&image, "image file pages-1.img does not match its digest");

    // a full check on request hashes even what a record says is intact
    flip_in_place(&pages, offset, 4096);
    restored(&image);
    let forced = crac(&[
        "restore",
        "-v",
        "--verify-pages",
        "always",
        image.to_str().unwrap(),
    ]);
    assert_eq!(forced.status.code(), Some(7), "{forced:?}");
    assert!(
        text(&forced.stderr).contains("hashing the page data"),
        "{forced:?}"
    );
}
