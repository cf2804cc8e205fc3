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

pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
}

impl Inspection {
    /// Whether `crac restore` would proceed.
    pub fn is_restorable(&self) -> bool {
        self.restorable.is_ok()
    }

    /// Why `crac restore` would refuse, if it would.
    pub(crate) fn restorable(&self) -> Result<(), &str> {
        self.restorable.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// For people: whatever the manifest holds is printed escaped (see [`printable`]).
    pub fn to_text(&self) -> String {
        printable(&self.text())
    }

    fn text(&self) -> String {
        let m = &self.manifest;
        let mut out = String::new();
        identity_lines(m, &mut out);
        let _ = writeln!(
            out,
            "size on disk  {} (resident memory when dumped: {})",
            mb(self.bytes_on_disk),
            mb(m.resident_bytes)
        );
        contents_lines(
            m,
            "mapped, not copied (copy them with the image, to the same paths)",
            &mut out,
        );
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
        format!(
            r#"{{{},"bytes_on_disk":{},"restorable":{},"refusal":{}}}"#,
            manifest_json(&self.manifest),
            self.bytes_on_disk,
            self.restorable.is_ok(),
            self.restorable
                .as_ref()
                .err()
                .map_or("null".to_string(), |why| json(why)),
        )
    }
}

/// What the image is: when it was taken, of which executable, by which CRIU on which
/// kernel, and its PID.
pub(crate) fn identity_lines(m: &Manifest, out: &mut String) {
    let created = m
        .created
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let age = m.created.elapsed().unwrap_or_default().as_secs();
    let _ = writeln!(
        out,
        "created       {} ({} ago)",
        utc_date(created),
        rough_duration(age)
    );
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
}

/// What the image holds beyond its files: heap segments (`segments_are` says how they
/// travel), CRIU options, secret variables, the plan.
pub(crate) fn contents_lines(m: &Manifest, segments_are: &str, out: &mut String) {
    if !m.segments.is_empty() {
        let total = m.segments.iter().map(|s| s.len).sum();
        let _ = writeln!(out, "heap segments {} {segments_are}:", mb(total));
        for s in &m.segments {
            let _ = writeln!(out, "  {} ({})", s.path.display(), mb(s.len));
        }
    }
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
}

/// The manifest's fields as JSON members, without the braces.
pub(crate) fn manifest_json(m: &Manifest) -> String {
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
    let strings = |items: &[String]| -> String {
        items.iter().map(|o| json(o)).collect::<Vec<_>>().join(",")
    };
    let segments: Vec<String> = m
        .segments
        .iter()
        .map(|s| {
            format!(
                r#"{{"path":{},"bytes":{},"blake3":{}}}"#,
                json(&s.path.to_string_lossy()),
                s.len,
                json(&s.digest)
            )
        })
        .collect();
    format!(
        concat!(
            r#""created_unix":{},"executable":{},"executable_sha256":{},"criu_version":{},"#,
            r#""kernel":{},"cpu_flags":[{}],"pid":{},"private_pid_namespace":{},"resident_bytes":{},"#,
            r#""restore_options":[{}],"secret_env":[{}],"segments":[{}],"plan":[{}]"#
        ),
        created.as_secs(),
        json(&m.executable.to_string_lossy()),
        json(&m.executable_sha256),
        json(&m.criu_version),
        json(&m.kernel),
        strings(&m.cpu_flags),
        m.pid,
        m.private_pid_namespace,
        m.resident_bytes,
        strings(&m.restore_options),
        strings(&m.secret_env),
        segments.join(","),
        plan.join(","),
    )
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
pub(crate) fn json(text: &str) -> String {
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

/// `secs` after the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil calendar from a
/// day count, as in Howard Hinnant's `civil_from_days`; no dependency for one line).
fn utc_date(secs: u64) -> String {
    let (days, time) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // from March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3_600,
        time / 60 % 60,
        time % 60
    )
}

/// An age in its largest whole unit: `42 s`, `5 min`, `3 h`, `12 days`.
fn rough_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3_600 => format!("{} min", secs / 60),
        3_600..86_400 => format!("{} h", secs / 3_600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::{json, printable, rough_duration, utc_date};

    #[test]
    fn creation_times_are_printed_as_utc_dates_and_ages() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(1_796_406_378), "2026-12-04 17:46:18 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(4_107_542_399), "2100-02-28 23:59:59 UTC");
        assert_eq!(rough_duration(59), "59 s");
        assert_eq!(rough_duration(3_599), "59 min");
        assert_eq!(rough_duration(7_200), "2 h");
        assert_eq!(rough_duration(86_400 * 3), "3 days");
    }

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
