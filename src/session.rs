//! One connection's request stream, without I/O: bytes in, responses out.
//! Carries an incomplete head between reads, skips request bodies, answers
//! pipelined requests in order, and says when the connection must close.

use crate::http::{self, Body, Parsed};
use crate::site::Site;
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
}

impl Session {
    /// Between requests: nothing buffered, no body being skipped.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.body_left == 0
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
                return (Flow::Close, buf.len());
            }
            if let Body::Length(n) = head.body {
                self.body_left = n;
            }
        }
    }
}
