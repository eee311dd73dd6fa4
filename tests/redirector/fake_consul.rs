//! An in-test Consul agent: serves `/v1/health/service/<svc>` from the
//! captured answers in `tests/data/consul/` (or any body), switchable at run time, with
//! `X-Consul-Index` and blocking-query semantics, and records requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use crate::fixtures::consul as fixture;

/// A one-node health answer, as Consul shapes it.
pub fn active_node(node: &str, address: &str, port: u16) -> Vec<u8> {
    format!(
        r#"[{{"Node":{{"Node":"{node}","Address":"{address}"}},
             "Service":{{"ID":"vault:{address}:{port}","Service":"vault","Tags":["active","initialized"],"Port":{port},"ModifyIndex":7}},
             "Checks":[{{"CheckID":"serfHealth","Status":"passing"}},{{"CheckID":"vault:{address}:{port}:vault-sealed-check","Status":"passing"}}]}}]"#
    )
    .into_bytes()
}

#[derive(Clone)]
pub enum Answer {
    Json(Vec<u8>),
    Status(u16, String),
    /// Accept the connection and never answer.
    Hang,
}

struct State {
    answer: Answer,
    index: u64,
    requests: Vec<String>,
    /// The X-Consul-Token of each request.
    tokens: Vec<Option<String>>,
    /// Default-deny ACLs: without this token, `200 []`; with another, 403.
    required_token: Option<String>,
}

pub struct FakeConsul {
    pub addr: SocketAddr,
    shared: Arc<(Mutex<State>, Condvar)>,
}

/// A Consul whose active node is vault-a (10.0.0.1:8200): most tests' world.
pub fn with_vault_a() -> FakeConsul {
    FakeConsul::serving(active_node("vault-a", "10.0.0.1", 8200))
}

impl FakeConsul {
    pub fn start(answer: Answer) -> FakeConsul {
        FakeConsul::start_with(answer, None)
    }

    /// An HTTPS agent with the given server config.
    pub fn start_tls(answer: Answer, tls: Arc<rustls::ServerConfig>) -> FakeConsul {
        FakeConsul::start_with(answer, Some(tls))
    }

    fn start_with(answer: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> FakeConsul {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new((
            Mutex::new(State {
                answer,
                index: 1,
                requests: Vec::new(),
                tokens: Vec::new(),
                required_token: None,
            }),
            Condvar::new(),
        ));
        let for_thread = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&for_thread);
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(stream, &shared),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, stream), &shared)
                    }
                });
            }
        });
        FakeConsul { addr, shared }
    }

    pub fn serving(body: Vec<u8>) -> FakeConsul {
        FakeConsul::start(Answer::Json(body))
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Change the answer; blocked queries return at once with a new index.
    pub fn set(&self, answer: Answer) {
        let (lock, cv) = &*self.shared;
        let mut state = lock.lock().unwrap();
        state.answer = answer;
        state.index += 1;
        cv.notify_all();
    }

    pub fn requests(&self) -> Vec<String> {
        self.shared.0.lock().unwrap().requests.clone()
    }

    pub fn tokens(&self) -> Vec<Option<String>> {
        self.shared.0.lock().unwrap().tokens.clone()
    }

    /// Behave like an agent with default-deny ACLs that accepts `token`.
    pub fn require_token(&self, token: &str) {
        self.shared.0.lock().unwrap().required_token = Some(token.to_owned());
    }

    pub fn request_count(&self) -> usize {
        self.shared.0.lock().unwrap().requests.len()
    }
}

fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

fn parse_wait(text: &str) -> Duration {
    let (num, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = num.parse().unwrap_or(0.0);
    match unit {
        "ms" => Duration::from_secs_f64(n / 1000.0),
        "m" => Duration::from_secs_f64(n * 60.0),
        _ => Duration::from_secs_f64(n),
    }
}

fn serve<S: Read + Write>(stream: S, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut token = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("x-consul-token") {
                        token = Some(value.trim().to_owned());
                    }
                }
            }
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("").to_owned();
    let (lock, cv) = shared;
    let mut state = lock.lock().unwrap();
    state.requests.push(request_line.trim_end().to_owned());
    state.tokens.push(token.clone());
    let denied = match (&state.required_token, &token) {
        (None, _) => None,
        (Some(want), Some(got)) if want == got => None,
        (Some(_), None) => Some(Answer::Json(b"[]".to_vec())),
        (Some(_), Some(_)) => Some(Answer::Status(403, "ACL not found".into())),
    };
    // Blocking query: hold while the index is unchanged, up to `wait`.
    if let Some(index) = query_param(&target, "index").and_then(|i| i.parse::<u64>().ok()) {
        let wait = query_param(&target, "wait").map_or(Duration::from_secs(300), parse_wait);
        let until = Instant::now() + wait;
        while state.index == index && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            state = cv.wait_timeout(state, left).unwrap().0;
        }
    }
    let answer = denied.unwrap_or_else(|| state.answer.clone());
    let index = state.index;
    drop(state);
    let stream = reader.get_mut();
    let (status, content_type, body) = match answer {
        Answer::Json(body) => ("200 OK".to_owned(), "application/json", body),
        Answer::Status(code, text) => (format!("{code} Error"), "text/plain", text.into_bytes()),
        Answer::Hang => {
            std::thread::sleep(Duration::from_secs(3600));
            return;
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nX-Consul-Index: {index}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}
