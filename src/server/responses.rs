//! Every response the redirector sends: the 307 to the active node, the
//! health JSON, the metrics page, the 503 while no node is known, the 400
//! for targets that cannot be redirected, and the 400/431 for requests that
//! cannot be parsed; and the count of each. Rebuilt from the tracker when
//! discovery's answer changes, so a request costs no formatting beyond
//! copying bytes (the metrics page is rendered when scraped). No I/O
//! besides logging and, for a scrape, reading `/proc/self`.

use crate::cli::VERSION;
use crate::discovery::tracker::{Counts, Tracker};
use crate::http::{self, Head, Redirect, Reject, Response, Version};
use crate::logging::Truncated;
use crate::server::health::{self, HEALTH_PATH, HealthView};
use crate::server::metrics::{self, Code, Counters, METRICS_PATH, Snapshot};
use crate::server::process;
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How much of a request target goes into a log line (clients send up to
/// the 16 KiB head limit).
const LOGGED_TARGET_BYTES: usize = 256;
/// How much of a method goes into a log line (any token is a method).
const LOGGED_METHOD_BYTES: usize = 32;
/// At most one warning per this interval about requests answered 503:
/// their number is driven by clients, the condition is not.
const NO_ACTIVE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

const NO_ACTIVE_BODY: &[u8] = b"{\"errors\":[\"no active Vault node\"]}";
const BAD_TARGET_BODY: &[u8] = b"{\"errors\":[\"request target must be a path starting with /\"]}";
const BAD_REQUEST_BODY: &[u8] = b"{\"errors\":[\"bad request\"]}";
const HEAD_TOO_LARGE_BODY: &[u8] = b"{\"errors\":[\"request header fields too large\"]}";

/// The answers to requests, as of discovery's latest answer: built once
/// per answer, copied per request.
pub struct Responses {
    scheme: &'static str,
    /// None when the source is the Vault nodes.
    consul_host_port: Option<String>,
    /// The 307 to the active node, if one is known.
    redirect: Option<Redirect>,
    health_body: Vec<u8>,
    /// The whole health response for the load balancer's usual probe
    /// (HTTP/1.1, keep-alive, not HEAD), built once per Consul answer.
    health_keep_alive: Vec<u8>,
    /// Seconds a client should wait before retrying a 503 (the poll interval).
    retry_after: String,
    /// A termination signal came with `--drain`: the health check says 503
    /// so that load balancers stop sending us clients.
    draining: bool,
    /// Paces the warning about 503s (a `Cell`: answering takes `&self`).
    no_active_warnings: Cell<RepeatLimiter>,
    /// `METRICS_PATH` serves the metrics page (else it is redirected).
    serve_metrics: bool,
    /// Counted here because the metrics page is one of our answers; the
    /// loop counts connections into it too.
    counters: Counters,
    /// The tracker's counts and node, as of its last change.
    discovery: Counts,
    active: Option<String>,
}

impl Responses {
    pub fn new(scheme: &'static str, consul_host_port: Option<&str>, poll_secs: f64) -> Responses {
        Responses {
            scheme,
            consul_host_port: consul_host_port.map(str::to_owned),
            redirect: None,
            health_body: Vec::new(),
            health_keep_alive: Vec::new(),
            retry_after: (poll_secs.ceil().max(1.0) as u64).to_string(),
            draining: false,
            no_active_warnings: Cell::new(RepeatLimiter::new(NO_ACTIVE_WARNING_INTERVAL)),
            serve_metrics: true,
            counters: Counters::default(),
            discovery: Counts::default(),
            active: None,
        }
    }

    /// Whether `METRICS_PATH` serves the metrics page (`--no-metrics`: it
    /// is redirected like any other path).
    pub fn serve_metrics(mut self, on: bool) -> Responses {
        self.serve_metrics = on;
        self
    }

    /// What the loop counts as it serves connections.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Take the tracker's current view (after every poll outcome).
    pub fn update(&mut self, tracker: &Tracker) {
        // Polls come at least every poll interval: they also report 503s
        // counted since the last warning once the interval has passed.
        let mut limiter = self.no_active_warnings.get();
        if let Some(summary) = limiter.flush(Instant::now()) {
            warn_no_active(summary);
        }
        self.no_active_warnings.set(limiter);
        self.discovery = tracker.counts();
        self.active = tracker.active().map(str::to_owned);
        self.redirect = tracker
            .active()
            .map(|node| Redirect::new(format!("{}://{}", self.scheme, node).into_bytes()));
        let consul = self.consul_host_port.is_some();
        self.health_body = health::render(&HealthView {
            consul_host_port: self.consul_host_port.as_deref(),
            active_vault: tracker.active(),
            last_consul_poll: tracker.last_poll_time().filter(|_| consul),
            last_consul_error: tracker.last_error().filter(|_| consul),
            consul_agent: tracker.agent().filter(|_| consul),
            consul_warning: tracker.warning().filter(|_| consul),
            draining: self.draining,
            vault_nodes: tracker.vault_nodes(),
            last_vault_error: tracker.last_error().filter(|_| !consul),
        })
        .into_bytes();
        let mut keep_alive = Vec::new();
        http::write_response(
            &mut keep_alive,
            Version::Http11,
            &self.health_response(),
            false,
            false,
        );
        self.health_keep_alive = keep_alive;
    }

    /// From now on the health check answers 503 (redirects go on).
    pub fn start_draining(&mut self, tracker: &Tracker) {
        self.draining = true;
        self.update(tracker);
    }

    fn health_code(&self) -> u16 {
        if self.draining || self.redirect.is_none() {
            503
        } else {
            200
        }
    }

    fn health_response(&self) -> Response<'_> {
        Response {
            status: if self.draining {
                "503 Draining"
            } else if self.redirect.is_some() {
                "200 OK"
            } else {
                "503 No Active Vault"
            },
            content_type: "application/json",
            extra_headers: &[("Cache-Control", "no-store")],
            body: &self.health_body,
        }
    }

    /// Append the answer to `head` to `out`. Returns false if the connection
    /// must close after it even though the client did not ask to.
    pub fn answer(
        &self,
        head: &Head<'_>,
        peer: SocketAddr,
        out: &mut Vec<u8>,
        close: bool,
    ) -> bool {
        let asked = Asked {
            head,
            peer,
            method: Truncated(head.method, LOGGED_METHOD_BYTES),
            target: Truncated(head.target, LOGGED_TARGET_BYTES),
            head_only: head.method == "HEAD",
        };
        if head.target == HEALTH_PATH {
            self.health(&asked, out, close);
            return true;
        }
        if self.serve_metrics && head.target == METRICS_PATH {
            self.metrics(&asked, out, close);
            return true;
        }
        // Origin-form only: the authority of the Location is always the
        // active node, never something the client sent.
        if !head.target.starts_with('/') {
            self.bad_target(&asked, out);
            return false;
        }
        match &self.redirect {
            Some(redirect) => self.redirect(redirect, &asked, out, close),
            None => self.no_active(&asked, out, close),
        }
        true
    }

    /// The answer to a request that could not be parsed; the connection
    /// closes after it.
    pub fn reject(&self, out: &mut Vec<u8>, reject: Reject, peer: SocketAddr) {
        log::debug!("Rejecting a malformed request from {peer}: {reject:?}");
        let (status, body, code) = match reject {
            Reject::BadRequest => ("400 Bad Request", BAD_REQUEST_BODY, Code::BadRequest),
            Reject::HeadTooLarge => (
                "431 Request Header Fields Too Large",
                HEAD_TOO_LARGE_BODY,
                Code::HeadTooLarge,
            ),
        };
        self.counters.answered(code);
        let response = Response {
            status,
            content_type: "application/json",
            extra_headers: &[],
            body,
        };
        http::write_response(out, Version::Http11, &response, false, true);
    }

    fn health(&self, asked: &Asked<'_, '_>, out: &mut Vec<u8>, close: bool) {
        let head = asked.head;
        if head.version == Version::Http11 && !close && !asked.head_only {
            out.extend_from_slice(&self.health_keep_alive);
        } else {
            let response = self.health_response();
            http::write_response(out, head.version, &response, asked.head_only, close);
        }
        let code = self.health_code();
        self.counters.answered(if code == 200 {
            Code::Ok200
        } else {
            Code::Unavailable
        });
        let Asked { method, peer, .. } = asked;
        log::info!("RESPOND {code} for {method} request for {HEALTH_PATH} from {peer}");
    }

    /// The metrics page, rendered now; the scrape itself is counted after
    /// it (a page shows the requests answered before it).
    fn metrics(&self, asked: &Asked<'_, '_>, out: &mut Vec<u8>, close: bool) {
        let page = metrics::render(&Snapshot {
            counters: &self.counters,
            discovery: self.discovery,
            active_node: self.active.as_deref(),
            version: VERSION,
            process: process::read(),
        });
        let response = Response {
            status: "200 OK",
            content_type: metrics::CONTENT_TYPE,
            extra_headers: &[("Cache-Control", "no-store")],
            body: page.as_bytes(),
        };
        let head = asked.head;
        http::write_response(out, head.version, &response, asked.head_only, close);
        self.counters.answered(Code::Ok200);
        let Asked { method, peer, .. } = asked;
        log::info!("RESPOND 200 for {method} request for {METRICS_PATH} from {peer}");
    }

    fn bad_target(&self, asked: &Asked<'_, '_>, out: &mut Vec<u8>) {
        let response = Response {
            status: "400 Bad Request",
            content_type: "application/json",
            extra_headers: &[],
            body: BAD_TARGET_BODY,
        };
        self.refuse(asked, &response, Code::BadRequest, out, true);
    }

    /// A JSON refusal of a parsed request: written, counted, and logged at
    /// info (`-v`) with the status's number.
    fn refuse(
        &self,
        asked: &Asked<'_, '_>,
        response: &Response<'_>,
        code: Code,
        out: &mut Vec<u8>,
        close: bool,
    ) {
        http::write_response(out, asked.head.version, response, asked.head_only, close);
        self.counters.answered(code);
        let Asked {
            method,
            target,
            peer,
            ..
        } = asked;
        log::info!(
            "RESPOND {} for {method} request for {target} from {peer}",
            &response.status[..3]
        );
    }

    #[inline]
    fn redirect(&self, redirect: &Redirect, asked: &Asked<'_, '_>, out: &mut Vec<u8>, close: bool) {
        redirect.write(out, asked.head.version, asked.head.target, close);
        self.counters.answered(Code::Redirect);
        if log::log_enabled!(log::Level::Info) {
            let location = String::from_utf8_lossy(redirect.location());
            let Asked {
                method,
                target,
                peer,
                ..
            } = asked;
            log::info!(
                "RESPOND 307 to {location}{target} for {method} request for {target} from {peer}"
            );
        }
    }

    fn no_active(&self, asked: &Asked<'_, '_>, out: &mut Vec<u8>, close: bool) {
        let response = Response {
            status: "503 Service Unavailable",
            content_type: "application/json",
            extra_headers: &[("Retry-After", &self.retry_after)],
            body: NO_ACTIVE_BODY,
        };
        self.refuse(asked, &response, Code::Unavailable, out, close);
        let mut limiter = self.no_active_warnings.get();
        if let Some(summary) = limiter.record(Instant::now()) {
            warn_no_active(summary);
        }
        self.no_active_warnings.set(limiter);
    }
}

/// One request as the responses see it, with what its log line shows.
struct Asked<'h, 'a> {
    head: &'h Head<'a>,
    peer: SocketAddr,
    method: Truncated<'a>,
    target: Truncated<'a>,
    head_only: bool,
}

fn warn_no_active(summary: Summary) {
    log::warn!(
        "Answered {} request(s) with 503 (no active Vault node) in the last {:.1} s",
        summary.count,
        summary.over.as_secs_f64()
    );
}

/// What a `RepeatLimiter` reports: how many times the condition occurred
/// since the previous report, over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    count: u64,
    over: Duration,
}

/// Turns a condition that repeats as often as clients like into at most
/// one report per interval, with the count of what it summarises. Pure:
/// the time is passed in.
#[derive(Debug, Clone, Copy)]
struct RepeatLimiter {
    interval: Duration,
    last_report: Option<Instant>,
    /// Occurrences not reported yet, and when the first of them happened.
    pending: u64,
    pending_since: Option<Instant>,
}

impl RepeatLimiter {
    fn new(interval: Duration) -> RepeatLimiter {
        RepeatLimiter {
            interval,
            last_report: None,
            pending: 0,
            pending_since: None,
        }
    }

    /// One occurrence at `now`: reported at once if no report was made in
    /// the last interval, else counted for the next report.
    fn record(&mut self, now: Instant) -> Option<Summary> {
        self.pending += 1;
        self.pending_since.get_or_insert(now);
        self.flush(now)
    }

    /// The report of pending occurrences, if the interval since the last
    /// report has passed.
    fn flush(&mut self, now: Instant) -> Option<Summary> {
        if self.pending == 0 {
            return None;
        }
        if let Some(last) = self.last_report {
            if now.saturating_duration_since(last) < self.interval {
                return None;
            }
        }
        let since = match (self.last_report, self.pending_since) {
            (Some(last), _) => last,
            (None, Some(first)) => first,
            (None, None) => now,
        };
        let summary = Summary {
            count: self.pending,
            over: now.saturating_duration_since(since),
        };
        self.last_report = Some(now);
        self.pending = 0;
        self.pending_since = None;
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_occurrence_is_reported_at_once() {
        let t0 = Instant::now();
        let mut limiter = RepeatLimiter::new(10 * SEC);
        assert_eq!(
            limiter.record(t0),
            Some(Summary {
                count: 1,
                over: Duration::ZERO
            })
        );
    }

    #[test]
    fn repeats_within_the_interval_are_counted_not_reported() {
        let t0 = Instant::now();
        let mut limiter = RepeatLimiter::new(10 * SEC);
        limiter.record(t0);
        for i in 1..=1000 {
            assert_eq!(limiter.record(t0 + SEC * i / 200), None);
        }
        assert_eq!(limiter.flush(t0 + 9 * SEC), None);
        assert_eq!(
            limiter.flush(t0 + 10 * SEC),
            Some(Summary {
                count: 1000,
                over: 10 * SEC
            })
        );
        // Reported once: nothing is left.
        assert_eq!(limiter.flush(t0 + 30 * SEC), None);
    }

    #[test]
    fn an_occurrence_after_the_interval_reports_what_was_suppressed() {
        let t0 = Instant::now();
        let mut limiter = RepeatLimiter::new(10 * SEC);
        limiter.record(t0);
        limiter.record(t0 + 2 * SEC);
        limiter.record(t0 + 3 * SEC);
        assert_eq!(
            limiter.record(t0 + 12 * SEC),
            Some(Summary {
                count: 3,
                over: 12 * SEC
            })
        );
        assert_eq!(limiter.record(t0 + 13 * SEC), None);
    }

    #[test]
    fn a_quiet_limiter_reports_nothing() {
        let t0 = Instant::now();
        let mut limiter = RepeatLimiter::new(10 * SEC);
        assert_eq!(limiter.flush(t0), None);
        assert_eq!(limiter.flush(t0 + 100 * SEC), None);
    }

    #[test]
    fn reports_are_at_most_one_per_interval() {
        let t0 = Instant::now();
        let mut limiter = RepeatLimiter::new(10 * SEC);
        let mut reports = 0;
        let mut total = 0;
        // 10,000 occurrences over 60 s, with a flush after each.
        for i in 0..10_000u32 {
            let now = t0 + SEC * 60 * i / 10_000;
            for summary in [limiter.record(now), limiter.flush(now)]
                .into_iter()
                .flatten()
            {
                reports += 1;
                total += summary.count;
            }
        }
        total += limiter.flush(t0 + 100 * SEC).map_or(0, |s| s.count);
        assert!(reports <= 7, "{reports} reports");
        assert_eq!(total, 10_000);
    }
}
