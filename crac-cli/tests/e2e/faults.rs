//! What goes wrong, and how it is reported: a refusing hook, open resources, CRIU
//! failing or killed (and what the image then is), a damaged image, a changed
//! executable, an image directory not our own.

use std::ffi::CString;
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, Run, checksum_of, crac, criu_wrapper, forge_manifest, killed_by_sigkill, lines,
    processes, ready_for_requests, restore, scratch, set_len, setup, tests, text, wait_for_line,
    write_script,
};

tests![
    a_failing_hook_means_no_image_and_the_process_continues_rolled_back,
    a_hook_overrunning_its_deadline_at_checkpoint_means_no_image_and_a_rolled_back_process,
    a_hook_overrunning_its_deadline_after_restore_fails_the_restore_and_the_copy_runs_on,
    an_unclaimed_open_file_is_refused_by_name,
    an_established_tcp_connection_is_refused_before_criu_sees_it,
    when_criu_fails_the_process_continues_and_the_error_carries_criu_reason,
    a_truncated_image_is_refused_before_criu_runs,
    an_image_is_refused_when_the_executable_changed,
    a_directory_that_holds_other_files_is_never_used_as_the_image,
    a_criu_that_cannot_be_run_is_named,
    criu_failing_after_publishing_leaves_the_image_the_outcome_says,
    criu_killed_mid_dump_is_named_and_leaves_nothing_running,
    a_binary_replaced_under_a_running_process_is_named_before_any_hook_runs,
    a_peer_outside_a_private_pid_namespace_is_said_to_be,
];

/// Under `crac run` (a private PID namespace with its own /proc) the process holding the
/// other end of a connection — a database on the host — cannot be seen: the refusal says
/// where it is rather than "another process".
fn a_peer_outside_a_private_pid_namespace_is_said_to_be() {
    let (_, image) = setup("tcp-peer");
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut run = Run::new("tcp-peer", &image).env(
        "CRAC_E2E_TCP_PEER",
        &server.local_addr().unwrap().to_string(),
    );
    run.private_pids = true;
    let accepting = std::thread::spawn(move || server.accept().unwrap());
    let out = run.output();
    drop(accepting.join().unwrap());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("(ESTABLISHED), peer: a process outside this PID namespace"),
        "{stdout}"
    );
}

/// `cargo build` renames a new binary over the old one: the running process's executable
/// is then "… (deleted)", and the dump, which runs it again, cannot start. crac says so
/// before any hook runs, and the process goes on (here it answers a second request the
/// same way, so it still serves).
fn a_binary_replaced_under_a_running_process_is_named_before_any_hook_runs() {
    let (dir, image) = setup("replaced-binary");
    let exe = dir.join("svc");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let mut run = Run::new("request", &image);
    run.exe.clone_from(&exe);
    let mut child = ready_for_requests(run, &dir.join("stdout"));
    let _reaper = KillOnDrop(child.id());
    let rebuilt = dir.join("svc.new");
    std::fs::copy(&exe, &rebuilt).unwrap();
    std::fs::rename(&rebuilt, &exe).unwrap();

    for _ in 0..2 {
        let asked = crac(&["checkpoint", &child.id().to_string(), "--timeout", "30"]);
        assert!(!asked.status.success(), "{asked:?}");
        let stderr = text(&asked.stderr);
        assert!(
            stderr.contains(&format!(
                "the executable {} was replaced or deleted after this process started from it",
                exe.display()
            )) && stderr.contains("restart the service from the new binary"),
            "{asked:?}"
        );
        assert!(!stderr.contains("execvp"), "not CRIU's words: {asked:?}");
        assert!(child.try_wait().unwrap().is_none(), "the process goes on");
    }
    assert!(!image.join("crac-manifest").exists(), "no image");
}

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

fn a_hook_overrunning_its_deadline_at_checkpoint_means_no_image_and_a_rolled_back_process() {
    let (dir, image) = setup("deadline-checkpoint");
    let out = Run::new("deadline-checkpoint", &image).output();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "deadline error checkpoint refused, no image taken, resources rolled back; 1 failure:\n  \
             - `stalls` failed in before_checkpoint: did not finish within its deadline of 300ms"
        ),
        "{stdout}"
    );
    // Its rollback waited for the late hook; everyone else rolled back too.
    let l = lines(&stdout);
    let at = |line: &str| {
        l.iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no {line:?}: {stdout}"))
    };
    assert!(
        at("hook stalls before_checkpoint returns late")
            < at("hook stalls after_restore RolledBack")
    );
    assert!(at("hook server after_restore RolledBack") > at("hook server before_checkpoint"));
    assert!(
        l.last().unwrap().starts_with("still running checksum"),
        "{stdout}"
    );
    assert!(!image.exists(), "no image");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no staging leftovers"
    );
}

fn a_hook_overrunning_its_deadline_after_restore_fails_the_restore_and_the_copy_runs_on() {
    let (_, image) = setup("deadline-restore");
    let original = Run::new("deadline-restore", &image).output();
    assert!(killed_by_sigkill(original.status), "{original:?}");
    let restored = restore(&image);
    assert_eq!(
        restored.status.code(),
        Some(7),
        "the copy runs on: {restored:?}"
    );
    let stdout = text(&restored.stdout);
    assert!(
        stdout.contains(
            "deadline error after restore, 1 failure:\n  - `stalls` failed in after_restore: \
             did not finish within its deadline of 300ms"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("hook stalls after_restore returns late"),
        "{stdout}"
    );
    assert!(stdout.contains("still running checksum"), "{stdout}");
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

/// CRIU fails after its post-dump step published the new image (a wrapper exits 1 once
/// the real CRIU is done). A process that keeps running is told the dump failed, and the
/// previous image is back in place, unchanged; a process CRIU already killed has nobody
/// to tell, and its new, complete image stands and restores.
fn criu_failing_after_publishing_leaves_the_image_the_outcome_says() {
    let (dir, image) = setup("criu-fails-late");
    let (criu, first, before) = (dir.join("criu"), dir.join("first"), dir.join("before"));
    criu_wrapper(
        &criu,
        &format!(
            "if [ ! -e {first} ]; then touch {first}; exec \"$CRIU\" \"$@\"; fi\n\
             cp {image}/crac-manifest {before}\n\"$CRIU\" \"$@\"\nexit 1",
            first = first.display(),
            image = image.display(),
            before = before.display()
        ),
    );
    let out = Run::new("twice", &image)
        .env("CRAC_LEAVE_RUNNING", "1")
        .env("CRAC_CRIU", criu.to_str().unwrap())
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("round 1 outcome LeftRunning"), "{stdout}");
    assert!(
        stdout.contains(
            "round 2 error checkpoint failed in engine `criu`, resources rolled back: criu dump \
             failed; the process was not checkpointed and continues:\n  criu exited with status 1 \
             after the image was written; the new image was discarded and the previous one, if \
             any, kept\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("still running checksum"), "{stdout}");
    assert_eq!(
        std::fs::read(image.join("crac-manifest")).unwrap(),
        std::fs::read(&before).unwrap(),
        "the previous image is back"
    );
    let inspected = crac(&["inspect", image.to_str().unwrap()]);
    assert_eq!(inspected.status.code(), Some(0), "{inspected:?}");
    assert_no_staging_left(&dir);

    // Without CRAC_LEAVE_RUNNING the real CRIU kills the process before the wrapper fails.
    let out = Run::new("plain", &image)
        .env("CRAC_CRIU", criu.to_str().unwrap())
        .output();
    assert!(killed_by_sigkill(out.status), "{out:?}");
    assert_ne!(
        std::fs::read(image.join("crac-manifest")).unwrap(),
        std::fs::read(&before).unwrap(),
        "the new image stands"
    );
    assert_no_staging_left(&dir);
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7), "{restored:?}");
    assert!(
        text(&restored.stdout).contains("round 1 outcome Restored"),
        "{restored:?}"
    );
}

/// CRIU killed (SIGKILL) twice: once mid-dump, as soon as it has seized the process, and
/// once in its post-dump step after the image was published, leaving a child of its own
/// behind. Each time the process keeps running rolled back, the error says CRIU was
/// killed by signal 9 and where its log is, the previous image is untouched, and nothing
/// of CRIU's process group is left.
fn criu_killed_mid_dump_is_named_and_leaves_nothing_running() {
    let (dir, image) = setup("criu-killed");
    let (criu, log_pipe, late, at_post_dump) = (
        dir.join("criu"),
        dir.join("criu-log"),
        dir.join("kill-late"),
        dir.join("at-post-dump"),
    );
    // In the post-dump step, after crac's own script has published the image, a child
    // named like CRIU starts and CRIU is killed: a child that outlives it.
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/sleep", bin.join("criu")).unwrap();
    let pids = dir.join("late-pids");
    write_script(
        &at_post_dump,
        &format!(
            "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-dump ] || exit 0\n\
             {} 30 &\necho $PPID $! > {}\nkill -9 $PPID\n",
            bin.join("criu").display(),
            pids.display()
        ),
    );
    criu_wrapper(
        &criu,
        &format!(
            "[ -p {log_pipe} ] && exec \"$CRIU\" \"$@\" -o {log_pipe}\n\
             [ -e {late} ] && exec \"$CRIU\" --action-script {script} \"$@\"\n\
             exec \"$CRIU\" \"$@\"",
            log_pipe = log_pipe.display(),
            late = late.display(),
            script = at_post_dump.display()
        ),
    );
    let out = dir.join("stdout");
    let run = Run::new("request", &image)
        .env("CRAC_LEAVE_RUNNING", "1")
        // every step logged: CRIU's log paces it below
        .env("CRAC_LOG", "4")
        .env("CRAC_CRIU", criu.to_str().unwrap());
    let mut child = ready_for_requests(run, &out);
    let _reaper = KillOnDrop(child.id());
    let pid = child.id() as i32;
    let asked = crac(&["checkpoint", &pid.to_string()]);
    assert!(asked.status.success(), "{asked:?}");
    let previous = std::fs::read(image.join("crac-manifest")).unwrap();

    let fifo = CString::new(log_pipe.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let killer = std::thread::spawn(move || kill_criu_once_it_seizes(pid, &log_pipe));
    let asked = crac(&["checkpoint", &pid.to_string(), "--timeout", "30"]);
    let (killed, log_pipe) = killer.join().unwrap();
    std::fs::remove_file(log_pipe).unwrap();
    assert_killed_and_rolled_back(&asked, &dir, &out, 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process keeps running"
    );
    assert_eq!(
        std::fs::read(image.join("crac-manifest")).unwrap(),
        previous
    );
    assert_group_gone(killed);

    std::fs::write(&late, b"").unwrap();
    let asked = crac(&["checkpoint", &pid.to_string(), "--timeout", "30"]);
    assert_killed_and_rolled_back(&asked, &dir, &out, 2);
    assert!(
        text(&asked.stderr).contains("after the image was written; the new image was discarded"),
        "{asked:?}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process keeps running"
    );
    assert_eq!(
        std::fs::read(image.join("crac-manifest")).unwrap(),
        previous,
        "the image published before CRIU was killed is withdrawn"
    );
    let pids = std::fs::read_to_string(&pids).unwrap();
    let (late_criu, its_child) = pids.trim().split_once(' ').unwrap();
    assert_group_gone(late_criu.parse().unwrap());
    let child_left = processes()
        .into_iter()
        .find(|p| p.pid.to_string() == its_child && p.comm == "criu");
    assert!(child_left.is_none(), "left behind: {child_left:?}");
    assert_no_staging_left(&dir);
}

/// The answer to a request whose dump was killed: refused, naming the signal and the
/// log; the process's resources were rolled back (for the `nth` time).
fn assert_killed_and_rolled_back(asked: &std::process::Output, dir: &Path, out: &Path, nth: usize) {
    assert_eq!(asked.status.code(), Some(70), "{asked:?}");
    let stderr = text(&asked.stderr);
    assert!(
        stderr.contains("criu dump failed; the process was not checkpointed and continues:\n  criu was killed by signal 9 (SIGKILL)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "full CRIU log: {}",
            dir.join("image.dump-failed.log").display()
        )),
        "{stderr}"
    );
    assert!(dir.join("image.dump-failed.log").is_file());
    wait_for_line(out, "hook server after_restore RolledBack");
    let printed = std::fs::read_to_string(out).unwrap();
    assert_eq!(
        printed
            .matches("hook server after_restore RolledBack")
            .count(),
        nth,
        "{printed}"
    );
}

/// Kills CRIU (SIGKILL) once it has seized process `pid` and before it touches the
/// process's memory; returns CRIU's PID, and `log_pipe`. There is no race with CRIU:
/// `log_pipe` is its log (-v4: every step), a pipe of one page that this thread stops
/// reading at the "Seized task" line. CRIU blocks on the full pipe a few lines later,
/// some 20 KB of log before it injects its parasite code (killed then, CRIU would take
/// the process with it: SIGTRAP), and is killed there.
fn kill_criu_once_it_seizes(pid: i32, log_pipe: &Path) -> (i32, PathBuf) {
    // read-write: reads wait for CRIU instead of ending before it opens the pipe
    let mut log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(log_pipe)
        .unwrap();
    // SAFETY: an fcntl on an fd this function owns.
    let size = unsafe { libc::fcntl(log.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size >= 4096, "{}", std::io::Error::last_os_error());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut logged = Vec::new();
    while !String::from_utf8_lossy(&logged).contains("Seized task") {
        let mut ready = libc::pollfd {
            fd: log.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut ready, 1, left.as_millis() as i32) };
        assert!(n > 0, "CRIU never seized {pid}: {}", text(&logged));
        let mut chunk = [0; 64];
        let read = log.read(&mut chunk).unwrap();
        logged.extend_from_slice(&chunk[..read]);
    }
    let criu = tracer_of(pid);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{criu}/comm")).unwrap(),
        "criu\n"
    );
    let writing = format!("{} ", libc::SYS_write);
    while !std::fs::read_to_string(format!("/proc/{criu}/syscall"))
        .unwrap()
        .starts_with(&writing)
    {
        assert!(Instant::now() < deadline, "CRIU never blocked on its log");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(tracer_of(pid), criu, "still seized");
    // SAFETY: plain kill of the CRIU process found above, blocked on its log.
    assert_eq!(unsafe { libc::kill(criu, libc::SIGKILL) }, 0);
    (criu, log_pipe.to_path_buf())
}

/// The process tracing `pid` (0 for none).
fn tracer_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Nothing is left in the process group of the CRIU that was `killed`.
fn assert_group_gone(killed: i32) {
    let left: Vec<_> = processes()
        .into_iter()
        .filter(|p| p.pgrp == killed)
        .collect();
    assert!(left.is_empty(), "left in CRIU's process group: {left:?}");
}

fn assert_no_staging_left(dir: &Path) {
    let staging: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with(".image.tmp-"))
        .collect();
    assert!(staging.is_empty(), "staging left: {staging:?}");
}
