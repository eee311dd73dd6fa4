//! The Consul ACL token file: re-read before every query (so a rotated
//! token is used), on the poller thread, without ever blocking it or
//! putting more than a token into a header. Never shows the token.

use std::fmt;
use std::path::Path;

/// A Consul ACL token is a 36-character UUID: a file this large is not one
/// (and would only be sent to Consul as a huge header).
const MAX_TOKEN_FILE_BYTES: u64 = 4 * 1024;

/// Why a token file was refused; never shows the token.
#[derive(Debug)]
pub enum TokenFileError {
    Io(std::io::Error),
    NotRegular,
    TooLarge,
    Empty,
    NotAToken,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFileError::Io(e) => write!(f, "{e}"),
            TokenFileError::NotRegular => f.write_str("not a regular file"),
            TokenFileError::TooLarge => {
                write!(f, "larger than {MAX_TOKEN_FILE_BYTES} bytes: not a token")
            }
            TokenFileError::Empty => f.write_str("empty"),
            TokenFileError::NotAToken => {
                f.write_str("holds characters a token cannot have (only visible ASCII)")
            }
        }
    }
}

/// Read the token file on the poller thread without ever blocking it: the
/// open is non-blocking (a FIFO without a writer would wait forever), only
/// a regular file is read, and only up to the bound.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(TokenFileError::Io)?;
    let meta = file.metadata().map_err(TokenFileError::Io)?;
    if !meta.is_file() {
        return Err(TokenFileError::NotRegular);
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::TooLarge);
    }
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(TokenFileError::Io)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::TooLarge);
    }
    token_from_file_text(&bytes)
}

/// The token in a file's bytes: surrounding whitespace (a final newline)
/// dropped; it goes into a header, so only visible ASCII. An empty file (a
/// rotation half done) is an error, not the anonymous token: the grace
/// period then keeps the node, where Consul's answer to an anonymous query
/// would drop it.
fn token_from_file_text(bytes: &[u8]) -> Result<String, TokenFileError> {
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenFileError::Empty);
    }
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err(TokenFileError::NotAToken);
    }
    Ok(String::from_utf8_lossy(token).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_holds_one_visible_ascii_token() {
        let token = |text: &[u8]| token_from_file_text(text).map_err(|e| e.to_string());
        assert_eq!(
            token(b"  3f0c9c1e-5a7b-4c3d-9e2f-1a2b3c4d5e6f\n").as_deref(),
            Ok("3f0c9c1e-5a7b-4c3d-9e2f-1a2b3c4d5e6f")
        );
        assert_eq!(token(b"\n"), Err("empty".to_owned()));
        for bad in [&b"to\r\nX-Evil: 1"[..], b"tok en", b"t\xc3\xa4"] {
            assert!(token(bad).unwrap_err().contains("cannot have"), "{bad:?}");
        }
    }
}
