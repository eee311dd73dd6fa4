//! The request stream of one connection through the daemon's `Session`:
//! arbitrary bytes, cut into arbitrary reads, with an arbitrary output
//! budget (so pipelined requests are held back and resumed). Never panics;
//! the output is only ever a sequence of well-formed responses, each a 200,
//! 307 (to the active node), 400 or 431, and at most about one budget per
//! feed.
//!
//! Input: byte 0 picks the budget, bytes 1-2 seed the cut points, the rest
//! is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_redirector::fuzzing::{LOCATION_PREFIX, RequestStream};

/// Budget step per unit of byte 0 (0 means unlimited).
const BUDGET_STEP_BYTES: usize = 64;
/// Longer than any single answer (a 307 with the longest target allowed).
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Most reads one input is cut into.
const MAX_CUTS: usize = 16;
/// Most empty feeds to drain held-back requests (each answers at least one).
const MAX_DRAINS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let budget = match data[0] as usize {
        0 => usize::MAX,
        n => n * BUDGET_STEP_BYTES,
    };
    let stream = &data[3..];
    let cuts = cut_points(u16::from_le_bytes([data[1], data[2]]), stream.len());
    let Some(mut session) = RequestStream::new() else {
        panic!("the harness's tracker refused its active node");
    };
    let mut out = Vec::new();
    let mut start = 0;
    'reads: for end in cuts.into_iter().chain(std::iter::once(stream.len())) {
        let mut input = &stream[start..end];
        for _ in 0..MAX_DRAINS {
            let before = out.len();
            let fed = session.feed(input, budget, &mut out);
            assert!(
                out.len() - before <= budget.saturating_add(MAX_ANSWER_BYTES),
                "budget {budget} overrun by one feed: {}",
                out.len() - before
            );
            if fed.closing {
                break 'reads;
            }
            if !fed.held_back {
                break;
            }
            input = &[];
        }
        start = end;
    }
    check_responses(&out);
});

/// Up to `MAX_CUTS` sorted cut points in `0..=len`, from a small LCG.
fn cut_points(seed: u16, len: usize) -> Vec<usize> {
    let mut state = u32::from(seed);
    let mut next = || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (state >> 16) as usize
    };
    let count = next() % (MAX_CUTS + 1);
    let mut cuts: Vec<usize> = (0..count).map(|_| next() % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// `out` must be exactly a sequence of well-formed HTTP/1.x responses framed
/// by Content-Length (an answer to HEAD has the length but no body).
fn check_responses(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "not a response: {other:?} in {:?}",
                String::from_utf8_lossy(out)
            ),
        };
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let code = response.code.unwrap_or(0);
        assert!([200, 307, 400, 431].contains(&code), "status {code}");
        if code == 307 {
            let location = header("Location").expect("a 307 without Location");
            assert!(
                location.starts_with(LOCATION_PREFIX),
                "Location {location:?}"
            );
        }
        let length: usize = header("Content-Length")
            .expect("no Content-Length")
            .parse()
            .expect("bad Content-Length");
        let after_head = &rest[head_len..];
        let bodyless = after_head.is_empty() || after_head.starts_with(b"HTTP/1.");
        let body_len = if bodyless && length > 0 { 0 } else { length };
        assert!(after_head.len() >= body_len, "truncated body");
        rest = &after_head[body_len..];
    }
}
