//! The manifest's seal: its last line, `manifest-seal KEY-ID MAC`, where MAC is BLAKE3 in
//! keyed mode, with a key derived from the host's image key (`key.rs`), over every byte
//! before that line. The manifest lists every image file with its digest, so the seal
//! covers the whole image: whoever edits an image and cannot read the key cannot make
//! the seal match again. KEY-ID is the key's public fingerprint, so that a refusal can
//! say which key sealed an image.

use crate::image::key::{HostKey, KeyId};

/// The seal line's key.
pub(crate) const LINE: &str = "manifest-seal";
/// What the MAC key is derived with, so that the host key serves nothing else as is.
const CONTEXT: &str = "crac-rs 2026-12 manifest seal";

/// Why a manifest's seal does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    /// No seal line where it belongs.
    #[error("it is not sealed: {0}")]
    Unsealed(String),
    /// Sealed with this host's key id, but the MAC does not match the text.
    #[error(
        "its seal does not match its text: the image was changed after the dump and resealed \
         without the key ({key_file}, id {key}), or damaged"
    )]
    Forged { key: KeyId, key_file: String },
    /// Sealed with another key.
    #[error(
        "it was sealed with key {image}, and this host's key ({key_file}) is {host}; an image \
         that travels needs the same key on both hosts: see `crac key`"
    )]
    OtherKey {
        image: String,
        host: KeyId,
        key_file: String,
    },
}

/// `body` followed by its seal line.
pub(crate) fn seal(body: String, key: &HostKey) -> String {
    let mac = blake3::keyed_hash(&key.derive(CONTEXT), body.as_bytes());
    format!("{body}{LINE} {} {}\n", key.id(), mac.to_hex())
}

/// The text before the seal line, once the seal is found to hold under `key`.
pub(crate) fn open<'t>(text: &'t str, key: &HostKey) -> Result<&'t str, SealError> {
    let (body, image_key, mac) = split(text)?;
    let key_file = key.file().display().to_string();
    if image_key != key.id().0 {
        return Err(SealError::OtherKey {
            image: image_key.to_string(),
            host: key.id(),
            key_file,
        });
    }
    // `Hash`'s equality is constant-time
    let expected = blake3::keyed_hash(&key.derive(CONTEXT), body.as_bytes());
    if blake3::Hash::from_hex(mac).ok() != Some(expected) {
        return Err(SealError::Forged {
            key: key.id(),
            key_file,
        });
    }
    Ok(body)
}

/// The id of the key `text` says it was sealed with, if it has a seal line.
pub(crate) fn key_id(text: &str) -> Option<&str> {
    split(text).ok().map(|(_, id, _)| id)
}

/// The body, key id and MAC of a sealed text.
fn split(text: &str) -> Result<(&str, &str, &str), SealError> {
    let without_newline = text
        .strip_suffix('\n')
        .ok_or_else(|| SealError::Unsealed("it does not end with a newline".into()))?;
    let start = without_newline.rfind('\n').map_or(0, |i| i + 1);
    let fields = without_newline[start..]
        .strip_prefix(LINE)
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|rest| rest.split_once(' '));
    let Some((id, mac)) = fields else {
        return Err(SealError::Unsealed(format!(
            "its last line is not `{LINE} KEY-ID SEAL`"
        )));
    };
    Ok((&text[..start], id, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "format crac-image 3\npid 42\n";

    #[test]
    fn a_sealed_text_opens_with_its_key() {
        let key = HostKey::for_tests(1);
        let sealed = seal(BODY.to_string(), &key);
        assert_eq!(open(&sealed, &key), Ok(BODY));
        assert_eq!(key_id(&sealed), Some(key.id().0.as_str()));
    }

    #[test]
    fn an_edit_resealed_without_the_key_is_refused() {
        let key = HostKey::for_tests(1);
        let edited = seal(BODY.to_string(), &key).replace("pid 42", "pid 43");
        assert!(matches!(open(&edited, &key), Err(SealError::Forged { .. })));
        // the forger's best: the right key id, and BLAKE3 without the key
        let body = "format crac-image 3\npid 43\n";
        let forged = format!(
            "{body}{LINE} {} {}\n",
            key.id(),
            blake3::hash(body.as_bytes())
        );
        let err = open(&forged, &key).unwrap_err();
        assert!(
            err.to_string()
                .contains("resealed without the key (/test/key-1, id "),
            "{err}"
        );
    }

    #[test]
    fn a_text_sealed_with_another_key_names_both() {
        let (theirs, ours) = (HostKey::for_tests(1), HostKey::for_tests(2));
        let err = open(&seal(BODY.to_string(), &theirs), &ours).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "it was sealed with key {}, and this host's key (/test/key-2) is {}; an image \
                 that travels needs the same key on both hosts: see `crac key`",
                theirs.id(),
                ours.id()
            )
        );
    }

    #[test]
    fn a_missing_or_truncated_seal_line_is_refused() {
        let key = HostKey::for_tests(1);
        let sealed = seal(BODY.to_string(), &key);
        let unsealed = [
            BODY.to_string(),
            sealed.trim_end().to_string(),
            sealed[..sealed.len() - 10].to_string() + "\n",
            format!("{BODY}{LINE} {}\n", key.id()),
            format!("{BODY}manifest-blake3 {}\n", blake3::hash(BODY.as_bytes())),
        ];
        for text in unsealed {
            assert!(open(&text, &key).is_err(), "{text}");
        }
        assert!(matches!(
            open(BODY, &key),
            Err(SealError::Unsealed(problem)) if problem.contains("last line is not")
        ));
    }
}
