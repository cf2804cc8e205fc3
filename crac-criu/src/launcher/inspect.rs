//! `crac inspect`: what an image is, and whether it can be restored here and why not.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::image::{self, ImageRefusal, manifest::Manifest};
use crate::launcher::bounded::Bounds;
use crate::launcher::error::LaunchError;

/// An image, described.
#[derive(Debug)]
pub struct Inspection {
    manifest: Manifest,
    bytes_on_disk: u64,
    /// `Ok` if `crac restore` would start CRIU, else the reason it would refuse.
    restorable: Result<(), String>,
}

/// How long `crac inspect` checks an image by default (reading all of it, page data
/// included, at a few GB/s): as long as a restore may take.
pub const INSPECT_TIMEOUT: Duration = crate::launcher::restore::RESTORE_TIMEOUT;

/// Reads and checks the image in `dir`, for at most `timeout` (default
/// [`INSPECT_TIMEOUT`]: a check not finished by then says so); fails only when there is
/// no manifest to describe. `insecure_image_permissions`: say whether a restore given
/// that override would proceed.
pub fn inspect(
    dir: &Path,
    insecure_image_permissions: bool,
    timeout: Option<Duration>,
) -> Result<Inspection, LaunchError> {
    let manifest = Manifest::read(dir)?;
    let owned = dir.to_path_buf();
    let check = move || {
        image::check_ownership(&owned, insecure_image_permissions)
            .map_err(|problem| {
                ImageRefusal::Unrestorable {
                    dir: owned.clone(),
                    problem,
                }
                .to_string()
            })
            .and_then(|()| {
                image::validate(&owned, image::Contents::All)
                    .and_then(|m| image::check_ids_free(&m).map(|()| m))
                    .map_err(|e| e.to_string())
            })
            .and_then(|m| image::check_listeners_free(&m))
    };
    // Stop signals keep their default action here: they end the command.
    let restorable = Bounds::from_now(timeout.unwrap_or(INSPECT_TIMEOUT), false)
        .run(check)
        .unwrap_or_else(|cut| Err(format!("not known: {}", cut.said("crac inspect --timeout"))));
    let bytes_on_disk = std::fs::read_dir(dir)
        .map_err(LaunchError::io("listing the image"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok(Inspection {
        manifest,
        bytes_on_disk,
        restorable,
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
}

impl Inspection {
    /// Whether `crac restore` would proceed.
    pub fn is_restorable(&self) -> bool {
        self.restorable.is_ok()
    }

    /// For people: whatever the manifest holds is printed escaped (see [`printable`]).
    pub fn to_text(&self) -> String {
        printable(&self.text())
    }

    fn text(&self) -> String {
        let m = &self.manifest;
        let created = m
            .created
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut out = String::new();
        let _ = writeln!(out, "created       {created} (Unix time)");
        let _ = writeln!(
            out,
            "executable    {} (sha256 {})",
            m.executable.display(),
            m.executable_sha256
        );
        let _ = writeln!(out, "criu          {}", m.criu_version);
        let _ = writeln!(out, "kernel        {}", m.kernel);
        let _ = writeln!(
            out,
            "pid           {}{}",
            m.pid,
            if m.private_pid_namespace {
                " in a private PID namespace (restores concurrently)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "size on disk  {} (resident memory when dumped: {})",
            mb(self.bytes_on_disk),
            mb(m.resident_bytes)
        );
        if !m.restore_options.is_empty() {
            let _ = writeln!(out, "criu options  {}", m.restore_options.join(" "));
        }
        if !m.secret_env.is_empty() {
            let _ = writeln!(
                out,
                "secret env    {} (wiped; give each at restore: --env NAME)",
                m.secret_env.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "plan          {} participants, in checkpoint order:",
            m.plan.len()
        );
        for p in &m.plan {
            let _ = writeln!(
                out,
                "  {:indent$}{} [rank {}, {}]",
                "",
                p.name,
                p.rank,
                p.kind,
                indent = 2 * p.depth
            );
        }
        match &self.restorable {
            Ok(()) => out.push_str("restorable    yes, on this host\n"),
            Err(why) => {
                let _ = writeln!(out, "restorable    no: {why}");
            }
        }
        out
    }

    /// For machines: one JSON object.
    pub fn to_json(&self) -> String {
        let m = &self.manifest;
        let created = m.created.duration_since(UNIX_EPOCH).unwrap_or_default();
        let plan: Vec<String> = m
            .plan
            .iter()
            .map(|p| {
                format!(
                    r#"{{"name":{},"rank":{},"kind":{},"depth":{}}}"#,
                    json(&p.name),
                    p.rank,
                    json(&p.kind),
                    p.depth
                )
            })
            .collect();
        let options: Vec<String> = m.restore_options.iter().map(|o| json(o)).collect();
        let secret_env: Vec<String> = m.secret_env.iter().map(|n| json(n)).collect();
        format!(
            concat!(
                r#"{{"created_unix":{},"executable":{},"executable_sha256":{},"criu_version":{},"#,
                r#""kernel":{},"pid":{},"private_pid_namespace":{},"bytes_on_disk":{},"resident_bytes":{},"#,
                r#""restore_options":[{}],"secret_env":[{}],"plan":[{}],"restorable":{},"refusal":{}}}"#
            ),
            created.as_secs(),
            json(&m.executable.to_string_lossy()),
            json(&m.executable_sha256),
            json(&m.criu_version),
            json(&m.kernel),
            m.pid,
            m.private_pid_namespace,
            self.bytes_on_disk,
            m.resident_bytes,
            options.join(","),
            secret_env.join(","),
            plan.join(","),
            self.restorable.is_ok(),
            self.restorable
                .as_ref()
                .err()
                .map_or("null".to_string(), |why| json(why)),
        )
    }
}

/// `text` safe to print on a terminal: control characters other than the line breaks
/// (escape sequences that could move the cursor, clear the screen or retitle the window)
/// and invisible formatting ones (bidirectional overrides that reorder what is shown)
/// are written as Rust escapes, `\u{1b}`. An image's manifest, or a message quoting it,
/// is text from whoever wrote the image.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hidden(c) && c != '\n' {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is a control or invisible formatting character: what [`printable`] and
/// [`json`] escape.
fn hidden(c: char) -> bool {
    c.is_control() || !matches!(c, '\\' | '"' | '\'') && c.escape_debug().len() > 1
}

/// A JSON string literal; control and formatting characters as `\uXXXX` escapes, so
/// that the output is as safe to print as [`printable`]'s (JSON requires it of the
/// C0 controls only).
fn json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if hidden(c) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{json, printable};

    #[test]
    fn control_and_formatting_characters_are_printed_escaped() {
        assert_eq!(
            printable("a\u{1b}]0;title\u{7}b\tc\r\u{202e}d \\ \"é\"\nnext"),
            "a\\u{1b}]0;title\\u{7}b\\tc\\r\\u{202e}d \\ \"é\"\nnext"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json("a \"b\"\\\n\u{1}"), r#""a \"b\"\\\n\u0001""#);
        assert_eq!(
            json("\u{7f}\u{9b}\u{202e}\u{e0001}é"),
            r#""\u007f\u009b\u202e\udb40\udc01é""#
        );
    }
}
