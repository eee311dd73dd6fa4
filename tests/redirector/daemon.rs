//! The real binary, spawned on `-P 0`, with its stderr collected line by
//! line so tests can wait for log lines; killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "at once".
pub const SOON: Duration = Duration::from_secs(10);

/// The binary under test: `VAULT_REDIRECTOR_BIN` (a cross-built one, run
/// under emulation) or the one cargo built.
pub fn binary() -> String {
    std::env::var("VAULT_REDIRECTOR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_vault-redirector").to_owned())
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    cmd
}

/// The daemon's stderr so far, and whether it has ended (EOF: the process
/// and everything it shared stderr with are gone).
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    ended: bool,
}

type Lines = Arc<(Mutex<Log>, Condvar)>;

pub struct Daemon {
    child: Child,
    lines: Lines,
    pub addr: SocketAddr,
}

impl Daemon {
    /// Spawn and wait until it listens; panics with its log if it exits.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_command(command(args))
    }

    /// `start` with a command prepared by the caller (limits, environment).
    pub fn start_command(cmd: Command) -> Daemon {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut daemon = Daemon::spawn_command(cmd);
        let line = daemon
            .wait_for_log("listening on ", SOON)
            .unwrap_or_else(|| panic!("daemon did not start: {:?}\n{}", args, daemon.log()));
        let addr = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .trim_end_matches(')');
        daemon.addr = addr.parse().unwrap();
        if daemon.addr.ip().is_unspecified() {
            daemon.addr.set_ip("127.0.0.1".parse().unwrap());
        }
        daemon
    }

    /// Spawn without waiting for anything.
    pub fn spawn(args: &[&str]) -> Daemon {
        Daemon::spawn_command(command(args))
    }

    pub fn spawn_command(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-redirector");
        let stderr = child.stderr.take().unwrap();
        let lines: Lines = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            let (lock, cv) = &*sink;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lock.lock().unwrap().lines.push(line);
                cv.notify_all();
            }
            lock.lock().unwrap().ended = true;
            cv.notify_all();
        });
        Daemon {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.lines.0.lock().unwrap().lines.join("\n")
    }

    /// Wait for a log line containing `needle` (seen before or after now).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_nth_log(needle, 1, timeout)
    }

    /// Wait until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_for_nth_log(&self, needle: &str, n: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.lines;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(l) = log.lines.iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || log.ended {
                return None;
            }
            log = cv
                .wait_timeout(log, left.min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Wait for the process to exit, and for the reader thread to take its
    /// last lines (stderr's EOF); None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        if !eventually(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        }) {
            return None;
        }
        // The pipe ends at once with the process; SOON only bounds a wait
        // that a loaded machine may stretch (it was a fixed 50 ms).
        let (lock, cv) = &*self.lines;
        let log = lock.lock().unwrap();
        let (log, _) = cv.wait_timeout_while(log, SOON, |l| !l.ended).unwrap();
        assert!(log.ended, "stderr still open {SOON:?} after the exit");
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start the binary on a free port against `consul`, with `extra` options.
pub fn start_against(consul: &crate::fake_consul::FakeConsul, extra: &[&str]) -> Daemon {
    let host_port = consul.host_port();
    let mut args = vec!["-P", "0"];
    args.extend_from_slice(extra);
    args.push(&host_port);
    Daemon::start(&args)
}
