//! One connection's request stream, without I/O: bytes in, responses out.
//! Carries an incomplete head between reads, skips request bodies, answers
//! pipelined requests in order, and says when the connection must close.

use crate::http::{self, Body, Parsed};
use crate::server::responses::Site;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading requests.
    Open,
    /// Send what was written, then close; ignore any further input.
    Close,
}

#[derive(Default)]
pub struct Session {
    /// The start of a request head that has not fully arrived.
    partial: Vec<u8>,
    /// Bytes of the current request's body still to discard.
    body_left: u64,
    /// The session closed after a complete request with nothing after it:
    /// the client expects the close and has nothing more to send.
    clean_end: bool,
}

impl Session {
    /// Between requests: nothing buffered, no body being skipped.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.body_left == 0
    }

    /// After `Flow::Close`: true if no input is pending or expected, so the
    /// connection may close at once instead of lingering.
    pub fn ended_cleanly(&self) -> bool {
        self.clean_end
    }

    /// Part of a request head has arrived (the head deadline applies).
    pub fn in_head(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Feed bytes read from the client; append the answers to `out`.
    pub fn feed(&mut self, input: &[u8], site: &Site, peer: SocketAddr, out: &mut Vec<u8>) -> Flow {
        if self.partial.is_empty() {
            let (flow, used) = self.process(input, site, peer, out);
            if flow == Flow::Open && used < input.len() {
                self.partial.extend_from_slice(&input[used..]);
            }
            return flow;
        }
        let mut pending = std::mem::take(&mut self.partial);
        pending.extend_from_slice(input);
        let (flow, used) = self.process(&pending, site, peer, out);
        if flow == Flow::Open && used < pending.len() {
            pending.drain(..used);
            self.partial = pending;
        }
        // Otherwise the buffer is dropped: heads split across reads are rare,
        // and an idle connection should hold no memory.
        flow
    }

    /// Answer every complete request in `buf`; returns how many bytes were
    /// consumed (the rest is an incomplete head).
    fn process(
        &mut self,
        buf: &[u8],
        site: &Site,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) -> (Flow, usize) {
        let mut pos = 0;
        loop {
            if self.body_left > 0 {
                let skip = self.body_left.min((buf.len() - pos) as u64);
                self.body_left -= skip;
                pos += skip as usize;
            }
            if pos == buf.len() {
                return (Flow::Open, pos);
            }
            let head = match http::parse_head(&buf[pos..]) {
                Parsed::Partial => return (Flow::Open, pos),
                Parsed::Invalid(reject) => {
                    log::debug!("Rejecting a malformed request from {peer}: {reject:?}");
                    http::write_rejection(out, reject);
                    return (Flow::Close, buf.len());
                }
                Parsed::Complete(head) => head,
            };
            pos += head.len;
            // After a chunked body, or a body the client may hold back after
            // `Expect: 100-continue`, we cannot tell where the next request
            // starts: answer and close.
            let close = head.close
                || site.draining
                || head.body == Body::Chunked
                || (head.expect_continue && head.body != Body::None);
            let keep = site.answer(&head, peer, out, close);
            if close || !keep {
                self.clean_end = keep && head.body == Body::None && pos == buf.len();
                return (Flow::Close, buf.len());
            }
            if let Body::Length(n) = head.body {
                self.body_left = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Property tests: valid requests split anywhere get the same answers;
    //! random and mutated byte streams never panic and only ever produce
    //! well-formed responses (or a close).

    use super::*;
    use crate::discovery::tracker;

    /// xorshift64*: deterministic, no dependency, good enough to fuzz with.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn site() -> Site {
        let mut site = Site::new("http", "consul:8500", 5.0);
        site.update(&tracker::knowing("vault-a:8200"));
        site
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    const VALID: &[&str] = &[
        "GET /v1/secret/a?x=1 HTTP/1.1\r\nHost: lb\r\nX-Vault-Token: s.t\r\n\r\n",
        "PUT /v1/kv/b HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}",
        "LIST /v1/kv/ HTTP/1.1\r\n\r\n",
        "POST /v1/sys/x HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
        "GET /vault-redirector-health HTTP/1.1\r\n\r\n",
        "DELETE /v1/kv/c%2Fd HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    ];

    /// Feed `stream` in pieces cut at `cuts`; returns the output and whether
    /// the session closed.
    fn run(site: &Site, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
        let mut session = Session::default();
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
            if session.feed(&stream[start..end], site, peer(), &mut out) == Flow::Close {
                return (out, true);
            }
            start = end;
        }
        (out, false)
    }

    /// Split `out` into responses; panics unless it is exactly a sequence of
    /// well-formed HTTP/1.x responses framed by Content-Length.
    fn responses(out: &[u8]) -> Vec<(u16, Option<String>)> {
        let mut found = Vec::new();
        let mut rest = out;
        while !rest.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            let n = match r.parse(rest) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!(
                    "not a response: {other:?} in {:?}",
                    String::from_utf8_lossy(out)
                ),
            };
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length: usize = header("Content-Length")
                .expect("Content-Length")
                .parse()
                .unwrap();
            found.push((r.code.unwrap(), header("Location")));
            assert!(rest.len() >= n + length, "truncated body");
            rest = &rest[n + length..];
        }
        found
    }

    fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.below(8)).map(|_| rng.below(len + 1)).collect();
        cuts.sort_unstable();
        cuts
    }

    #[test]
    fn valid_requests_split_anywhere_get_the_same_answers() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let site = site();
        for _ in 0..2000 {
            let picks: Vec<&str> = (0..1 + rng.below(5))
                .map(|_| VALID[rng.below(VALID.len())])
                .collect();
            let stream = picks.concat();
            let (whole, closed) = run(&site, stream.as_bytes(), &[]);
            assert!(!closed);
            let cuts = random_cuts(&mut rng, stream.len());
            let (split, closed) = run(&site, stream.as_bytes(), &cuts);
            assert!(!closed);
            let answers = responses(&split);
            assert_eq!(answers.len(), picks.len());
            for (pick, (code, location)) in picks.iter().zip(&answers) {
                let target = pick.split(' ').nth(1).unwrap();
                if target == "/vault-redirector-health" {
                    assert_eq!(*code, 200);
                } else {
                    assert_eq!(*code, 307);
                    assert_eq!(
                        location.as_deref(),
                        Some(format!("http://vault-a:8200{target}").as_str())
                    );
                }
            }
            assert_eq!(split, whole, "cuts {cuts:?} in {stream:?}");
        }
    }

    #[test]
    fn random_and_mutated_bytes_only_ever_get_well_formed_answers() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let site = site();
        for round in 0..5000 {
            let mut stream: Vec<u8> = if round % 3 == 0 {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            } else {
                let mut s: Vec<u8> = (0..1 + rng.below(4))
                    .flat_map(|_| VALID[rng.below(VALID.len())].bytes())
                    .collect();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(s.len());
                    match rng.below(4) {
                        0 => s[at] = rng.next() as u8,
                        1 => s.insert(at, b"\r\n: \0\xff"[rng.below(6)]),
                        2 => {
                            s.remove(at);
                        }
                        _ => s.truncate(at),
                    }
                    if s.is_empty() {
                        break;
                    }
                }
                s
            };
            // HEAD answers carry a length but no body: keep the framing checkable.
            for w in 0..stream.len().saturating_sub(3) {
                if &stream[w..w + 4] == b"HEAD" {
                    stream[w] = b'X';
                }
            }
            let cuts = random_cuts(&mut rng, stream.len());
            let (out, _closed) = run(&site, &stream, &cuts);
            for (code, location) in responses(&out) {
                assert!([200, 307, 400, 431].contains(&code), "{code}");
                if let Some(l) = location {
                    assert!(l.starts_with("http://vault-a:8200/"), "{l}");
                }
            }
        }
    }

    #[test]
    fn an_endless_head_is_refused_at_the_limit() {
        let site = site();
        let mut session = Session::default();
        let mut out = Vec::new();
        assert_eq!(
            session.feed(b"GET / HTTP/1.1\r\nX: ", &site, peer(), &mut out),
            Flow::Open
        );
        let chunk = vec![b'a'; 4096];
        let mut flow = Flow::Open;
        for _ in 0..10 {
            flow = session.feed(&chunk, &site, peer(), &mut out);
            if flow == Flow::Close {
                break;
            }
        }
        assert_eq!(flow, Flow::Close);
        assert_eq!(responses(&out), vec![(431, None)]);
    }
}
