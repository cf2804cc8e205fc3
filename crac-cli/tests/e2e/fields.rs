//! Field attributes that need a real restore: `#[crac(restore_env = "NAME")]` set from
//! `crac restore --env`.

use std::path::Path;

use crate::harness::{Run, crac, killed_by_sigkill, lines, restore, setup, tests, text};

tests![a_restore_env_field_takes_the_restorers_value_and_a_bad_one_fails_the_restore_by_name];

fn a_restore_env_field_takes_the_restorers_value_and_a_bad_one_fails_the_restore_by_name() {
    let (_, image) = setup("restore-env");
    let original = Run::new("restore-env", &image).output();
    assert!(killed_by_sigkill(original.status), "{original:?}");
    let image = image.to_str().unwrap();

    let moved = crac(&["restore", image, "--env", "CRAC_E2E_PORT=9123"]);
    assert_eq!(moved.status.code(), Some(7), "{moved:?}");
    assert_eq!(ports(&moved.stdout), ["port 9123 Restored"]);

    let bad = crac(&["restore", image, "--env", "CRAC_E2E_PORT=eighty"]);
    assert_eq!(bad.status.code(), Some(7), "the process runs on: {bad:?}");
    let stdout = text(&bad.stdout);
    assert!(
        stdout.contains(
            "`listen.port` failed in after_restore: the restore-time variable \
             CRAC_E2E_PORT=\"eighty\" is not a valid `u16` (invalid digit found in string)"
        ),
        "{stdout}"
    );
    assert!(
        ports(&bad.stdout)[0].starts_with("port 8080 error after restore"),
        "the field keeps its value: {stdout}"
    );

    let plain = restore(Path::new(image));
    assert_eq!(ports(&plain.stdout), ["port 8080 Restored"]);
}

/// What the scenario printed of its port.
fn ports(stdout: &[u8]) -> Vec<String> {
    lines(&text(stdout))
        .into_iter()
        .filter(|line| line.starts_with("port "))
        .map(String::from)
        .collect()
}
