//! HTTP/1.x without I/O: `parse` reads request heads, `write` serializes
//! responses. What to answer is `server::responses`' business.

mod parse;
mod write;

pub use parse::{Body, Head, Parsed, Reject, parse_head};
pub use write::{Redirect, Response, write_response};

pub const SERVER: &str = concat!("vault-redirector/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn status_prefix(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0 ",
            Version::Http11 => b"HTTP/1.1 ",
        }
    }
}
