//! Encrypted packed files: the whole packed file (header, manifest, every entry) encrypted
//! with age (<https://age-encryption.org/v1>) to X25519 recipients, so that only holders
//! of a matching identity can read the process's memory in it. Recipients and identities
//! are files in age's own formats (`age-keygen` makes them): one `age1…` public key, or
//! one `AGE-SECRET-KEY-1…` identity, a line, `#` comments and blank lines ignored.
//!
//! age authenticates every 64 KiB chunk and the end of the stream, so a changed or
//! truncated encrypted file is refused as it is read; the sealed manifest inside is then
//! checked as for any packed file.

use std::io::{BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::str::FromStr as _;

use crate::env::PACK_IDENTITY;
use crate::sys::fs::open_regular;

/// The most a recipients or identity file may hold: far more than any real one.
const KEY_FILE_MAX: u64 = 1 << 20;

/// The non-comment lines of a key file, bounded.
fn key_lines(path: &Path) -> Result<Vec<String>, String> {
    let name = path.display();
    let mut text = String::new();
    open_regular(path)
        .map_err(|e| e.of(&name.to_string()))?
        .take(KEY_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading {name}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// The age public keys a packed file is encrypted to, read from a recipients file.
pub(crate) struct Recipients {
    keys: Vec<age::x25519::Recipient>,
    file: String,
}

impl Recipients {
    /// The `age1…` keys of the file `path`: at least one, each valid.
    pub(crate) fn read(path: &Path) -> Result<Recipients, String> {
        let name = path.display();
        let keys = key_lines(path)?
            .iter()
            .map(|line| {
                age::x25519::Recipient::from_str(line)
                    .map_err(|e| format!("{name}: {line:?} is not an age public key (age1…): {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(format!("{name} lists no age public key (age1…)"));
        }
        Ok(Recipients {
            keys,
            file: name.to_string(),
        })
    }

    /// Encrypts all of `plain` into the new file `out`, synced.
    pub(crate) fn encrypt(&self, plain: &mut impl std::io::Read, out: &Path) -> Result<(), String> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| format!("encrypting to {}: {e}", self.file))?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| format!("creating {}: {e}", out.display()))?;
        let io = |e: std::io::Error| format!("writing {}: {e}", out.display());
        let mut writer = encryptor
            .wrap_output(std::io::BufWriter::with_capacity(1 << 20, &file))
            .map_err(io)?;
        std::io::copy(plain, &mut writer).map_err(io)?;
        writer.finish().and_then(|mut w| w.flush()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

/// The plaintext of the age file `reader`, decrypted with the identities in `identity`
/// (else in `CRAC_PACK_IDENTITY`), and its length.
pub(crate) fn decrypt(
    reader: BufReader<std::fs::File>,
    identity: Option<&Path>,
) -> Result<(age::stream::StreamReader<BufReader<std::fs::File>>, u64), String> {
    let from_env = std::env::var_os(PACK_IDENTITY).filter(|p| !p.is_empty());
    let Some(identity) = identity.map(Path::to_path_buf).or(from_env.map(Into::into)) else {
        return Err(format!(
            "it is encrypted (age): give the identity that decrypts it with --identity FILE \
             or {PACK_IDENTITY}"
        ));
    };
    let name = identity.display();
    let identities = key_lines(&identity)?
        .iter()
        .map(|line| {
            age::x25519::Identity::from_str(line)
                .map_err(|_| format!("{name}: a line is not an age identity (AGE-SECRET-KEY-1…)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let decryptor = age::Decryptor::new_buffered(reader)
        .map_err(|e| format!("it is not a readable age file: {e}"))?;
    let mut plain = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => format!(
                "it is encrypted (age) to none of the identities in {name}: decrypt it with the \
                 identity of a recipient it was packed for"
            ),
            e => format!("decrypting it with {name}: {e}"),
        })?;
    // seeking to the end authenticates the last chunk: a truncated file is refused here
    let len = plain
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("it is damaged or truncated (age): {e}"))?;
    plain
        .seek(SeekFrom::Start(0))
        .map_err(|e| format!("decrypting it: {e}"))?;
    Ok((plain, len))
}
