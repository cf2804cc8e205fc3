//! What the open-resource check lets through by default and what it names: an async
//! runtime's own fds pass (CRIU carries them), a connection to another process and an
//! fd inherited from the parent are refused, each said for what it is.

use std::os::unix::net::UnixListener;

use crate::harness::{Run, checksum_of, killed_by_sigkill, lines, restore, setup, tests, text};

tests![
    a_multi_thread_tokio_runtime_checkpoints_and_works_after_restore,
    a_current_thread_tokio_runtime_checkpoints_and_works_after_restore,
    a_unix_connection_to_another_process_is_refused_naming_that_process,
    an_fd_inherited_from_the_parent_is_named_as_inherited,
];

fn tokio_round_trip(flavor: &'static str) {
    let (_, image) = setup(flavor);
    let first = Run::new(flavor, &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let original = text(&first.stdout);
    let restored = restore(&image);
    assert_eq!(restored.status.code(), Some(7), "{restored:?}");
    let after = text(&restored.stdout);
    assert_eq!(
        lines(&after).last().copied(),
        Some(
            format!(
                "tokio Restored echo x checksum {}",
                checksum_of(lines(&original)[0])
            )
            .as_str()
        ),
        "{after}"
    );
}

fn a_multi_thread_tokio_runtime_checkpoints_and_works_after_restore() {
    tokio_round_trip("tokio-multi");
}

fn a_current_thread_tokio_runtime_checkpoints_and_works_after_restore() {
    tokio_round_trip("tokio-current");
}

fn a_unix_connection_to_another_process_is_refused_naming_that_process() {
    let (dir, image) = setup("unix-peer");
    let path = dir.join("peer.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // this process holds the accepted end, as a server would
    let server = std::thread::spawn(move || listener.accept().unwrap());
    let out = Run::new("unix-peer", &image)
        .env("CRAC_E2E_UNIX_PEER", path.to_str().unwrap())
        .output();
    drop(server.join().unwrap());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 open file descriptor would be captured in the image:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "(unix): unix stream socket (unnamed), connected to process {} (",
            std::process::id()
        )),
        "the peer is this test process: {stdout}"
    );
    assert!(!image.exists());
}

fn an_fd_inherited_from_the_parent_is_named_as_inherited() {
    let (_, image) = setup("inherited");
    let mut run = Run::new("plain", &image);
    run.stray_fds = true;
    let out = run.output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("fd 10 (file): /dev/null — inherited from the parent process"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(pipe): pipe:[")
            && stdout
                .contains("its other end outside this process — inherited from the parent process"),
        "{stdout}"
    );
}
