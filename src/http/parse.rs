//! Parsing one request head under size limits, and working out how its
//! body is framed (rejecting smuggling shapes). No I/O.

use super::Version;
use std::mem::MaybeUninit;

/// A request head larger than this is answered 431 and the connection closed.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More header lines than this are answered 431 (httparse needs a fixed array).
pub const MAX_HEADERS: usize = 100;

/// How the request's body, if any, is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    /// `Transfer-Encoding: chunked`: we answer and close instead of decoding.
    Chunked,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: Version,
    /// Bytes the head occupies in the buffer, blank line included.
    pub len: usize,
    pub body: Body,
    /// `Connection: close`, or HTTP/1.0 (answered, then closed).
    pub close: bool,
    /// `Expect: 100-continue`: the client may not send the body after our answer.
    pub expect_continue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: not HTTP/1.x, bad bytes, or ambiguous body framing.
    BadRequest,
    /// 431: head over `MAX_HEAD_BYTES` or more than `MAX_HEADERS` lines.
    HeadTooLarge,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Complete(Head<'a>),
    /// Need more bytes; `buf` is still within the limits.
    Partial,
    Invalid(Reject),
}

/// Parse the request head at the start of `buf`: complete (with how its
/// body is framed and whether the connection closes after it), partial
/// (more bytes needed, still within the limits), or invalid (400/431).
pub fn parse_head(buf: &[u8]) -> Parsed<'_> {
    // Uninitialised: filling 100 empty headers per request was a quarter of
    // the loop's own instructions.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Parsed::Invalid(Reject::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(Reject::HeadTooLarge),
        Err(_) => return Parsed::Invalid(Reject::BadRequest),
    };
    if len > MAX_HEAD_BYTES {
        return Parsed::Invalid(Reject::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid(Reject::BadRequest);
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let framing = match Framing::read(req.headers) {
        Ok(f) => f,
        Err(reject) => return Parsed::Invalid(reject),
    };
    Parsed::Complete(Head {
        method,
        target,
        version,
        len,
        body: framing.body,
        close: framing.close || version == Version::Http10,
        expect_continue: framing.expect_continue,
    })
}

/// What the headers say about the body and the connection.
struct Framing {
    body: Body,
    close: bool,
    expect_continue: bool,
}

impl Framing {
    fn read(headers: &[httparse::Header<'_>]) -> Result<Framing, Reject> {
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        let mut close = false;
        let mut expect_continue = false;
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(h.value).ok_or(Reject::BadRequest)?;
                // Differing duplicates are a smuggling vector (RFC 9112 6.3).
                if length.is_some_and(|prev| prev != n) {
                    return Err(Reject::BadRequest);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if transfer_encoding || !trimmed(h.value).eq_ignore_ascii_case(b"chunked") {
                    return Err(Reject::BadRequest);
                }
                transfer_encoding = true;
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") {
                close |= has_token(h.value, b"close");
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue |= trimmed(h.value).eq_ignore_ascii_case(b"100-continue");
            }
        }
        let body = match (length, chunked) {
            (Some(_), true) => return Err(Reject::BadRequest),
            (_, true) => Body::Chunked,
            (Some(0) | None, false) => Body::None,
            (Some(n), false) => Body::Length(n),
        };
        Ok(Framing {
            body,
            close,
            expect_continue,
        })
    }
}

fn trimmed(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Digits only (no sign, no list): anything else is ambiguous framing.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = trimmed(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trimmed(t).eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head<'_> {
        match parse_head(raw.as_bytes()) {
            Parsed::Complete(h) => h,
            other => panic!("{raw:?} -> {other:?}"),
        }
    }

    fn rejected(raw: &[u8]) -> Reject {
        match parse_head(raw) {
            Parsed::Invalid(r) => r,
            other => panic!("{raw:?} -> {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let raw = "GET /v1/secret/foo?list=true HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let h = head(raw);
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/v1/secret/foo?list=true");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.len, raw.len() - 4);
        assert_eq!(h.body, Body::None);
        assert!(!h.close && !h.expect_continue);
    }

    #[test]
    fn any_method_token() {
        assert_eq!(head("LIST /v1/x HTTP/1.1\r\n\r\n").method, "LIST");
        assert_eq!(head("frob /v1/x HTTP/1.1\r\n\r\n").method, "frob");
    }

    #[test]
    fn http10_and_connection_close_close() {
        assert!(head("GET / HTTP/1.0\r\n\r\n").close);
        assert_eq!(head("GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
        assert!(head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").close);
        assert!(!head("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n").close);
    }

    #[test]
    fn body_framing() {
        assert_eq!(
            head("PUT / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").body,
            Body::Length(12)
        );
        assert_eq!(
            head("PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body,
            Body::None
        );
        assert_eq!(
            head("PUT / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").body,
            Body::Length(5)
        );
        assert_eq!(
            head("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").body,
            Body::Chunked
        );
        assert!(
            head("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        for raw in [
            "PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(rejected(raw.as_bytes()), Reject::BadRequest, "{raw:?}");
        }
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(
            rejected(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Reject::BadRequest
        );
        assert_eq!(
            rejected(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Reject::BadRequest
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Reject::BadRequest
        );
        assert_eq!(rejected(b"GET /\x01 HTTP/1.1\r\n\r\n"), Reject::BadRequest);
    }

    #[test]
    fn partial_until_the_limit() {
        assert_eq!(parse_head(b"GET /v1/x HTTP/1.1\r\nHost"), Parsed::Partial);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 1, b'a');
        assert_eq!(rejected(&big), Reject::HeadTooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(rejected(many.as_bytes()), Reject::HeadTooLarge);
    }
}
