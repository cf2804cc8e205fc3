//! `crac checkpoint PID`: asking a running program to checkpoint itself.

use std::time::{Duration, Instant};

use crate::harness::{KillOnDrop, Run, crac, killed_by_sigkill, restore, setup, tests, text};

tests![
    crac_checkpoint_asks_a_running_process_to_checkpoint_itself,
    crac_checkpoint_gives_up_with_a_message_when_no_answer_can_come,
];

/// Starts the `request` scenario writing its image to `image`; returns it once it is
/// ready for requests.
fn ready_for_requests(image: &std::path::Path, out_path: &std::path::Path) -> std::process::Child {
    let child = Run::new("request", image).spawn(std::fs::File::create(out_path).unwrap().into());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(out_path).unwrap().contains("ready") {
        assert!(Instant::now() < deadline, "the program did not get ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn crac_checkpoint_asks_a_running_process_to_checkpoint_itself() {
    let (dir, image) = setup("request");
    let mut child = ready_for_requests(&image, &dir.join("stdout"));
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
    let mut child = ready_for_requests(&blocker.join("image"), &dir.join("stdout"));
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
