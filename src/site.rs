//! What the redirector answers: the 307 to the active node, the health
//! JSON, the 503 while no node is known, the 400 for targets that cannot be
//! redirected. Rebuilt from the tracker when Consul's answer changes, so a
//! request costs no formatting beyond copying bytes. No I/O besides logging.

use crate::health::{self, HEALTH_PATH, HealthView};
use crate::http::{self, Head, Redirect, Response, Version};
use crate::logging::Truncated;
use crate::tracker::Tracker;
use std::net::SocketAddr;

/// How much of a request target goes into a log line (clients send up to
/// the 16 KiB head limit).
const LOGGED_TARGET_BYTES: usize = 256;
/// How much of a method goes into a log line (any token is a method).
const LOGGED_METHOD_BYTES: usize = 32;
const NO_ACTIVE_BODY: &[u8] = b"{\"errors\":[\"no active Vault node\"]}";
const BAD_TARGET_BODY: &[u8] = b"{\"errors\":[\"request target must be a path starting with /\"]}";

pub struct Site {
    scheme: &'static str,
    consul_host_port: String,
    /// The 307 to the active node, if one is known.
    redirect: Option<Redirect>,
    health_body: Vec<u8>,
    /// The whole health response for the load balancer's usual probe
    /// (HTTP/1.1, keep-alive, not HEAD), built once per Consul answer.
    health_keep_alive: Vec<u8>,
    /// Seconds a client should wait before retrying a 503 (the poll interval).
    retry_after: String,
    /// Shutting down: every answer closes its connection.
    pub draining: bool,
}

impl Site {
    pub fn new(scheme: &'static str, consul_host_port: &str, poll_secs: f64) -> Site {
        Site {
            scheme,
            consul_host_port: consul_host_port.to_owned(),
            redirect: None,
            health_body: Vec::new(),
            health_keep_alive: Vec::new(),
            retry_after: (poll_secs.ceil().max(1.0) as u64).to_string(),
            draining: false,
        }
    }

    /// Take the tracker's current view (after every poll outcome).
    pub fn update(&mut self, tracker: &Tracker) {
        self.redirect = tracker
            .active()
            .map(|node| Redirect::new(format!("{}://{}", self.scheme, node).into_bytes()));
        self.health_body = health::render(&HealthView {
            consul_host_port: &self.consul_host_port,
            active_vault: tracker.active(),
            last_consul_poll: tracker.last_poll_time(),
            last_consul_error: tracker.last_error(),
            consul_agent: tracker.agent(),
            consul_warning: tracker.warning(),
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

    fn health_response(&self) -> Response<'_> {
        Response {
            status: if self.redirect.is_some() {
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
        let head_only = head.method == "HEAD";
        let target = head.target;
        let method = Truncated(head.method, LOGGED_METHOD_BYTES);
        let logged_target = Truncated(target, LOGGED_TARGET_BYTES);
        if target == HEALTH_PATH {
            if head.version == Version::Http11 && !close && !head_only {
                out.extend_from_slice(&self.health_keep_alive);
            } else {
                let response = self.health_response();
                http::write_response(out, head.version, &response, head_only, close);
            }
            let code = if self.redirect.is_some() { 200 } else { 503 };
            log::info!("RESPOND {code} for {method} request for {target} from {peer}");
            return true;
        }
        // Origin-form only: the authority of the Location is always the
        // active node, never something the client sent.
        if !target.starts_with('/') {
            let response = Response {
                status: "400 Bad Request",
                content_type: "application/json",
                extra_headers: &[],
                body: BAD_TARGET_BODY,
            };
            http::write_response(out, head.version, &response, head_only, true);
            log::info!("RESPOND 400 for {method} request for {logged_target} from {peer}");
            return false;
        }
        match &self.redirect {
            Some(redirect) => {
                redirect.write(out, head.version, target, close);
                if log::log_enabled!(log::Level::Info) {
                    let location = String::from_utf8_lossy(redirect.location());
                    log::info!(
                        "RESPOND 307 to {location}{logged_target} for {method} request for \
                         {logged_target} from {peer}"
                    );
                }
            }
            None => {
                let response = Response {
                    status: "503 Service Unavailable",
                    content_type: "application/json",
                    extra_headers: &[("Retry-After", &self.retry_after)],
                    body: NO_ACTIVE_BODY,
                };
                http::write_response(out, head.version, &response, head_only, close);
                log::warn!("RESPOND 503 for {method} request for {logged_target} from {peer}");
            }
        }
        true
    }
}
