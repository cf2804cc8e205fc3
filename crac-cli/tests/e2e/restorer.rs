//! The restorer's own faults: killed while its copy runs, a restore that never resumes,
//! a stop signal while CRIU works, and one just after the copy resumed. The copy never outlives the restorer, nothing is
//! left behind, and the PID is free for the next restore.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, Run, alive, crac_bin, criu, image_pid, killed_by_sigkill, restore, setup, tests,
    text,
};

tests![
    a_copy_in_the_host_namespace_dies_with_its_killed_restorer_and_its_files_go,
    a_restore_that_times_out_stops_criu_and_frees_the_pid,
    a_stop_signal_while_criu_works_abandons_the_restore,
    a_stop_signal_just_after_the_copy_resumed_stops_the_copy_not_the_restore,
];

fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "{what} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn a_copy_in_the_host_namespace_dies_with_its_killed_restorer_and_its_files_go() {
    let (dir, image) = setup("restorer-killed");
    let first = Run::new("forever", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    let out = dir.join("copy");
    let mut restorer = Command::new(crac_bin())
        .args(["restore", image.to_str().unwrap()])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = KillOnDrop(pid as u32);
    wait_until("the copy runs", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("round 1 outcome Restored"))
    });
    restorer.kill().unwrap();
    restorer.wait().unwrap();
    wait_until(
        "the copy stops after its restorer was killed",
        Duration::from_secs(5),
        || !alive(pid),
    );
    // the next restore removes what the killed one left in its directory in the temp
    // directory (CRIU's log is kept a day)
    let left = |restorer: u32| {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&format!("crac-restore-{restorer}."))
            })
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".log"))
            .count()
    };
    let mut again = Command::new(crac_bin())
        .args(["restore", image.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _again_reaper = KillOnDrop(again.id());
    wait_until(
        "the next restore tidied up",
        Duration::from_secs(30),
        || left(restorer.id()) == 0,
    );
    // and its copy, restored by now or not yet, ends with it too
    again.kill().unwrap();
    again.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    wait_until(
        "the second copy stops with its killed restorer",
        Duration::from_secs(5),
        || !alive(pid),
    );
}

fn a_restore_that_times_out_stops_criu_and_frees_the_pid() {
    let (dir, image) = setup("restore-timeout");
    let first = Run::new("plain", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    // the timeout counts from the start, the image's check included: a CRIU slow to
    // start makes it pass while CRIU works
    let slow = dir.join("criu");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 2\nexec {} \"$@\"\n",
            criu().unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(crac_bin())
        .args(["restore", "--timeout", "1", image.to_str().unwrap()])
        .env("CRAC_CRIU", &slow)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(
        text(&out.stderr).contains(
            "the process had not resumed when the restore timed out (crac restore --timeout); \
             CRIU and the half-restored process were stopped"
        ),
        "{out:?}"
    );
    assert!(!text(&out.stdout).contains("after_restore"), "{out:?}");
    assert!(!alive(pid), "nothing of the copy runs");
    // the PID is free again: a restore right away works
    let again = restore(&image);
    assert_eq!(again.status.code(), Some(7), "{again:?}");
}

fn a_stop_signal_while_criu_works_abandons_the_restore() {
    let (dir, image) = setup("restore-interrupted");
    let first = Run::new("plain", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    // a CRIU slow to start: the stop signal lands while the restorer waits for it
    let slow = dir.join("criu");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 4\nexec {} \"$@\"\n",
            criu().unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let restorer = Command::new(crac_bin())
        .args(["restore", image.to_str().unwrap()])
        .env("CRAC_CRIU", &slow)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: a plain kill of our own child.
    unsafe { libc::kill(restorer.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let out = restorer.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    assert!(
        text(&out.stderr).contains("interrupted by signal 15 before the process resumed"),
        "{out:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "abandoned at once, not after CRIU: {took:?}"
    );
    assert!(!alive(pid));
    assert!(
        Path::new(&image).join("crac-manifest").is_file(),
        "the image stays"
    );
}

/// The copy may run (and print) before CRIU's `post-resume` stage is over: a SIGTERM
/// then goes to the copy, and `crac restore` exits as the copy does (128 + 15), with
/// nothing left in its temp directory — not 70 with a "stopped before it resumed".
fn a_stop_signal_just_after_the_copy_resumed_stops_the_copy_not_the_restore() {
    let (dir, image) = setup("restore-stopped-after-resume");
    let first = Run::new("forever", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    for delay_ms in [0, 0, 1, 2, 3, 5, 10] {
        let temp = dir.join(format!("tmp-{delay_ms}"));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir(&temp).unwrap();
        let out = dir.join("copy");
        let restorer = Command::new(crac_bin())
            .args(["restore", image.to_str().unwrap()])
            .env("TMPDIR", &temp)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _reaper = KillOnDrop(pid as u32);
        let start = Instant::now();
        while !std::fs::read_to_string(&out).is_ok_and(|t| t.contains("round 1 outcome Restored")) {
            assert!(start.elapsed() < Duration::from_secs(30), "the copy runs");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: a plain kill of our own child.
        unsafe { libc::kill(restorer.id() as i32, libc::SIGTERM) };
        let mut restorer = restorer;
        let signalled = Instant::now();
        while restorer.try_wait().unwrap().is_none() {
            if signalled.elapsed() > Duration::from_secs(10) {
                // SAFETY: a plain kill of the copy this test restored.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("{delay_ms} ms after the copy printed: the SIGTERM never reached it");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let ended = restorer.wait_with_output().unwrap();
        assert_eq!(
            ended.status.code(),
            Some(128 + libc::SIGTERM),
            "{delay_ms} ms after the copy printed: {ended:?}"
        );
        wait_until("the copy stops", Duration::from_secs(5), || !alive(pid));
        let left: Vec<_> = std::fs::read_dir(&temp).unwrap().flatten().collect();
        assert!(left.is_empty(), "left in the temp directory: {left:?}");
    }
}
