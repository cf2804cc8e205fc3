//! Secrets never reach the image: every byte of every image file is searched for pieces
//! of the secrets the scenario held — in `#[crac(secret)]` fields built the way programs
//! build strings (so freed copies of them were in the heap), and in secret environment
//! variables (named by `CRAC_SECRET_ENV` and by `crac::secret_env`) — and for the value of
//! a plain field, which must be there (so the search is shown to find what is there).
//! After the restore, the left-running checkpoint or the failed dump, the secret
//! environment variables hold what the restore gave, or their values again.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::{
    Run, crac, crac_bin, killed_by_sigkill, lines, only_stdio, setup, tests, text,
};

tests![
    no_secret_reaches_the_image_and_a_restore_must_give_the_secret_environment_again,
    no_secret_reaches_the_heap_segments,
    a_process_left_running_has_its_secret_environment_back,
    after_a_failed_dump_the_secret_environment_is_back,
];

/// A piece of a secret shorter than this is not counted as found (random bytes match
/// short pieces); the scenario's secrets are 48 and 64 characters long.
const PIECE: usize = 16;

/// What one run of the scenario holds: random for every run.
struct Secrets {
    seed: String,
    /// The `#[crac(secret)]` fields' value, spelled from the seed as the scenario does.
    key: String,
    /// The plain field's value.
    plain: String,
    operator: String,
    code: String,
}

impl Secrets {
    fn new() -> Secrets {
        let seed = random_hex(32);
        let spell = |first: u8| -> String {
            seed.chars()
                .map(|d| (first + d.to_digit(16).unwrap() as u8) as char)
                .collect()
        };
        Secrets {
            key: spell(b'g'),
            plain: spell(b'G'),
            seed: seed.clone(),
            operator: random_hex(24),
            code: random_hex(24),
        }
    }

    fn run(&self, image: &Path) -> Run {
        Run::new("secrets", image)
            .env("CRAC_E2E_SEED", &self.seed)
            .env("CRAC_SECRET_ENV", "CRAC_E2E_OPERATOR_SECRET")
            .env("CRAC_E2E_OPERATOR_SECRET", &self.operator)
            .env("CRAC_E2E_CODE_SECRET", &self.code)
    }

    /// Asserts that no piece of a secret is in any file of `image`, and the plain value is.
    fn assert_only_the_plain_field_in(&self, image: &Path) {
        let files = image_files(image);
        for (what, secret) in [
            ("the #[crac(secret)] fields", &self.key),
            ("CRAC_E2E_OPERATOR_SECRET (CRAC_SECRET_ENV)", &self.operator),
            ("CRAC_E2E_CODE_SECRET (crac::secret_env)", &self.code),
        ] {
            let found: Vec<String> = files
                .iter()
                .flat_map(|(name, bytes)| {
                    pieces(secret.as_bytes(), bytes)
                        .into_iter()
                        .map(move |(at, len)| {
                            format!("{name} at {at}: {len} of its {} characters", secret.len())
                        })
                })
                .collect();
            assert!(
                found.is_empty(),
                "{what} reached the image:\n{}",
                found.join("\n")
            );
        }
        assert!(
            files
                .iter()
                .any(|(_, bytes)| pieces(self.plain.as_bytes(), bytes)
                    .iter()
                    .any(|&(_, len)| len == self.plain.len())),
            "the plain field's value must be in the image (else the search finds nothing)"
        );
    }

    /// The scenario's last line, as it prints it when it holds `key` and these variables.
    fn line(&self, outcome: &str, key: &str, operator: &str, code: &str) -> String {
        format!(
            "secrets {outcome} key {key} token-len 0 plain {} operator {operator} code {code}",
            self.plain
        )
    }
}

fn no_secret_reaches_the_image_and_a_restore_must_give_the_secret_environment_again() {
    let (_, image) = setup("secrets");
    let secrets = Secrets::new();
    let first = secrets.run(&image).output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    assert_eq!(
        said(&first),
        ["secrets read 96 bytes of secret environment"],
        "{first:?}"
    );
    secrets.assert_only_the_plain_field_in(&image);

    let inspect = crac(&["inspect", image.to_str().unwrap()]);
    assert!(
        text(&inspect.stdout).contains(
            "secret env    CRAC_E2E_CODE_SECRET CRAC_E2E_OPERATOR_SECRET (wiped; give each at \
             restore: --env NAME)\n"
        ),
        "{inspect:?}"
    );

    // a restore that does not give every one is refused before CRIU runs, naming it
    let given_one = crac(&[
        "restore",
        image.to_str().unwrap(),
        "--env",
        "CRAC_E2E_OPERATOR_SECRET=given",
    ]);
    assert_eq!(given_one.status.code(), Some(70), "{given_one:?}");
    assert_eq!(
        text(&given_one.stderr),
        format!(
            "crac: cannot restore {}: the secret environment variable CRAC_E2E_CODE_SECRET was \
             wiped before the checkpoint and must be given again: pass --env \
             CRAC_E2E_CODE_SECRET (this environment's value) or --env CRAC_E2E_CODE_SECRET=VALUE\n",
            image.display()
        )
    );
    assert!(text(&given_one.stdout).is_empty());

    // given both (one from crac restore's own environment, off its command line)
    let (operator, code) = (random_hex(24), random_hex(24));
    let out = restore_with(
        &image,
        &[
            &format!("CRAC_E2E_OPERATOR_SECRET={operator}"),
            "CRAC_E2E_CODE_SECRET",
            "CRAC_E2E_UPSTREAM=elsewhere",
        ],
        &[("CRAC_E2E_CODE_SECRET", &code)],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        said(&out),
        [secrets.line(
            r#"Restored listed ["CRAC_E2E_UPSTREAM"]"#,
            &operator,
            &operator,
            &code
        )],
        "the key is reloaded from the restore-time variable, the token stays wiped, the \
         secrets are set but not listed in Restore::env: {out:?}"
    );
}

/// The same with the heap in segments: freed copies are scrubbed and the fields wiped in
/// the segment files too.
fn no_secret_reaches_the_heap_segments() {
    let (_, image) = setup("secrets-mapped");
    let secrets = Secrets::new();
    let first = secrets.run(&image).env("CRAC_MAPPED_HEAP", "on").output();
    assert!(killed_by_sigkill(first.status), "{first:?}");
    let store = crate::mapped_heap::store(&image);
    assert!(
        std::fs::read_dir(&store).is_ok_and(|mut e| e.next().is_some()),
        "the heap is in segments"
    );
    secrets.assert_only_the_plain_field_in(&image);
}

fn a_process_left_running_has_its_secret_environment_back() {
    let (_, image) = setup("secrets-left-running");
    let secrets = Secrets::new();
    let out = secrets.run(&image).env("CRAC_LEAVE_RUNNING", "1").output();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        said(&out),
        [
            "secrets read 96 bytes of secret environment".to_string(),
            secrets.line(
                "LeftRunning listed []",
                &secrets.operator,
                &secrets.operator,
                &secrets.code
            )
        ],
        "{out:?}"
    );
    secrets.assert_only_the_plain_field_in(&image);
}

fn after_a_failed_dump_the_secret_environment_is_back() {
    let (_, image) = setup("secrets-dump-fails");
    let secrets = Secrets::new();
    let out = secrets
        .run(&image)
        .env("CRAC_CRIU_OPTS", "--crac-e2e-no-such-option")
        .output();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        said(&out)[1],
        secrets.line(
            "error checkpoint failed in engine `criu`, resources rolled back: criu dump failed; \
             the process was not checkpointed and continues:",
            &secrets.operator,
            &secrets.operator,
            &secrets.code
        ),
        "rolled back with its secret environment, the key reloaded from it: {out:?}"
    );
    assert!(!image.exists());
}

/// The scenario's `secrets ...` lines.
fn said(out: &Output) -> Vec<String> {
    lines(&text(&out.stdout))
        .into_iter()
        .filter(|l| l.starts_with("secrets "))
        .map(String::from)
        .collect()
}

/// `crac restore IMAGE --env E...` with `vars` in its own environment.
fn restore_with(image: &Path, env: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(crac_bin());
    cmd.arg("restore").arg(image);
    for e in env {
        cmd.args(["--env", e]);
    }
    only_stdio(&mut cmd)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every file of the image with its bytes.
/// Every file of the image, and the heap segments in its store if it has one.
fn image_files(image: &Path) -> Vec<(String, Vec<u8>)> {
    let store = crate::mapped_heap::store(image);
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(image)
        .unwrap()
        .chain(std::fs::read_dir(&store).into_iter().flatten())
        .map(Result::unwrap)
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    assert!(
        files.iter().any(|(name, _)| name.contains("/pages-")),
        "{:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    files
}

/// Where `bytes` holds a piece of `secret` at least [`PIECE`] long: (offset, length of
/// the longest piece there). Found through runs of bytes of the secret's alphabet, which
/// are rare enough in an image to compare each with the secret.
fn pieces(secret: &[u8], bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = 0;
    for end in 0..=bytes.len() {
        if end < bytes.len() && secret.contains(&bytes[end]) {
            continue;
        }
        if end - start >= PIECE {
            let longest = longest_common(secret, &bytes[start..end]);
            if longest >= PIECE {
                found.push((start, longest));
            }
        }
        start = end + 1;
    }
    found
}

/// The length of the longest run of bytes `a` and `b` have in common.
fn longest_common(a: &[u8], b: &[u8]) -> usize {
    let mut best = 0;
    let mut previous = vec![0; b.len() + 1];
    for &x in a {
        let mut row = vec![0; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            if x == y {
                row[j + 1] = previous[j] + 1;
                best = best.max(row[j + 1]);
            }
        }
        previous = row;
    }
    best
}

fn random_hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    random.iter().map(|b| format!("{b:02x}")).collect()
}
