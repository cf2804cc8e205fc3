//! `crac run` and the private-namespace launcher: checkpoint at ready or after a
//! timeout, restore on every later run, refuse a foreign image, restart from the last
//! image after a crash, and start cleanly from a shell that leaks fds.

use crate::harness::{
    KillOnDrop, Run, checksum_of, crac_run, crac_run_command, lines, restore, setup, stray_fds,
    tests, text,
};

tests![
    crac_run_checkpoints_at_ready_restores_at_once_and_restores_on_every_later_run,
    crac_run_never_restores_a_foreign_image_blindly,
    after_a_crash_crac_run_restarts_from_the_last_consistent_image,
    an_app_that_exits_by_itself_is_not_restored_whatever_its_exit_code,
    a_service_stopped_through_crac_run_stays_stopped_despite_its_periodic_image,
    a_copy_dies_with_its_restorer_even_when_that_is_killed,
    crac_run_can_checkpoint_after_a_timeout_instead_of_at_ready,
    a_launcher_works_from_a_shell_with_stray_inherited_fds,
    a_direct_checkpoint_under_crac_run_is_refused_and_the_image_kept,
    crac_run_gives_up_a_restore_that_does_not_resume_in_time,
];

fn crac_run_checkpoints_at_ready_restores_at_once_and_restores_on_every_later_run() {
    let (dir, image) = setup("run");
    let exe = std::env::current_exe().unwrap();

    let first = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(first.status.code(), Some(7), "{first:?}");
    let stdout = text(&first.stdout);
    let checksum = checksum_of(lines(&stdout)[0]).to_string();
    assert_eq!(
        lines(&stdout),
        [
            format!("pid 2 checksum {checksum}").as_str(),
            "hook server before_checkpoint",
            "hook index before_checkpoint",
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("ready Some(Restored) checksum {checksum}"),
            "exiting 7",
        ],
        "the first run warms up, is checkpointed at ready, and goes on restored"
    );
    assert!(text(&first.stderr).contains(&format!(
        "crac: image written to {}; restoring it",
        image.display()
    )));

    let later = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(later.status.code(), Some(7), "{later:?}");
    assert_eq!(
        lines(&text(&later.stdout)),
        [
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("ready Some(Restored) checksum {checksum}"),
            "exiting 7",
        ],
        "later runs restore without warming up"
    );

    let plain = Run::new("ready", &dir.join("unused")).output();
    assert_eq!(plain.status.code(), Some(7));
    assert!(
        text(&plain.stdout).contains("ready None checksum"),
        "without crac run, ready() does nothing"
    );
}

fn crac_run_never_restores_a_foreign_image_blindly() {
    let (dir, image) = setup("run-foreign");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(crac_run(&exe, &image, "ready", &[]).status.code(), Some(7));

    let other = dir.join("other-app");
    std::fs::copy(&exe, &other).unwrap();
    let refused = crac_run(&other, &image, "ready", &[]);
    assert_eq!(refused.status.code(), Some(70), "{refused:?}");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "it was taken from {}, not {}",
            exe.display(),
            other.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("pass --replace-invalid to take a fresh checkpoint instead"),
        "{stderr}"
    );

    let replaced = crac_run(&other, &image, "ready", &["--replace-invalid"]);
    assert_eq!(replaced.status.code(), Some(7), "{replaced:?}");
    assert!(
        text(&replaced.stderr).contains("crac: replacing the image in"),
        "{replaced:?}"
    );
    assert!(
        text(&replaced.stderr).contains(&format!(
            "crac: replacing the image in {}: started",
            image.display()
        )) && !text(&replaced.stderr).contains("no image in"),
        "the same words while it replaces: {replaced:?}"
    );
    assert!(
        text(&replaced.stdout).starts_with("pid 2 checksum"),
        "a fresh warm-up: {replaced:?}"
    );
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    assert!(manifest.contains(&format!("executable {}\n", other.display())));
}

fn after_a_crash_crac_run_restarts_from_the_last_consistent_image() {
    let (_, image) = setup("periodic");
    let exe = std::env::current_exe().unwrap();
    let out = crac_run(
        &exe,
        &image,
        "periodic",
        &["--on", "request", "--every", "1"],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    restarted_from_the_last_periodic_image(&text(&out.stdout));
    assert!(text(&out.stderr).contains("crac: restored in "), "{out:?}");
}

/// The `periodic` scenario's output: two left-running images taken, a crash, then the
/// restart restored from the last image (at its round, not cold) and exiting.
pub(crate) fn restarted_from_the_last_periodic_image(stdout: &str) {
    let l = lines(stdout);
    let second = l
        .iter()
        .filter(|l| l.starts_with("periodic LeftRunning"))
        .nth(1)
        .expect("two periodic images");
    let round = second.rsplit(' ').next().unwrap();
    assert!(l.contains(&"crashing"), "{stdout}");
    assert_eq!(
        l[l.len() - 2..],
        [
            format!("periodic Restored at round {round}").as_str(),
            "exiting 7"
        ],
        "restarted from the last consistent image, not cold: {stdout}"
    );
}

fn an_app_that_exits_by_itself_is_not_restored_whatever_its_exit_code() {
    let (_, image) = setup("periodic-exit");
    let exe = std::env::current_exe().unwrap();
    let out = crac_run(
        &exe,
        &image,
        "periodic-exit",
        &["--on", "request", "--every", "1"],
    );
    // 137 looks like SIGKILL to a shell; `crac run` learns from `crac __init` that the
    // app exited, so the periodic image stays unused.
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(lines(&stdout).last(), Some(&"exiting 137"), "{stdout}");
    assert!(
        !text(&out.stderr).contains("restoring it"),
        "a clean exit is not undone: {out:?}"
    );
}

fn crac_run_can_checkpoint_after_a_timeout_instead_of_at_ready() {
    let (_, image) = setup("run-timeout");
    let exe = std::env::current_exe().unwrap();
    let out = crac_run(&exe, &image, "request", &["--on", "timeout=1"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ready\n"), "{stdout}");
    assert!(
        stdout.contains("hook index after_restore Restored"),
        "{stdout}"
    );
    assert!(stdout.contains("restored on request checksum "), "{stdout}");
    assert!(image.join("crac-manifest").is_file());
}

/// Shells, IDE terminals and CI runners leak fds into what they start, and the
/// application's open-resource check would refuse them: neither launcher may pass them
/// on. `crac run` closes them itself; `crac __init`, also started directly, must too.
fn a_launcher_works_from_a_shell_with_stray_inherited_fds() {
    let (dir, image) = setup("stray-fds");
    let mut run = Run::new("plain", &image);
    run.private_pids = true;
    run.stray_fds = true;
    let original = run.output();
    assert_eq!(
        original.status.code(),
        Some(128 + 9),
        "the dump stops the application, and `crac __init` reports it: {original:?}"
    );
    let checksum = checksum_of(lines(&text(&original.stdout))[0]).to_string();
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7), "{restored:?}");
    assert!(
        text(&restored.stdout).contains(&format!(
            "round 1 outcome Restored generation 1 checksum {checksum}\nexiting 7\n"
        )),
        "{restored:?}"
    );

    let exe = std::env::current_exe().unwrap();
    let mut cmd = crac_run_command(&exe, &dir.join("run-image"), "ready", &[]);
    let out = stray_fds(&mut cmd).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let checksum = checksum_of(lines(&stdout)[0]);
    assert!(
        stdout.contains(&format!("ready Some(Restored) checksum {checksum}\n")),
        "{stdout}"
    );
}

/// The double-checkpoint trap: a program that calls `ready()` and then, because
/// `CRAC_CHECKPOINT_TO` is set, `checkpoint_restore()` would replace `crac run`'s image
/// and stop the service; the second call is refused with the reason instead.
fn a_direct_checkpoint_under_crac_run_is_refused_and_the_image_kept() {
    let (_, image) = setup("run-direct");
    let exe = std::env::current_exe().unwrap();
    let out = crac_run(&exe, &image, "ready-then-direct", &[]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let line = lines(&stdout)
        .into_iter()
        .find(|l| l.starts_with("direct "))
        .unwrap();
    assert!(
        line.starts_with("direct after ready Some(Restored): Err(")
            && line.contains("this process runs under `crac run`, which takes its images itself"),
        "{line}"
    );
    let again = crac_run(&exe, &image, "ready-then-direct", &[]);
    assert!(
        text(&again.stdout).contains("direct after ready Some(Restored)"),
        "the image taken at ready() is still the one restored: {again:?}"
    );
}

/// `crac run --every 1` of a service that goes on taking periodic images, its stdout
/// in `stdout` and its stderr piped, once it has taken `images` of them.
fn periodic_service(
    image: &std::path::Path,
    stdout: &std::path::Path,
    images: usize,
) -> (std::process::Child, KillOnDrop) {
    let exe = std::env::current_exe().unwrap();
    let running = crac_run_command(
        &exe,
        image,
        "periodic-forever",
        &["--on", "request", "--every", "1"],
    )
    .stdout(std::fs::File::create(stdout).unwrap())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let reaper = KillOnDrop(running.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(stdout)
        .unwrap()
        .matches("periodic LeftRunning")
        .count()
        < images
    {
        assert!(std::time::Instant::now() < deadline, "no periodic images");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (running, reaper)
}

/// `docker stop` on `crac run --every`: the SIGTERM `crac run` passes on kills the app,
/// and a periodic image exists, but a stopped service is not a crashed one.
fn a_service_stopped_through_crac_run_stays_stopped_despite_its_periodic_image() {
    let (dir, image) = setup("stopped");
    let (mut running, _reaper) = periodic_service(&image, &dir.join("stdout"), 2);
    // SAFETY: a plain kill of our own child.
    unsafe { libc::kill(running.id() as i32, libc::SIGTERM) };
    let status = running.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(running.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(
        !stderr.contains("restoring it"),
        "stopped, not restored: {stderr}"
    );
}

/// `crac restore` killed with SIGKILL (an OOM killer, a `kill -9`): the copy it restored
/// in a private namespace does not run on, orphaned. The image is the periodic one of a
/// service that goes on taking images (and printing a line each second).
fn a_copy_dies_with_its_restorer_even_when_that_is_killed() {
    let (dir, image) = setup("orphan");
    let (mut running, _reaper) = periodic_service(&image, &dir.join("first"), 1);
    // SAFETY: a plain kill of our own child.
    unsafe { libc::kill(running.id() as i32, libc::SIGTERM) };
    running.wait().unwrap();

    let copy_out = dir.join("copy");
    let mut copy = std::process::Command::new(crate::harness::crac_bin())
        .args(["restore", image.to_str().unwrap()])
        .stdout(std::fs::File::create(&copy_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _copy_reaper = KillOnDrop(copy.id());
    let lines_of = || std::fs::read_to_string(&copy_out).unwrap().lines().count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lines_of() < 2 {
        assert!(std::time::Instant::now() < deadline, "the copy did not run");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    copy.kill().unwrap(); // SIGKILL
    copy.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after_kill = lines_of();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        lines_of(),
        after_kill,
        "the copy went on after its restorer was killed"
    );
}

fn crac_run_gives_up_a_restore_that_does_not_resume_in_time() {
    let (dir, image) = setup("run-restore-timeout");
    let exe = std::env::current_exe().unwrap();
    let first = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(first.status.code(), Some(7), "{first:?}");
    // the timeout counts from the start, the image's check included: a CRIU slow to
    // start makes it pass while CRIU works
    let slow = dir.join("criu");
    let real = crate::harness::criu().unwrap();
    crate::harness::write_script(
        &slow,
        &format!("#!/bin/sh\nsleep 2\nexec {} \"$@\"\n", real.display()),
    );
    let out = crate::harness::only_stdio(
        crac_run_command(&exe, &image, "ready", &["--timeout", "1"]).env("CRAC_CRIU", &slow),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the process had not resumed when the restore timed out"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("exiting 7"), "{out:?}");
    // the image is kept, and restores with time enough
    let again = crac_run(&exe, &image, "ready", &[]);
    assert_eq!(again.status.code(), Some(7), "{again:?}");
}
