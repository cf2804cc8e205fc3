//! `crac checkpoint PID`: asking a running program to checkpoint itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, Run, crac, crac_bin, killed_by_sigkill, only_stdio, ready_for_requests, restore,
    setup, tests, text, wait_for_line,
};

tests![
    crac_checkpoint_asks_a_running_process_to_checkpoint_itself,
    crac_checkpoint_gives_up_with_a_message_when_no_answer_can_come,
    concurrent_requests_are_each_answered,
];

fn crac_checkpoint_asks_a_running_process_to_checkpoint_itself() {
    let (dir, image) = setup("request");
    let mut child = ready_for_requests(Run::new("request", &image), &dir.join("stdout"));
    let _reaper = KillOnDrop(child.id());
    let asked = crac(&["checkpoint", &child.id().to_string()]);
    assert!(asked.status.success(), "{asked:?}");
    assert_eq!(
        text(&asked.stderr),
        format!(
            "crac: process {} was checkpointed to {} and has stopped\n",
            child.id(),
            image.display()
        )
    );
    assert!(killed_by_sigkill(child.wait().unwrap()));
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7));
    assert!(
        text(&restored.stdout).contains("restored on request checksum "),
        "{restored:?}"
    );

    let not_enabled = crac(&["checkpoint", &std::process::id().to_string()]);
    assert!(text(&not_enabled.stderr).contains(
        "does not accept checkpoint requests: it must call crac::checkpoint_on_request()"
    ));
}

fn crac_checkpoint_gives_up_with_a_message_when_no_answer_can_come() {
    let (dir, _) = setup("request-unanswered");
    // The image's parent is a file: the checkpoint is refused, and its answer, due
    // beside the image, cannot be written either.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let mut child = ready_for_requests(
        Run::new("request", &blocker.join("image")),
        &dir.join("stdout"),
    );
    let reaper = KillOnDrop(child.id());
    let asked = crac(&["checkpoint", &child.id().to_string(), "--timeout", "2"]);
    assert_eq!(asked.status.code(), Some(70), "{asked:?}");
    assert!(
        text(&asked.stderr).contains(&format!("process {} did not answer within 2 s", child.id())),
        "{asked:?}"
    );
    drop(reaper);
    child.wait().unwrap();
}

/// A second `crac checkpoint PID` while the first is being served is refused with the
/// reason, as soon as the process can see it (not lost until the deadline); the first
/// gets its own outcome, and the process serves the next request again.
fn concurrent_requests_are_each_answered() {
    let (dir, image) = setup("request-concurrent");
    let out = dir.join("stdout");
    let run = Run::new("request", &image)
        .env("CRAC_LEAVE_RUNNING", "1")
        .env("CRAC_E2E_DRAIN_MS", "1000");
    let mut child = ready_for_requests(run, &out);
    let reaper = KillOnDrop(child.id());
    let pid = child.id().to_string();
    let first = only_stdio(&mut Command::new(crac_bin()))
        .args(["checkpoint", &pid, "--timeout", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the first request is in its (slow) before_checkpoint hook
    wait_for_line(&out, "hook server before_checkpoint");
    let asked = Instant::now();
    let second = crac(&["checkpoint", &pid, "--timeout", "10"]);
    assert_eq!(second.status.code(), Some(70), "{second:?}");
    assert_eq!(
        text(&second.stderr),
        format!(
            "crac: process {pid} did not checkpoint: a checkpoint requested by another `crac \
             checkpoint` is in progress; ask again once it has finished\n"
        )
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered late: {:?}",
        asked.elapsed()
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        text(&first.stderr),
        format!("crac: process {pid} was checkpointed and keeps running\n")
    );
    let third = crac(&["checkpoint", &pid, "--timeout", "30"]);
    assert!(third.status.success(), "served again: {third:?}");
    let printed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        printed
            .matches("hook server after_restore LeftRunning")
            .count(),
        2,
        "two checkpoints, not three: {printed}"
    );
    drop(reaper);
    child.wait().unwrap();
}
