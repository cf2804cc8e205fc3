//! `crac checkpoint PID`: asking a running program to checkpoint itself.

use std::time::{Duration, Instant};

use crate::harness::{KillOnDrop, Run, crac, killed_by_sigkill, restore, setup, tests, text};

tests![crac_checkpoint_asks_a_running_process_to_checkpoint_itself];

fn crac_checkpoint_asks_a_running_process_to_checkpoint_itself() {
    let (dir, image) = setup("request");
    let out_path = dir.join("stdout");
    let mut child =
        Run::new("request", &image).spawn(std::fs::File::create(&out_path).unwrap().into());
    let _reaper = KillOnDrop(child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out_path)
        .unwrap()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "the program did not get ready");
        std::thread::sleep(Duration::from_millis(20));
    }
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
