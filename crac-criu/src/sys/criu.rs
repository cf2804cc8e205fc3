//! The `criu` binary: finding it, its version, the options both sides need, its logs.

use std::path::Path;
use std::process::{Command, Stdio};

/// Where `criu` is found (`CRAC_CRIU`, `PATH`, the sbin directories), and why it is
/// not: one search order for the engine, `#[crac::test]` and the end-to-end tests.
pub(crate) use crac_shared::criu::{CriuMissing, criu_binary};

/// CRIU options that must be given to restore too when they were given to dump.
const BOTH_SIDES: [&str; 6] = [
    "--tcp-close",
    "--tcp-established",
    "--file-locks",
    "--ext-unix-sk",
    "--network-lock",
    "--shell-job",
];

/// The subset of `options` that restore must repeat (with their values).
pub(crate) fn restore_options(options: &[String]) -> Vec<String> {
    options
        .iter()
        .filter(|o| {
            BOTH_SIDES
                .iter()
                .any(|b| o.as_str() == *b || o.starts_with(&format!("{b}=")))
        })
        .cloned()
        .collect()
}

/// `criu --version`'s version number.
pub(crate) fn version(criu: &Path) -> std::io::Result<String> {
    let out = Command::new(criu)
        .arg("--version")
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap_or(text.trim())
        .to_string())
}

/// The lines of a CRIU log that explain a failure: the last three crac's own action
/// script said there (`crac: …`, the cause when it failed: CRIU's own errors then only
/// report that a script failed), then CRIU's errors, at most the last `max`, else its
/// last lines;
/// never the RLIMIT error every run logs on these hosts.
pub(crate) fn log_digest(log: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let relevant: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("RLIMIT_NOFILE"))
        .collect();
    let (ours, criu): (Vec<&str>, Vec<&str>) =
        relevant.iter().partition(|l| l.starts_with("crac: "));
    let errors: Vec<&str> = criu
        .iter()
        .copied()
        .filter(|l| l.contains("Error (") || l.contains("Error:"))
        .collect();
    let lines = if errors.is_empty() { criu } else { errors };
    ours[ours.len().saturating_sub(3)..]
        .iter()
        .chain(&lines[lines.len().saturating_sub(max)..])
        .map(|l| format!("  {}", l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_sided_options_are_repeated_at_restore() {
        let opts: Vec<String> = [
            "--tcp-close",
            "--ghost-limit=1M",
            "--file-locks",
            "--network-lock=skip",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            restore_options(&opts),
            ["--tcp-close", "--file-locks", "--network-lock=skip"]
        );
    }

    #[test]
    fn the_digest_keeps_errors_and_drops_the_harmless_rlimit_line() {
        let dir = std::env::temp_dir().join(format!("crac-digest-{}", std::process::id()));
        std::fs::write(
            &dir,
            "(00.001) Error (criu/util.c:1): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.002) info\n\
             (00.003) Error (criu/sk-inet.c:2): inet: Connected TCP socket, consider using --tcp-established option.\n",
        )
        .unwrap();
        assert_eq!(
            log_digest(&dir, 5),
            "  (00.003) Error (criu/sk-inet.c:2): inet: Connected TCP socket, consider using --tcp-established option."
        );
        std::fs::write(
            &dir,
            "(00.001) Error (criu/util.c:1): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.002) one\n(00.003) two\n",
        )
        .unwrap();
        assert_eq!(
            log_digest(&dir, 1),
            "  (00.003) two",
            "no error: the last lines"
        );
        std::fs::write(
            &dir,
            "(00.001) Error (criu/util.c:1): rlimit: Can't setup RLIMIT_NOFILE for self\n",
        )
        .unwrap();
        assert_eq!(log_digest(&dir, 5), "", "nothing but the harmless line");
        std::fs::write(
            &dir,
            "crac: publishing the image /i failed: the image key /k: Permission denied\n\
             Error (criu/a.c:1): one\nError (criu/a.c:2): two\n",
        )
        .unwrap();
        assert_eq!(
            log_digest(&dir, 1),
            "  crac: publishing the image /i failed: the image key /k: Permission denied\n  \
             Error (criu/a.c:2): two",
            "crac's own cause comes first, whatever the number of CRIU's errors"
        );
        std::fs::remove_file(dir).unwrap();
    }
}
