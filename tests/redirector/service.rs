//! Running under a service manager, with a test socket standing in for
//! systemd: readiness, status, reload and stop notifications, watchdog
//! pings (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), and listening sockets passed
//! as descriptor 3 on (`LISTEN_FDS`, `LISTEN_PID`).

use crate::client::get;
use crate::daemon::{Daemon, SOON, binary, command};
use crate::fake_consul::{Answer, active_node, with_vault_a as consul};
use crate::tls::temp_dir;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The service manager's end of `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    address: String,
}

impl Manager {
    fn at_path() -> Manager {
        let path = temp_dir().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        Manager {
            socket,
            address: path.to_str().unwrap().to_owned(),
        }
    }

    fn abstract_name() -> Manager {
        let name = format!("vr-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        Manager {
            socket: UnixDatagram::bind_addr(&addr).unwrap(),
            address: format!("@{name}"),
        }
    }

    /// The next message, or None after `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    /// Messages until one contains `needle`; that one, or a panic naming
    /// what came instead.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + SOON;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(m) if m.contains(needle) => return m,
                Some(m) => seen.push(m),
                None => break,
            }
        }
        panic!("no {needle:?} from the daemon; got {seen:?}");
    }
}

fn notified(manager: &Manager, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut cmd = command(args);
    cmd.env("NOTIFY_SOCKET", &manager.address);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Daemon::start_command(cmd)
}

fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[test]
fn ready_status_reload_and_stopping_reach_the_manager() {
    let c = consul();
    let manager = Manager::at_path();
    let mut d = notified(&manager, &["-P", "0", &c.host_port()], &[]);
    let ready = manager.wait_for("READY=1");
    assert_eq!(
        ready,
        "READY=1\nSTATUS=Redirecting to the active Vault node vault-a:8200"
    );
    // Ready means serving.
    assert_eq!(get(d.addr, "/v1/x").code, 307);

    c.set(Answer::Json(active_node("vault-b", "10.0.0.2", 8200)));
    assert_eq!(
        manager.wait_for("STATUS="),
        "STATUS=Redirecting to the active Vault node vault-b:8200"
    );
    c.set(Answer::Json(b"[]".to_vec()));
    assert_eq!(
        manager.wait_for("STATUS="),
        "STATUS=No active Vault node known: answering 503"
    );

    let before = monotonic_usec();
    d.signal(libc::SIGHUP);
    let reloading = manager.wait_for("RELOADING=1");
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(
        before <= usec && usec <= monotonic_usec(),
        "MONOTONIC_USEC is CLOCK_MONOTONIC at the reload: {usec}, sent after {before}"
    );
    assert!(manager.wait_for("READY=1").starts_with("READY=1"));

    d.signal(libc::SIGTERM);
    assert!(manager.wait_for("STOPPING=1").starts_with("STOPPING=1"));
    assert_eq!(d.wait_exit(SOON).and_then(|s| s.code()), Some(0));
}

#[test]
fn an_abstract_notify_socket_works_too() {
    let c = consul();
    let manager = Manager::abstract_name();
    let _d = notified(&manager, &["-P", "0", &c.host_port()], &[]);
    assert!(manager.wait_for("READY=1").contains("vault-a:8200"));
}

#[test]
fn the_watchdog_is_pinged_at_half_its_interval() {
    let c = consul();
    let manager = Manager::at_path();
    // 400 ms: pings every 200 ms at the latest.
    let _d = notified(
        &manager,
        &["-P", "0", &c.host_port()],
        &[("WATCHDOG_USEC", "400000")],
    );
    manager.wait_for("READY=1");
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(manager.wait_for("WATCHDOG=1"), "WATCHDOG=1");
    }
    // Five pings at least 200 ms apart take 800 ms at the very least; the
    // upper bound only catches pings that stopped (qemu is slow).
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < SOON, "{took:?}");
}

#[test]
fn no_watchdog_pings_for_another_process_or_without_a_watchdog() {
    let c = consul();
    for env in [
        &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")][..],
        &[],
    ] {
        let manager = Manager::at_path();
        let _d = notified(&manager, &["-P", "0", &c.host_port()], env);
        manager.wait_for("READY=1");
        // Ten of the would-be intervals: silence.
        assert_eq!(manager.next(Duration::from_secs(1)), None, "{env:?}");
    }
}

/// The binary, started the way the service manager starts it: `fds` as
/// descriptors 3, 4, ..., `LISTEN_FDS` their count and `LISTEN_PID` its own
/// PID (set by a shell that then becomes the binary, keeping its PID).
fn activated(fds: &[i32], listen_pid: Option<&str>, args: &[&str]) -> Command {
    const MAX: usize = 4;
    assert!(fds.len() <= MAX);
    let pid = listen_pid.unwrap_or("$$");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("export LISTEN_PID={pid}; exec \"$0\" \"$@\""))
        .arg(binary())
        .args(args)
        .env("LISTEN_FDS", fds.len().to_string());
    let (mut given, count) = ([0i32; MAX], fds.len());
    given[..count].copy_from_slice(fds);
    // SAFETY: only async-signal-safe calls between fork and exec, no
    // allocation. Copies first, above any target, so that placing one
    // cannot close another that sits at 3 or 4.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0i32; MAX];
            for i in 0..count {
                high[i] = libc::fcntl(given[i], libc::F_DUPFD, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high[..count].iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*fd);
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_passed_listening_socket_is_served_instead_of_binding() {
    let c = consul();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let d = Daemon::start_command(activated(
        &[listener.as_raw_fd()],
        None,
        &["-P", "0", &c.host_port()],
    ));
    assert_eq!(d.addr, addr, "{}", d.log());
    assert!(
        d.log().contains(&format!(
            "Socket activation: serving the 1 listening socket(s) passed by the service manager ({addr})"
        )),
        "{}",
        d.log()
    );
    drop(listener);
    let r = get(addr, "/v1/sys/health");
    assert_eq!(
        (r.code, r.header("Location")),
        (307, Some("http://vault-a:8200/v1/sys/health"))
    );
}

#[test]
fn every_passed_socket_is_served() {
    let c = consul();
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0")
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addrs = [v4.local_addr().unwrap(), v6.local_addr().unwrap()];
    let d = Daemon::start_command(activated(
        &[v4.as_raw_fd(), v6.as_raw_fd()],
        None,
        &[&c.host_port()],
    ));
    assert!(
        d.log().contains(&format!(
            "serving the 2 listening socket(s) passed by the service manager ({}, {})",
            addrs[0], addrs[1]
        )),
        "{}",
        d.log()
    );
    drop((v4, v6));
    // Several rounds on both: neither listener starves the other.
    for _ in 0..3 {
        for addr in addrs {
            assert_eq!(get(addr, "/v1/x").code, 307, "{addr}");
        }
    }
}

#[test]
fn sockets_passed_to_another_process_are_not_ours() {
    let c = consul();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let d = Daemon::start_command(activated(
        &[listener.as_raw_fd()],
        Some("1"),
        &["-P", "0", &c.host_port()],
    ));
    assert_ne!(d.addr, listener.local_addr().unwrap());
    assert!(!d.log().contains("Socket activation"), "{}", d.log());
    assert_eq!(get(d.addr, "/v1/x").code, 307);
}

#[test]
fn a_passed_descriptor_that_is_not_listening_stops_start_up() {
    let c = consul();
    let file = std::fs::File::open("/dev/null").unwrap();
    let mut d = Daemon::spawn_command(activated(
        &[file.as_raw_fd()],
        None,
        &["-P", "0", &c.host_port()],
    ));
    let status = d.wait_exit(SOON).expect("exits");
    assert_eq!(status.code(), Some(1), "{}", d.log());
    assert!(
        d.log().contains(
            "ERROR: Socket activation: descriptor 3 passed by the service manager is not a \
             listening TCP socket"
        ),
        "{}",
        d.log()
    );
}
