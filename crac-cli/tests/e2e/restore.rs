//! `crac restore`: a checkpointed program comes back with its state, its hooks run, and
//! its output goes to the restorer — on a pipe, twice, left running, with new arguments,
//! as eight copies at once, and with a clear error when its PID is taken.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, Run, checksum_of, crac, crac_started, killed_by_sigkill, lines, only_stdio,
    restore, setup, tests, text,
};
use crate::scenario::located;

tests![
    restored_process_has_its_state_runs_its_hooks_and_writes_to_the_restorers_stdout,
    a_process_started_on_a_terminal_is_restored_onto_a_pipe,
    a_verbose_restore_says_where_its_time_went,
    a_restored_process_can_checkpoint_again_and_be_restored_again,
    a_left_running_checkpoint_continues_and_its_image_restores_later,
    a_restore_passes_new_arguments_and_environment_before_the_hooks_run,
    one_image_restores_eight_times_at_once_and_every_copy_is_unique,
    a_restore_says_which_process_holds_the_pid,
    time_in_the_image_passes_for_the_wall_clock_only,
    a_carried_listener_is_never_shared_by_a_second_copy,
];

fn restored_process_has_its_state_runs_its_hooks_and_writes_to_the_restorers_stdout() {
    let (dir, image) = setup("plain");
    // stdout is a regular file (not O_APPEND) that grows after the dump: the hard case
    let log_path = dir.join("original-stdout");
    let log = std::fs::File::create(&log_path).unwrap();
    let status = Run::new("plain", &image).spawn(log.into()).wait().unwrap();
    assert!(
        killed_by_sigkill(status),
        "the dump stops the original: {status:?}"
    );
    let original = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        lines(&original)[1..],
        [
            "hook server before_checkpoint",
            "hook index before_checkpoint"
        ],
        "{original}"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(b"grown\n")
        .unwrap();

    let meta = std::fs::metadata(&image).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let (server, index) = (
        located("crac::register(&server);"),
        located("crac::register(&index);"),
    );
    assert!(
        manifest.contains(&format!(
            "\nplan 1 resource 0 server ({server})\nplan 0 resource 0 index ({index})\n"
        )),
        "{manifest}"
    );

    let out = restore(&image);
    let restored = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code propagates; stderr: {}",
        text(&out.stderr)
    );
    let want_checksum = checksum_of(lines(&original)[0]);
    assert_eq!(
        lines(&restored),
        [
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("round 1 outcome Restored generation 1 checksum {want_checksum}"),
            "exiting 7",
        ],
        "{restored}"
    );
    // The restorer reports how long CRIU took; the restored process itself prints
    // nothing (its hooks' figures are a tracing event).
    let summary = text(&out.stderr);
    assert!(
        summary.starts_with("crac: restored in ") && summary.ends_with(" ms\n"),
        "a one-line summary on stderr: {summary}"
    );
    assert_eq!(
        std::fs::read_to_string(&log_path).unwrap(),
        format!("{original}grown\n"),
        "nothing written after restore leaks into the original stdout"
    );
}

fn a_process_started_on_a_terminal_is_restored_onto_a_pipe() {
    let (_, image) = setup("tty");
    let run = Run::new("plain", &image);
    // util-linux `script` runs the program on a pseudo-terminal of its own
    let program = run.exe.display().to_string();
    let mut cmd = Command::new("script");
    only_stdio(&mut cmd)
        .args(["-qfec", &program, "/dev/null"])
        .env("CRAC_E2E_SCENARIO", "plain")
        .env("CRAC_CHECKPOINT_TO", &image)
        .stdin(Stdio::null());
    let original = cmd.output().expect("util-linux `script` is installed");
    assert!(
        text(&original.stdout).contains("hook index before_checkpoint"),
        "{original:?}"
    );
    let checksum = checksum_of(lines(&text(&original.stdout))[0]).to_string();
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        text(&out.stdout).contains(&format!(
            "round 1 outcome Restored generation 1 checksum {checksum}\nexiting 7\n"
        )),
        "{out:?}"
    );
}

fn a_verbose_restore_says_where_its_time_went() {
    let (_, image) = setup("verbose");
    assert!(killed_by_sigkill(Run::new("plain", &image).output().status));
    // the page data hashed (publishing recorded it intact, which a restore would trust)
    let out = crac(&[
        "restore",
        "--verbose",
        "--verify-pages",
        "always",
        image.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stderr = text(&out.stderr);
    let phases = [
        "validate the image",
        "CRIU start (namespace, kernel probe)",
        "processes, files and memory",
        "waiting for the page check",
        "resume",
        "hashing the page data, beside CRIU)",
    ];
    let mut rest = stderr
        .strip_prefix("crac: restored in ")
        .unwrap_or_else(|| panic!("{stderr}"));
    for phase in phases {
        let at = rest
            .find(&format!(" ms  {phase}"))
            .or_else(|| rest.find(&format!(" ms {phase}")))
            .unwrap_or_else(|| panic!("no {phase:?}, in order: {stderr}"));
        rest = &rest[at..];
    }
}

fn a_restored_process_can_checkpoint_again_and_be_restored_again() {
    let (_, image) = setup("twice");
    let first = Run::new("twice", &image).output();
    assert!(killed_by_sigkill(first.status));
    let checksum = checksum_of(lines(&text(&first.stdout))[0]).to_string();

    let second = restore(&image);
    assert!(
        second.status.code() == Some(128 + 9),
        "the second dump stops the restored copy: {second:?}"
    );
    assert_eq!(
        lines(&text(&second.stdout)),
        [
            "hook index after_restore Restored",
            "hook server after_restore Restored",
            &format!("round 1 outcome Restored generation 1 checksum {checksum}"),
            "hook server before_checkpoint",
            "hook index before_checkpoint",
        ]
    );
    let third = restore(&image);
    assert_eq!(third.status.code(), Some(7));
    assert_eq!(
        lines(&text(&third.stdout))[2..],
        [
            &format!("round 2 outcome Restored generation 2 checksum {checksum}"),
            "exiting 7"
        ]
    );
}

fn a_left_running_checkpoint_continues_and_its_image_restores_later() {
    let (_, image) = setup("leave-running");
    let out = Run::new("plain", &image)
        .env("CRAC_LEAVE_RUNNING", "1")
        .output();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let checksum = checksum_of(lines(&stdout)[0]).to_string();
    assert_eq!(
        lines(&stdout)[3..],
        [
            "hook index after_restore LeftRunning",
            "hook server after_restore LeftRunning",
            &format!("round 1 outcome LeftRunning generation 0 checksum {checksum}"),
            "exiting 7",
        ]
    );
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7));
    assert!(text(&restored.stdout).contains(&format!(
        "round 1 outcome Restored generation 1 checksum {checksum}"
    )));
}

fn a_restore_passes_new_arguments_and_environment_before_the_hooks_run() {
    let (_, image) = setup("args");
    let original = Run::new("args", &image)
        .env("CRAC_E2E_UPSTREAM", "10.0.0.1:5432")
        .output();
    assert!(killed_by_sigkill(original.status), "{original:?}");
    let out = crac(&[
        "restore",
        image.to_str().unwrap(),
        "--env",
        "CRAC_E2E_UPSTREAM=10.0.0.2:5432",
        "--env",
        "EXTRA=a b=c",
        "--",
        "--port",
        "9090",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(
        lines(&stdout)[1..],
        [
            "restored upstream 10.0.0.2:5432",
            "hook server after_restore Restored",
            r#"restored args ["--port", "9090"] env [("CRAC_E2E_UPSTREAM", "10.0.0.2:5432"), ("EXTRA", "a b=c")]"#,
        ],
        "{stdout}"
    );
    let plain = restore(&image);
    assert!(
        text(&plain.stdout).contains("restored upstream 10.0.0.1:5432\nhook server after_restore Restored\nrestored args [] env []"),
        "{plain:?}"
    );
}

fn one_image_restores_eight_times_at_once_and_every_copy_is_unique() {
    let (_, image) = setup("eight");
    let mut run = Run::new("unique", &image);
    run.private_pids = true;
    let original = run.output();
    assert_eq!(original.status.code(), Some(128 + 9), "{original:?}");
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    assert!(
        manifest.contains("\npid 2\n") && manifest.contains("\npid-namespace private\n"),
        "{manifest}"
    );
    let checksum = checksum_of(lines(&text(&original.stdout))[0]).to_string();

    let started = Instant::now();
    let copies: Vec<_> = (0..8)
        .map(|_| crac_started(&["restore", image.to_str().unwrap()]))
        .collect();
    let outputs: Vec<Output> = copies
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    eprintln!(
        "8 concurrent restores all answered in {:?}",
        started.elapsed()
    );
    let mut instances = std::collections::HashSet::new();
    let mut randoms = std::collections::HashSet::new();
    for out in &outputs {
        assert_eq!(
            out.status.code(),
            Some(7),
            "every exit code propagates: {out:?}"
        );
        let stdout = text(&out.stdout);
        let line = lines(&stdout)
            .into_iter()
            .find(|l| l.starts_with("unique "))
            .unwrap_or_else(|| panic!("{out:?}"));
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[1], "Restored", "{line}");
        assert_eq!(
            words[7], "2",
            "each copy is PID 2 of its own namespace: {line}"
        );
        assert_eq!(words[9], checksum, "{line}");
        instances.insert(words[3].to_string());
        randoms.insert(words[5].to_string());
    }
    assert_eq!(instances.len(), 8, "a different instance id in every copy");
    assert_eq!(
        randoms.len(),
        8,
        "a differently reseeded generator in every copy"
    );

    let again = restore(&image);
    assert_eq!(
        again.status.code(),
        Some(7),
        "the image restores again after its copies exited: {again:?}"
    );
    assert!(text(&again.stdout).contains(&format!("pid 2 checksum {checksum}")));
}

fn a_restore_says_which_process_holds_the_pid() {
    let (_, image) = setup("pid-taken");
    assert!(killed_by_sigkill(
        Run::new("linger", &image).output().status
    ));
    let first = only_stdio(&mut Command::new(env!("CARGO_BIN_EXE_crac")))
        .args(["restore", image.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = KillOnDrop(first.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    let pid = manifest
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap()
        .to_string();
    while !Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "first restore did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = restore(&image);
    assert_eq!(second.status.code(), Some(70));
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains(&format!("PID {pid} recorded in the image is in use by `")),
        "{stderr}"
    );
    assert_eq!(first.wait_with_output().unwrap().status.code(), Some(7));
}

/// What the guide's rule on time says (docs/uniqueness.md): `Instant` (CLOCK_MONOTONIC, and so tokio's
/// timers) does not count the time the image slept, `SystemTime` does, and
/// `Restore::checkpointed_for` is that wall-clock gap.
fn time_in_the_image_passes_for_the_wall_clock_only() {
    let (_, image) = setup("clock");
    let first = Run::new("clock", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = restore(&image);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let line = lines(&stdout)
        .into_iter()
        .find(|l| l.starts_with("clock "))
        .unwrap();
    let field = |name: &str| -> u64 {
        let words: Vec<&str> = line.split(' ').collect();
        let at = words.iter().position(|w| *w == name).unwrap();
        words[at + 1].parse().unwrap()
    };
    assert!(line.starts_with("clock Restored "), "{line}");
    // the two seconds between dump and restore are missing from monotonic time only (a
    // bound that holds however slow the dump and the restore are)
    assert!(
        field("wall") - field("monotonic") >= 1900,
        "the image's sleep is not monotonic time: {line}"
    );
    assert!(field("wall") >= 2000, "the wall clock counts it: {line}");
    assert!(
        line.ends_with(" kept Some(true)"),
        "Restore says the monotonic clock was kept: {line}"
    );
    assert!(field("checkpointed_for") >= 2000, "{line}");
    assert!(field("checkpointed_for") <= field("wall"), "{line}");
}

/// A listening socket kept in the image (claimed) without `SO_REUSEPORT`: of two copies
/// restored at the same moment, one listens and the other is refused, naming the
/// address, instead of silently sharing the socket with the first.
fn a_carried_listener_is_never_shared_by_a_second_copy() {
    let (_, image) = setup("carried-listener");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut run = Run::new("carried-listener", &image).env("CRAC_E2E_LISTEN", &address);
    run.private_pids = true;
    let first = run.output();
    assert_eq!(
        first.status.code(),
        Some(137),
        "stopped by the dump: {first:?}"
    );
    let manifest = std::fs::read_to_string(image.join("crac-manifest")).unwrap();
    assert!(
        manifest.contains(&format!("\nlistener {address} exclusive\n")),
        "{manifest}"
    );

    // two copies started at the same moment: one listens, the other is refused
    let start = || {
        std::process::Command::new(crate::harness::crac_bin())
            .args(["restore", image.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let _reapers = (KillOnDrop(a.id()), KillOnDrop(b.id()));
    let mut outcomes = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    outcomes.sort_by_key(|out| out.status.code());
    let [listened, refused] = outcomes;
    assert_eq!(listened.status.code(), Some(7), "{listened:?}");
    assert!(
        text(&listened.stdout).contains("listening Restored"),
        "{listened:?}"
    );
    assert_eq!(refused.status.code(), Some(70), "{refused:?}");
    assert!(
        text(&refused.stderr).contains(&format!(
            "the image carries a socket listening on {address} without SO_REUSEPORT"
        )),
        "{refused:?}"
    );
}
