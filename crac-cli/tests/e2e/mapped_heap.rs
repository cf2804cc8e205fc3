//! `crac::MappedHeap`: the scenario's warmed state lives in heap segments that the image
//! maps instead of copying (`scenario/mapped.rs`). Restores map them and find the state
//! intact; a missing, truncated or changed segment is refused by name; copies are
//! isolated from each other and from the files; writers lose nothing while the heap is
//! sealed; a copy that grows and checkpoints again shares the first image's segments,
//! which replacing that image keeps; segments no image lists are removed; a full disk
//! refuses the checkpoint and the process keeps its heap; lazy restores work.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, Run, crac, crac_started, killed_by_sigkill, lines, restore, setup, tests, text,
};

tests![
    a_warmed_heap_is_restored_by_mapping_its_segments,
    a_missing_truncated_or_changed_segment_is_refused_by_name,
    copies_change_neither_each_other_nor_the_segments,
    writers_lose_nothing_while_the_heap_is_sealed,
    a_copy_that_grows_checkpoints_again_sharing_the_segments,
    replacing_an_image_removes_the_segments_no_image_lists,
    a_full_disk_refuses_the_checkpoint_and_the_heap_stays_intact,
    a_lazy_restore_maps_the_heap_too,
    a_hundred_left_running_checkpoints_keep_disk_use_bounded,
];

/// The state the scenario warms, in MB: large enough that copying it would show.
const STATE_MB: &str = "64";

/// The `mapped` scenario with the mapped heap on, in a private PID namespace so that its
/// image restores as concurrent copies.
pub(crate) fn mapped(image: &Path) -> Run {
    let mut run = Run::new("mapped", image)
        .env("CRAC_MAPPED_HEAP", "on")
        .env("CRAC_E2E_STATE_MB", STATE_MB);
    run.private_pids = true;
    run
}

/// Checkpoints the scenario into `image` (the dump stops it).
fn checkpointed(run: &Run) -> String {
    let out = run.output();
    let stdout = text(&out.stdout);
    assert!(stopped_by_the_dump(out.status), "{out:?}");
    assert!(stdout.contains("mapped warm ok"), "{stdout}");
    stdout
}

/// Whether the process (in its PID namespace: `unshare` says 137) was stopped by its dump.
fn stopped_by_the_dump(status: std::process::ExitStatus) -> bool {
    killed_by_sigkill(status) || status.code() == Some(137)
}

/// The store of `image`'s segments: `IMAGE.heap`.
pub(crate) fn store(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".heap");
    name.into()
}

/// The segments the image's manifest lists.
fn segments(image: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_to_string(image.join("crac-manifest"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("segment "))
        .map(|v| {
            let mut parts = v.splitn(3, ' ');
            let len = parts.next().unwrap().parse().unwrap();
            (PathBuf::from(parts.nth(1).unwrap()), len)
        })
        .collect()
}

/// The segment files in `store`.
fn store_files(store: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(store)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "heap"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Bytes of the image's page data.
fn page_bytes(image: &Path) -> u64 {
    std::fs::read_dir(image)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn restore_with(image: &Path, env: &[&str]) -> Output {
    let mut args = vec!["restore", image.to_str().unwrap()];
    for e in env {
        args.extend(["--env", e]);
    }
    crac(&args)
}

fn verified(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(stdout.contains("mapped outcome Restored"), "{stdout}");
    stdout
}

/// `chattr` on a segment (`+i` or `-i`); false where the file system has no such flag.
fn chattr(flag: &str, path: &Path) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// Rewrites a segment's first byte in place (flipped), its size unchanged.
fn flip_first_byte(path: &Path) {
    use std::os::unix::fs::FileExt as _;
    let immutable = chattr("-i", path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, 0).unwrap();
    file.write_all_at(&[!byte[0]], 0).unwrap();
    file.sync_all().unwrap();
    if immutable {
        chattr("+i", path);
    }
}

fn a_warmed_heap_is_restored_by_mapping_its_segments() {
    let (_, image) = setup("mapped-restore");
    checkpointed(&mapped(&image));
    let listed = segments(&image);
    assert!(!listed.is_empty(), "the manifest lists the heap's segments");
    let mapped_bytes: u64 = listed.iter().map(|(_, len)| len).sum();
    assert!(mapped_bytes >= 64 << 20, "{listed:?}");
    for (path, _) in &listed {
        assert!(path.starts_with(store(&image)), "{}", path.display());
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o222, 0, "a sealed segment is read-only: {mode:o}");
    }
    // the state is in the segments, not copied into the image
    let pages = page_bytes(&image);
    assert!(
        pages < 16 << 20,
        "{pages} bytes of page data for 64 MB of state"
    );

    let inspected = text(&crac(&["inspect", image.to_str().unwrap()]).stdout);
    assert!(inspected.contains("heap segments"), "{inspected}");
    assert!(
        inspected.contains(&listed[0].0.display().to_string()),
        "{inspected}"
    );

    for _ in 0..2 {
        let stdout = verified(&restore(&image));
        assert!(stdout.contains("mapped verify ok"), "{stdout}");
    }
}

fn a_missing_truncated_or_changed_segment_is_refused_by_name() {
    let (_, image) = setup("mapped-damage");
    checkpointed(&mapped(&image));
    // a first restore records the segments as checked
    verified(&restore(&image));
    let (segment, len) = segments(&image)[0].clone();
    let name = segment.display().to_string();
    let refused = |out: Output, why: &str| {
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(7), "{out:?}");
        assert!(
            stderr.contains(&format!("heap segment {name}")) && stderr.contains(why),
            "{why}: {stderr}"
        );
    };

    // changed in place, same size: the record no longer vouches (its change time moved)
    flip_first_byte(&segment);
    refused(restore(&image), "does not match its digest");
    refused(
        crac(&[
            "restore",
            "--verify-pages",
            "always",
            image.to_str().unwrap(),
        ]),
        "does not match its digest",
    );
    flip_first_byte(&segment);
    verified(&restore(&image));

    chattr("-i", &segment);
    let saved = segment.with_extension("saved");
    std::fs::rename(&segment, &saved).unwrap();
    refused(restore(&image), "is missing");
    std::fs::copy(&saved, &segment).unwrap();
    crate::harness::set_len(&segment, len / 2);
    refused(restore(&image), "the manifest says");
    std::fs::remove_file(&segment).unwrap();
    std::fs::rename(&saved, &segment).unwrap();
    verified(&restore(&image));
}

/// Waits for `line` in what `child` printed to `out`.
fn wait_for(out: &Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(out)
        .unwrap_or_default()
        .contains(line)
    {
        assert!(
            Instant::now() < deadline,
            "no {line:?} in {}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A copy restored with `env`, its stdout in `out`.
fn copy(image: &Path, out: &Path, env: &[String]) -> Child {
    let mut cmd = std::process::Command::new(crate::harness::crac_bin());
    cmd.arg("restore").arg(image);
    for e in env {
        cmd.args(["--env", e]);
    }
    crate::harness::only_stdio(&mut cmd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn copies_change_neither_each_other_nor_the_segments() {
    let (dir, image) = setup("mapped-isolation");
    checkpointed(&mapped(&image));
    let go = dir.join("go");
    let go_env = format!("CRAC_E2E_GO={}", go.display());
    let (writer_out, reader_out) = (dir.join("writer.out"), dir.join("reader.out"));
    let mut writer = copy(
        &image,
        &writer_out,
        &["CRAC_E2E_ACTION=overwrite".into(), go_env.clone()],
    );
    let _kill_writer = KillOnDrop(writer.id());
    let mut reader = copy(
        &image,
        &reader_out,
        &["CRAC_E2E_ACTION=wait".into(), go_env],
    );
    let _kill_reader = KillOnDrop(reader.id());
    wait_for(&writer_out, "mapped overwritten ok");
    wait_for(&reader_out, "mapped verify ok");
    std::fs::write(&go, b"").unwrap();
    assert_eq!(writer.wait().unwrap().code(), Some(7));
    assert_eq!(reader.wait().unwrap().code(), Some(7));
    let writer_said = std::fs::read_to_string(&writer_out).unwrap();
    let reader_said = std::fs::read_to_string(&reader_out).unwrap();
    assert!(
        writer_said.contains("mapped overwritten again ok"),
        "{writer_said}"
    );
    assert!(
        reader_said.contains("mapped verify again ok"),
        "the copy running beside it still holds its own state: {reader_said}"
    );
    // a copy restored afterwards, hashing every segment: files and state unchanged
    let out = crac(&[
        "restore",
        "--verify-pages",
        "always",
        image.to_str().unwrap(),
    ]);
    assert!(verified(&out).contains("mapped verify ok"));
}

fn writers_lose_nothing_while_the_heap_is_sealed() {
    let (_, image) = setup("mapped-writers");
    checkpointed(&mapped(&image).env("CRAC_E2E_WRITERS", "2"));
    let stdout = verified(&restore(&image));
    let line = lines(&stdout)
        .into_iter()
        .find(|l| l.starts_with("mapped verify "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();
    assert!(
        line.starts_with("mapped verify ok writers 2 rounds "),
        "{line}"
    );
    assert!(line.ends_with(" lost 0"), "{line}");
}

fn a_copy_that_grows_checkpoints_again_sharing_the_segments() {
    let (dir, image) = setup("mapped-grow");
    checkpointed(&mapped(&image));
    let first = segments(&image);
    let second_image = dir.join("second");
    let out = restore_with(
        &image,
        &[
            "CRAC_E2E_ACTION=grow",
            "CRAC_E2E_GROW_MB=192",
            &format!("CRAC_CHECKPOINT_TO={}", second_image.display()),
        ],
    );
    assert!(
        stopped_by_the_dump(out.status),
        "the second dump stops it: {out:?}"
    );
    assert!(text(&out.stdout).contains("mapped grown ok ok"), "{out:?}");
    let second = segments(&second_image);
    for segment in &first {
        assert!(second.contains(segment), "{segment:?} not in {second:?}");
    }
    // more than the first segments had free: a new segment, mapped too, not copied
    assert!(second.len() > first.len(), "growth went to a new segment");
    let pages = page_bytes(&second_image);
    assert!(
        pages < 160 << 20,
        "{pages} bytes of page data for 192 MB of growth"
    );
    let check = |image: &Path| {
        let out = restore(image);
        assert_eq!(out.status.code(), Some(7), "{out:?}");
        assert!(
            text(&out.stdout).contains("mapped grown Restored ok ok"),
            "{out:?}"
        );
    };
    check(&second_image);
    // a new process's image replaces the first: the second image's segments stay
    checkpointed(&mapped(&image));
    check(&second_image);
}

fn replacing_an_image_removes_the_segments_no_image_lists() {
    let (_, image) = setup("mapped-collect");
    checkpointed(&mapped(&image));
    let first: Vec<PathBuf> = segments(&image).into_iter().map(|(p, _)| p).collect();
    checkpointed(&mapped(&image));
    let second: Vec<PathBuf> = segments(&image).into_iter().map(|(p, _)| p).collect();
    assert!(first.iter().all(|p| !second.contains(p)));
    assert_eq!(
        store_files(&store(&image)),
        {
            let mut s = second.clone();
            s.sort();
            s
        },
        "only the segments the image lists are left"
    );
    verified(&restore(&image));
}

fn a_full_disk_refuses_the_checkpoint_and_the_heap_stays_intact() {
    let (dir, _) = setup("mapped-full");
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160m,mode=0700", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let image = disk.join("image");
    let (before, go, out) = (dir.join("before"), dir.join("go"), dir.join("out"));
    let mut child = mapped(&image)
        .env("CRAC_E2E_BEFORE", before.to_str().unwrap())
        .env("CRAC_E2E_GO", go.to_str().unwrap())
        .spawn(std::fs::File::create(&out).unwrap().into());
    let _kill = KillOnDrop(child.id());
    wait_for(&out, "mapped warm ok");
    // the disk filled up before the checkpoint
    let filler = disk.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    std::fs::write(&before, b"").unwrap();
    wait_for(&out, "mapped still ok");
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(said.contains("mapped refused "), "{said}");
    assert!(
        !image.join("crac-manifest").exists(),
        "no image was published"
    );
    // room again: the next checkpoint is taken and restores
    std::fs::remove_file(&filler).unwrap();
    std::fs::write(&go, b"").unwrap();
    assert!(stopped_by_the_dump(child.wait().unwrap()));
    assert!(verified(&restore(&image)).contains("mapped verify ok"));
}

fn a_lazy_restore_maps_the_heap_too() {
    let (_, image) = setup("mapped-lazy");
    checkpointed(&mapped(&image));
    let out = crac_started(&["restore", "--lazy", image.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    assert!(verified(&out).contains("mapped verify ok"));
}

/// As `crac run --every` takes them: a hundred left-running checkpoints of a process
/// whose heap keeps changing leave a bounded store (each image lists every segment its
/// heap maps, and a segment no image lists is removed), and the last image restores.
fn a_hundred_left_running_checkpoints_keep_disk_use_bounded() {
    let (_, image) = setup("mapped-cycles");
    let out = mapped(&image)
        .env("CRAC_E2E_STATE_MB", "16")
        .env("CRAC_E2E_CYCLES", "100")
        .env("CRAC_LEAVE_RUNNING", "1")
        .output();
    let stdout = text(&out.stdout);
    let cycles: Vec<(usize, u64)> = lines(&stdout)
        .into_iter()
        .filter_map(|l| l.strip_prefix("mapped cycle "))
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            assert_eq!(words[1..3], ["LeftRunning", "ok"], "{l}");
            (words[4].parse().unwrap(), words[6].parse().unwrap())
        })
        .collect();
    assert_eq!(cycles.len(), 100, "{}", text(&out.stderr));
    let (files, bytes) = cycles[9];
    for (cycle, &(now_files, now_bytes)) in cycles.iter().enumerate().skip(10) {
        assert!(
            now_files <= files + 1 && now_bytes <= bytes + (64 << 20),
            "cycle {}: {now_files} files, {now_bytes} bytes; {files} and {bytes} at cycle 10",
            cycle + 1
        );
    }
    // then its own checkpoint, left running too; the last image restores
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(verified(&restore(&image)).contains("mapped verify ok"));
}
