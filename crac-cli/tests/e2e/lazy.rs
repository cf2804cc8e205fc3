//! `crac restore --lazy`: the process runs before its memory is read, ends up with all of
//! it, and is stopped with a clear error if the server filling it dies.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::{
    Run, alive, checksum_of, crac, crac_started, criu, image_pid, killed_by_sigkill, lines,
    only_stdio, setup, tests, text,
};

tests![
    a_lazy_restore_ends_with_all_the_memory_of_the_image,
    lazy_copies_of_one_image_run_side_by_side,
    a_lazy_pages_server_that_dies_stops_the_copy_and_says_so,
    a_lazy_pages_server_that_never_listens_is_named_and_nothing_runs,
];

fn lazy_restore(image: &std::path::Path) -> Output {
    crac(&["restore", "--lazy", image.to_str().unwrap()])
}

fn a_lazy_restore_ends_with_all_the_memory_of_the_image() {
    let (_, image) = setup("lazy");
    let first = Run::new("plain", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let checksum = checksum_of(lines(&text(&first.stdout))[0]).to_string();
    let out = lazy_restore(&image);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // the checksum walks the whole index: every page of it arrived, with its contents
    assert!(
        text(&out.stdout).contains(&format!(
            "round 1 outcome Restored generation 1 checksum {checksum}\nexiting 7\n"
        )),
        "{out:?}"
    );
    assert!(
        text(&out.stderr).starts_with("crac: restored in "),
        "{out:?}"
    );
}

fn lazy_copies_of_one_image_run_side_by_side() {
    let (_, image) = setup("lazy-copies");
    let mut run = Run::new("unique", &image);
    run.private_pids = true;
    let original = run.output();
    // `crac __init` reports the dump's SIGKILL as a shell would
    assert_eq!(original.status.code(), Some(128 + 9), "{original:?}");
    let checksum = checksum_of(lines(&text(&original.stdout))[0]).to_string();
    let copies: Vec<_> = (0..3)
        .map(|_| crac_started(&["restore", "--lazy", image.to_str().unwrap()]))
        .collect();
    let mut instances = std::collections::HashSet::new();
    for copy in copies {
        let out = copy.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{out:?}");
        let stdout = text(&out.stdout);
        let line = lines(&stdout)
            .into_iter()
            .find(|l| l.starts_with("unique Restored "))
            .unwrap_or_else(|| panic!("{out:?}"))
            .to_string();
        assert_eq!(checksum_of(&line), checksum, "{line}");
        instances.insert(line.split(' ').nth(3).unwrap().to_string());
    }
    assert_eq!(instances.len(), 3, "each copy has its own instance id");
}

/// `CRAC_CRIU` is a wrapper that kills the lazy-pages server (and itself, so the restorer
/// sees a death by signal 9) as soon as it listens.
fn a_lazy_pages_server_that_dies_stops_the_copy_and_says_so() {
    let (dir, image) = setup("lazy-killed");
    let first = Run::new("plain", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let pid = image_pid(&first.stdout);
    let out = restore_lazily_through(
        &dir,
        &image,
        &format!(
            r#"#!/bin/sh
if [ "$1" = lazy-pages ]; then
    for arg in "$@"; do
        [ "$previous" = -W ] && work_dir=$arg
        previous=$arg
    done
    {criu} "$@" &
    server=$!
    while [ ! -S "$work_dir/lazy-pages.socket" ]; do sleep 0.001; done
    kill -9 $server
    kill -9 $$
fi
exec {criu} "$@"
"#,
            criu = criu().unwrap().display()
        ),
    );
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("criu lazy-pages") && stderr.contains("killed by signal 9"),
        "the error names the server and how it ended: {stderr}"
    );
    assert!(
        !text(&out.stdout).contains("exiting 7"),
        "the copy did not run to its end on incomplete memory: {out:?}"
    );
    // nothing left running: not the copy, not the server
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!alive(pid), "the copy is gone");
}

/// The server is started before the image is validated and waited for on its status
/// pipe: one that ends before it listens fails the restore, naming it, before CRIU runs.
fn a_lazy_pages_server_that_never_listens_is_named_and_nothing_runs() {
    let (dir, image) = setup("lazy-never-listens");
    let first = Run::new("plain", &image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let out = restore_lazily_through(
        &dir,
        &image,
        &format!(
            "#!/bin/sh\n[ \"$1\" = lazy-pages ] && exit 3\nexec {} \"$@\"\n",
            criu().unwrap().display()
        ),
    );
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("criu lazy-pages exited with status 3 before it listened"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("after_restore"), "{out:?}");
}

/// `crac restore --lazy` of `image` with `CRAC_CRIU` a shell script (written in `dir`)
/// standing in for CRIU.
fn restore_lazily_through(dir: &Path, image: &Path, script: &str) -> Output {
    let wrapper = dir.join("criu");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    only_stdio(&mut Command::new(crate::harness::crac_bin()))
        .args(["restore", "--lazy", image.to_str().unwrap()])
        .env("CRAC_CRIU", &wrapper)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}
