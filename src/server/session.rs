//! One connection's request stream, without I/O: bytes in, responses out.
//! Carries an incomplete head between reads, skips request bodies, answers
//! pipelined requests in order, holds requests back once a read's answers
//! reach the caller's budget, and says when the connection must close.

use crate::http::{self, Body, Parsed};
use crate::server::responses::Responses;
use std::net::SocketAddr;

/// What answering one batch of a connection's input needs from around it.
pub struct Answering<'a> {
    pub responses: &'a Responses,
    pub peer: SocketAddr,
    /// The daemon is shutting down: every answer closes its connection.
    pub stopping: bool,
    /// Once the answers of one batch reach this many bytes, later requests
    /// are held back rather than answered (at least one is answered).
    pub out_budget: usize,
}

/// A connection's request stream: what arrived and was not answered yet,
/// and where the stream stands (in a head, in a body, held back, closing).
#[derive(Default)]
pub struct Session {
    /// Input not processed yet: the start of a request head that has not
    /// fully arrived, or requests held back (see `held_back`). At most one
    /// read after an incomplete head, so bounded by the head limit plus the
    /// caller's read size.
    partial: Vec<u8>,
    /// `partial` starts with requests not answered because the answers
    /// reached the output budget; feed more (even nothing) to answer them.
    held_back: bool,
    /// Bytes of the current request's body still to discard.
    body_left: u64,
    /// Requests answered so far: tells the caller when a new one began.
    answered: u64,
    /// The last answer closes the connection: send what was written, then
    /// close; any further input is ignored.
    closing: bool,
    /// The session closed after a complete request with nothing after it:
    /// the client expects the close and has nothing more to send.
    clean_end: bool,
}

impl Session {
    /// Between requests: nothing buffered, no body being skipped.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.body_left == 0
    }

    /// Requests already received wait for their answers to fit the budget.
    pub fn holds_back_requests(&self) -> bool {
        self.held_back
    }

    /// How many requests have been answered (a counter that only grows).
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// The last answer written closes the connection.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Once closing: true if no input is pending or expected, so the
    /// connection may close at once instead of lingering.
    pub fn ended_cleanly(&self) -> bool {
        self.clean_end
    }

    /// Part of a request has arrived, head or body, and the rest is up to
    /// the client (the request deadline applies).
    pub fn in_request(&self) -> bool {
        !self.held_back && (!self.partial.is_empty() || self.body_left > 0)
    }

    /// Feed bytes read from the client (or nothing, to answer requests held
    /// back); append the answers to `out`, up to `how.out_budget` (the rest
    /// is held back). Afterwards `is_closing` says whether to close once the
    /// answers are out.
    pub fn feed(&mut self, input: &[u8], how: &Answering<'_>, out: &mut Vec<u8>) {
        self.held_back = false;
        if self.partial.is_empty() {
            let used = self.process(input, how, out);
            if !self.closing && used < input.len() {
                self.partial.extend_from_slice(&input[used..]);
            }
            return;
        }
        let mut pending = std::mem::take(&mut self.partial);
        pending.extend_from_slice(input);
        let used = self.process(&pending, how, out);
        if !self.closing && used < pending.len() {
            pending.drain(..used);
            self.partial = pending;
        } else {
            // Heads split across reads are rare, and an idle connection
            // should hold no memory.
            self.held_back = false;
        }
    }

    /// Answer the complete requests in `buf` until `out` reaches
    /// `out_budget`; returns how many bytes were consumed (the rest is an
    /// incomplete head, or requests held back).
    fn process(&mut self, buf: &[u8], how: &Answering<'_>, out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        let start_len = out.len();
        loop {
            if self.body_left > 0 {
                let skip = self.body_left.min((buf.len() - pos) as u64);
                self.body_left -= skip;
                pos += skip as usize;
            }
            if pos == buf.len() {
                return pos;
            }
            let produced = out.len() - start_len;
            if produced > 0 && produced >= how.out_budget {
                self.held_back = true;
                return pos;
            }
            let head = match http::parse_head(&buf[pos..]) {
                Parsed::Partial => return pos,
                Parsed::Invalid(reject) => {
                    how.responses.reject(out, reject, how.peer);
                    self.closing = true;
                    return buf.len();
                }
                Parsed::Complete(head) => head,
            };
            pos += head.len;
            self.answered += 1;
            // After a chunked body, or a body the client may hold back after
            // `Expect: 100-continue`, we cannot tell where the next request
            // starts: answer and close.
            let close = head.close
                || how.stopping
                || head.body == Body::Chunked
                || (head.expect_continue && head.body != Body::None);
            let keep = how.responses.answer(&head, how.peer, out, close);
            if close || !keep {
                self.clean_end = keep && head.body == Body::None && pos == buf.len();
                self.closing = true;
                return buf.len();
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

    fn site() -> Responses {
        let mut site = Responses::new("http", Some("consul:8500"), 5.0);
        site.update(&tracker::knowing("vault-a:8200"));
        site
    }

    fn answering(site: &Responses, out_budget: usize) -> Answering<'_> {
        Answering {
            responses: site,
            peer: peer(),
            stopping: false,
            out_budget,
        }
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
    fn run(site: &Responses, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
        run_with_budget(site, stream, cuts, usize::MAX)
    }

    /// `run` with answers produced at most `budget` bytes (plus one answer)
    /// per call, the rest held back and asked for with empty feeds, the way
    /// a connection does once its output drains.
    fn run_with_budget(
        site: &Responses,
        stream: &[u8],
        cuts: &[usize],
        budget: usize,
    ) -> (Vec<u8>, bool) {
        let mut session = Session::default();
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
            let mut input = &stream[start..end];
            loop {
                let before = out.len();
                session.feed(input, &answering(site, budget), &mut out);
                if session.is_closing() {
                    return (out, true);
                }
                assert!(
                    out.len() - before <= budget.saturating_add(MAX_ANSWER_BYTES),
                    "budget {budget} overrun: {}",
                    out.len() - before
                );
                input = &[];
                if !session.holds_back_requests() {
                    break;
                }
            }
            start = end;
        }
        (out, false)
    }

    /// Longer than any answer to the requests in these tests.
    const MAX_ANSWER_BYTES: usize = 1024;

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
            let budget = rng.below(2 * MAX_ANSWER_BYTES);
            let (held, closed) = run_with_budget(&site, stream.as_bytes(), &cuts, budget);
            assert!(!closed);
            assert_eq!(held, whole, "budget {budget}, cuts {cuts:?} in {stream:?}");
        }
    }

    #[test]
    fn answers_past_the_budget_wait_and_the_input_stays_bounded() {
        let site = site();
        let mut session = Session::default();
        let batch = "G /vault-redirector-health HTTP/1.1\n\n".repeat(431);
        let mut out = Vec::new();
        let budget = 16 * 1024;
        let how = answering(&site, budget);
        session.feed(batch.as_bytes(), &how, &mut out);
        assert!(!session.is_closing());
        assert!(session.holds_back_requests());
        assert!(!session.in_request());
        assert!(out.len() < budget + MAX_ANSWER_BYTES, "{}", out.len());
        assert!(session.partial.len() < batch.len());
        let mut rounds = 1;
        while session.holds_back_requests() {
            let before = out.len();
            session.feed(&[], &how, &mut out);
            assert!(!session.is_closing());
            assert!(out.len() - before < budget + MAX_ANSWER_BYTES);
            rounds += 1;
        }
        assert_eq!(responses(&out).len(), 431);
        assert_eq!(session.answered(), 431);
        assert!(rounds > 1 && session.is_idle());
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
        let how = answering(&site, usize::MAX);
        session.feed(b"GET / HTTP/1.1\r\nX: ", &how, &mut out);
        assert!(!session.is_closing());
        let chunk = vec![b'a'; 4096];
        for _ in 0..10 {
            session.feed(&chunk, &how, &mut out);
            if session.is_closing() {
                break;
            }
        }
        assert!(session.is_closing());
        assert_eq!(responses(&out), vec![(431, None)]);
    }
}
