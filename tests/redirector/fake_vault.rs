//! In-test Vault nodes: each a std `TcpListener` (plain or TLS) answering
//! `/v1/sys/health` with a settable status code and `/v1/sys/leader` with a
//! settable leader address, able to hang (accept, never answer) or refuse
//! (stop listening, then listen again on the same port).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a node answers its health probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Code(u16),
    /// Accept and never answer.
    Hang,
}

struct State {
    health: Health,
    leader: Option<String>,
    requests: usize,
}

pub struct FakeVault {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Set to stop the accept thread (the node then refuses connections).
    stop: Option<Arc<AtomicBool>>,
}

impl FakeVault {
    pub fn start(code: u16) -> FakeVault {
        FakeVault::start_with(code, None)
    }

    pub fn start_tls(code: u16, tls: Arc<rustls::ServerConfig>) -> FakeVault {
        FakeVault::start_with(code, Some(tls))
    }

    fn start_with(code: u16, tls: Option<Arc<rustls::ServerConfig>>) -> FakeVault {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut node = FakeVault {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                health: Health::Code(code),
                leader: None,
                requests: 0,
            })),
            tls,
            stop: None,
        };
        node.serve(listener);
        node
    }

    /// `http://127.0.0.1:PORT` (or https), as listed to the redirector.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn set(&self, health: Health) {
        self.state.lock().unwrap().health = health;
    }

    pub fn set_code(&self, code: u16) {
        self.set(Health::Code(code));
    }

    /// The `leader_address` its `/v1/sys/leader` names.
    pub fn name_leader(&self, url: &str) {
        self.state.lock().unwrap().leader = Some(url.to_owned());
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// Stop listening: connections are refused until `listen_again`.
    pub fn refuse(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.store(true, Ordering::SeqCst);
            // Wake the accept call so that the thread drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
        for _ in 0..100 {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("fake Vault node {} still accepts", self.addr);
    }

    pub fn listen_again(&mut self) {
        let listener = TcpListener::bind(self.addr).unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = Some(Arc::clone(&stop));
        let (state, tls) = (Arc::clone(&self.state), self.tls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (state, tls) = (Arc::clone(&state), tls.clone());
                std::thread::spawn(move || match tls {
                    None => answer(stream, &state),
                    Some(config) => {
                        if let Ok(conn) = rustls::ServerConnection::new(config) {
                            answer(rustls::StreamOwned::new(conn, stream), &state);
                        }
                    }
                });
            }
        });
    }
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
    }
}

fn answer<S: Read + Write>(stream: S, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let (status, body) = {
        let mut state = state.lock().unwrap();
        state.requests += 1;
        match (target, state.health) {
            ("/v1/sys/health", Health::Hang) => {
                drop(state);
                std::thread::sleep(Duration::from_secs(600));
                return;
            }
            ("/v1/sys/health", Health::Code(code)) => (
                code,
                format!(
                    r#"{{"initialized":true,"sealed":{},"standby":{}}}"#,
                    code == 503,
                    code != 200
                ),
            ),
            ("/v1/sys/leader", _) => match &state.leader {
                Some(leader) => (
                    200,
                    format!(r#"{{"ha_enabled":true,"is_self":false,"leader_address":"{leader}"}}"#),
                ),
                None => (200, r#"{"ha_enabled":true,"is_self":false}"#.to_owned()),
            },
            _ => (404, r#"{"errors":[]}"#.to_owned()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let stream = reader.get_mut();
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}
