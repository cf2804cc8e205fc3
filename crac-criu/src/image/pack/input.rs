//! A packed file's bytes as the unpacker reads them: the file itself, or, when it is
//! encrypted (`crac pack --encrypt-to`, `encrypt.rs`), its plaintext as age decrypts and
//! authenticates it chunk by chunk.

use std::io::{BufReader, Read};
use std::path::Path;

use crate::sys::fs::open_regular;

/// How an age file begins.
pub(crate) const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// A packed file opened for reading: its (plaintext) bytes and their length.
pub(crate) struct Input {
    pub(crate) reader: Box<dyn Read>,
    pub(crate) len: u64,
}

/// Opens the packed file `file`, decrypting it with the age identities in `identity` if
/// it is encrypted.
pub(crate) fn open(file: &Path, identity: Option<&Path>) -> Result<Input, String> {
    let opened = open_regular(file).map_err(|e| e.of("it"))?;
    let len = opened.metadata().map_err(|e| e.to_string())?.len();
    let mut reader = BufReader::with_capacity(1 << 20, opened);
    let start = std::io::BufRead::fill_buf(&mut reader).map_err(|e| format!("reading it: {e}"))?;
    if !start.starts_with(AGE_MAGIC) {
        return Ok(Input {
            reader: Box::new(reader),
            len,
        });
    }
    decrypted(reader, identity)
}

#[cfg(feature = "encrypt")]
fn decrypted(reader: BufReader<std::fs::File>, identity: Option<&Path>) -> Result<Input, String> {
    let (reader, len) = super::encrypt::decrypt(reader, identity)?;
    Ok(Input {
        reader: Box::new(BufReader::with_capacity(1 << 20, reader)),
        len,
    })
}

#[cfg(not(feature = "encrypt"))]
fn decrypted(_reader: BufReader<std::fs::File>, _identity: Option<&Path>) -> Result<Input, String> {
    Err("it is encrypted (age), and this crac was built without the `encrypt` feature".into())
}
