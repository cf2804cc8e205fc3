//! `crac inspect FILE`: what a packed image is, and how this host compares with what it
//! needs (key, CPU features, CRIU, kernel, executable, heap segment paths), read from
//! the file's header and sealed manifest without unpacking it (`image/pack/describe.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::image::pack::describe::{self, Described, Fit, PackedContents, Seal, Verdict};
use crate::launcher::error::LaunchError;
use crate::launcher::inspect::{
    contents_lines, identity_lines, json, manifest_json, mb, printable,
};

/// A packed image, described.
#[derive(Debug)]
pub struct PackedInspection {
    file: PathBuf,
    described: Described,
    /// How this host compares, when the contents could be read.
    fits: Vec<Fit>,
}

/// Reads the head of the packed file `file` (decrypted with the age identities in
/// `identity`, else `CRAC_PACK_IDENTITY`'s, if it is encrypted) and compares this host
/// with what it needs. Fails only when `file` is not a packed image or cannot be read.
pub fn inspect_packed(
    file: &Path,
    identity: Option<&Path>,
) -> Result<PackedInspection, LaunchError> {
    let described = describe::describe(file, identity).map_err(|problem| LaunchError::Packing {
        action: "inspect",
        path: file.into(),
        problem,
    })?;
    let fits = match &described.contents {
        Ok(contents) => contents.fit_here(host_criu_version().as_deref()),
        Err(_) => Vec::new(),
    };
    Ok(PackedInspection {
        file: file.into(),
        described,
        fits,
    })
}

/// The version of the CRIU crac would run here, if one runs.
pub(crate) fn host_criu_version() -> Option<String> {
    let criu = crac_shared::criu::criu_binary().ok()?;
    crate::sys::criu::version(&criu).ok()
}

impl PackedInspection {
    /// Whether, as far as the file tells, this host can restore it once unpacked: its
    /// contents could be read and nothing this host must match is missing.
    pub fn is_restorable(&self) -> bool {
        self.refusal().is_none()
    }

    /// How this host compares with what the image needs: empty if its contents could
    /// not be read.
    pub(crate) fn fits(&self) -> &[Fit] {
        &self.fits
    }

    /// What was found of the file.
    pub(crate) fn described(&self) -> &Described {
        &self.described
    }

    /// Why it cannot be restored here, if it cannot.
    fn refusal(&self) -> Option<String> {
        if let Err(why) = &self.described.contents {
            return Some(format!("not known: {why}"));
        }
        let misses: Vec<String> = self
            .fits
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .map(|f| format!("{}: {}", f.name, f.found))
            .collect();
        (!misses.is_empty()).then(|| misses.join("; "))
    }

    /// For people: whatever the file holds is printed escaped (see [`printable`]).
    pub fn to_text(&self) -> String {
        printable(&self.text())
    }

    fn text(&self) -> String {
        let d = &self.described;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "packed file   {} ({})",
            self.file.display(),
            mb(d.file_bytes)
        );
        let _ = match d.encrypted_to {
            None => writeln!(
                out,
                "encrypted     no: whoever can read the file can read the process's memory in it"
            ),
            Some(n) => writeln!(
                out,
                "encrypted     yes, with age, to {n} recipient{}{}",
                if n == 1 { "" } else { "s" },
                if d.contents.is_ok() {
                    " (its head decrypted with the identity given)"
                } else {
                    ""
                }
            ),
        };
        match &d.contents {
            Ok(contents) => self.contents_text(contents, &mut out),
            Err(why) => {
                let _ = writeln!(out, "contents      not shown: {why}");
            }
        }
        match self.refusal() {
            None => out.push_str(
                "restorable    yes, on this host, once unpacked (as far as the file tells: \
                 free PIDs and ports are checked at restore)\n",
            ),
            Some(why) => {
                let _ = writeln!(out, "restorable    no: {why}");
            }
        }
        out
    }

    fn contents_text(&self, c: &PackedContents, out: &mut String) {
        let _ = writeln!(
            out,
            "entries       {} image files and heap segments: {} unpacked, {} packed",
            c.entries,
            mb(c.unpacked_bytes),
            mb(c.stored_bytes)
        );
        let _ = writeln!(out, "cache key     {}", c.cache_key);
        let _ = match &c.seal {
            Seal::Holds(id) => writeln!(out, "sealed with   key {id}: this host's, the seal holds"),
            Seal::OtherKey { image, host, .. } => writeln!(
                out,
                "sealed with   key {image}, not this host's ({host}): what follows is what the \
                 file says, unverified"
            ),
            Seal::NoHostKey { image, problem } => writeln!(
                out,
                "sealed with   key {image}; this host has none ({problem}): what follows is \
                 what the file says, unverified"
            ),
            Seal::Broken(problem) => writeln!(
                out,
                "sealed with   a seal that does not hold ({problem}): what follows is what the \
                 file says, unverified"
            ),
        };
        identity_lines(&c.manifest, out);
        let _ = writeln!(
            out,
            "cpu flags     {} recorded (every one must be on the restoring CPU; --json lists them)",
            c.manifest.cpu_flags.len()
        );
        let _ = writeln!(
            out,
            "resident      {} when dumped",
            mb(c.manifest.resident_bytes)
        );
        contents_lines(
            &c.manifest,
            "in the file, placed at these paths when unpacked",
            out,
        );
        out.push_str("this host     what the image needs of it:\n");
        for fit in &self.fits {
            let status = match fit.verdict {
                Verdict::Ok => "OK  ",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            let _ = writeln!(out, "  {status} {}: {}", fit.name, fit.found);
            if let Some(remedy) = &fit.remedy {
                let _ = writeln!(out, "         do: {remedy}");
            }
        }
    }

    /// For machines: one JSON object.
    pub fn to_json(&self) -> String {
        let d = &self.described;
        let mut members = vec![
            format!(r#""packed_file":{}"#, json(&self.file.to_string_lossy())),
            format!(r#""file_bytes":{}"#, d.file_bytes),
            format!(r#""encrypted":{}"#, d.encrypted_to.is_some()),
            format!(
                r#""age_recipients":{}"#,
                d.encrypted_to.map_or("null".into(), |n| n.to_string())
            ),
            format!(
                r#""unreadable":{}"#,
                d.contents
                    .as_ref()
                    .err()
                    .map_or("null".into(), |why| json(why))
            ),
        ];
        if let Ok(c) = &d.contents {
            let (seal, problem) = match &c.seal {
                Seal::Holds(_) => ("holds", None),
                Seal::OtherKey { .. } => ("other-key", None),
                Seal::NoHostKey { problem, .. } => ("no-host-key", Some(problem)),
                Seal::Broken(problem) => ("broken", Some(problem)),
            };
            members.extend([
                format!(r#""cache_key":{}"#, json(&c.cache_key)),
                format!(r#""entries":{}"#, c.entries),
                format!(r#""unpacked_bytes":{}"#, c.unpacked_bytes),
                format!(r#""stored_bytes":{}"#, c.stored_bytes),
                format!(
                    r#""sealed_with_key":{}"#,
                    c.seal.image_key().map_or("null".into(), json)
                ),
                format!(r#""seal":"{seal}""#),
                format!(
                    r#""seal_problem":{}"#,
                    problem.map_or("null".into(), |p| json(p))
                ),
                manifest_json(&c.manifest),
            ]);
        }
        let fits: Vec<String> = self
            .fits
            .iter()
            .map(|f| {
                let status = match f.verdict {
                    Verdict::Ok => "ok",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "fail",
                };
                format!(
                    r#"{{"name":{},"status":"{status}","found":{},"remedy":{}}}"#,
                    json(f.name),
                    json(&f.found),
                    f.remedy.as_deref().map_or("null".into(), json)
                )
            })
            .collect();
        let refusal = self.refusal();
        members.extend([
            format!(r#""host":[{}]"#, fits.join(",")),
            format!(r#""restorable":{}"#, refusal.is_none()),
            format!(
                r#""refusal":{}"#,
                refusal.as_deref().map_or("null".into(), json)
            ),
        ]);
        format!("{{{}}}", members.join(","))
    }
}
