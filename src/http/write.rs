//! Serializing responses into a caller's buffer: the prebuilt 307 and any
//! other response. No I/O.

use super::{SERVER, Version};
use std::io::Write;

fn status_line(out: &mut Vec<u8>, version: Version, status: &str) {
    out.extend_from_slice(version.status_prefix());
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn end_of_head(out: &mut Vec<u8>, close: bool) {
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The 307 to one active node, headers in the original's order. Built once
/// per Consul answer, so a request only adds its target between two copies.
pub struct Redirect {
    /// `scheme://node:port`: the Location without the request target.
    location: Vec<u8>,
    /// Status line, Server and `Location: scheme://node:port`, per version.
    head_http10: Vec<u8>,
    head_http11: Vec<u8>,
}

const REDIRECT_TAIL: &[u8] =
    b"\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\n\r\n";
const REDIRECT_TAIL_CLOSE: &[u8] =
    b"\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

impl Redirect {
    pub fn new(location: Vec<u8>) -> Redirect {
        let head = |version| {
            let mut out = Vec::new();
            status_line(&mut out, version, "307 Temporary Redirect");
            out.extend_from_slice(b"Location: ");
            out.extend_from_slice(&location);
            out
        };
        Redirect {
            head_http10: head(Version::Http10),
            head_http11: head(Version::Http11),
            location,
        }
    }

    pub fn location(&self) -> &[u8] {
        &self.location
    }

    /// The target is appended to the Location untouched.
    pub fn write(&self, out: &mut Vec<u8>, version: Version, target: &str, close: bool) {
        out.extend_from_slice(match version {
            Version::Http10 => &self.head_http10,
            Version::Http11 => &self.head_http11,
        });
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(if close {
            REDIRECT_TAIL_CLOSE
        } else {
            REDIRECT_TAIL
        });
    }
}

/// Any other response: status, extra headers, a body (left out for HEAD).
pub struct Response<'a> {
    pub status: &'a str,
    pub content_type: &'a str,
    pub extra_headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

pub fn write_response(
    out: &mut Vec<u8>,
    version: Version,
    r: &Response<'_>,
    head_only: bool,
    close: bool,
) {
    status_line(out, version, r.status);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(r.content_type.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in r.extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "Content-Length: {}\r\n", r.body.len());
    end_of_head(out, close);
    if !head_only {
        out.extend_from_slice(r.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Version;

    #[test]
    fn redirect_bytes() {
        let mut out = Vec::new();
        Redirect::new(b"http://vault-b:8200".to_vec()).write(
            &mut out,
            Version::Http11,
            "/v1/x?y=%20",
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nServer: {SERVER}\r\nLocation: http://vault-b:8200/v1/x?y=%20\r\n\
                 Content-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\n\r\n"
            )
        );
        let mut out = Vec::new();
        Redirect::new(b"https://[fd00::1]:8200".to_vec()).write(
            &mut out,
            Version::Http10,
            "/",
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.0 307 Temporary Redirect\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn response_head_only_keeps_the_length() {
        let r = Response {
            status: "503 Service Unavailable",
            content_type: "application/json",
            extra_headers: &[("Retry-After", "5")],
            body: b"{}",
        };
        let mut out = Vec::new();
        write_response(&mut out, Version::Http11, &r, true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Retry-After: 5\r\nContent-Length: 2\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
