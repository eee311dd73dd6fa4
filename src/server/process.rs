//! The standard `process_*` metrics, read from `/proc/self` when scraped:
//! the parsing is pure (and tested on captured text); `read` does the I/O,
//! a few small reads that only a scrape pays for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time in microseconds, written as seconds with six decimals: exact,
/// and without the float formatting code a static binary would carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Micros(pub u64);

const MICROS_PER_SECOND: u64 = 1_000_000;

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, micros) = (self.0 / MICROS_PER_SECOND, self.0 % MICROS_PER_SECOND);
        write!(f, "{secs}.{micros:06}")
    }
}

/// What Prometheus' client libraries call the process collector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub resident_memory_bytes: u64,
    /// Descriptors the process holds (not counting the one `read` lists
    /// them with).
    pub open_fds: u64,
    /// The soft limit on descriptors.
    pub max_fds: u64,
    /// User plus system CPU time.
    pub cpu_time: Micros,
    /// Unix time the process started.
    pub start_time: Micros,
}

/// The fields we use of `/proc/self/stat`, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks after boot when the process started.
    pub start_ticks: u64,
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses: fields are counted from the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    // After the name: field 3 (state) is index 0 here.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatFields {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
    })
}

/// Resident pages, the second field of `/proc/<pid>/statm`. (Not the rss
/// of `stat`: qemu's user-mode emulation, which CI runs the aarch64 build
/// under, fakes `stat` with a zero there and passes `statm` through.)
pub fn parse_statm_resident(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The boot time (`btime`, Unix seconds) from `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The kernel's units, for turning `StatFields` into seconds and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Units {
    pub ticks_per_second: u64,
    pub page_bytes: u64,
    pub boot_time: u64,
}

/// What `read` gathers, in the kernel's units.
#[derive(Debug, Clone, Copy)]
pub struct Raw {
    pub stat: StatFields,
    pub resident_pages: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// Combine what was read into the metrics' units.
pub fn stats(raw: Raw, units: Units) -> ProcessStats {
    let Raw {
        stat,
        resident_pages,
        open_fds,
        max_fds,
    } = raw;
    let hz = units.ticks_per_second.max(1);
    let ticks = |n: u64| n.saturating_mul(MICROS_PER_SECOND) / hz;
    let boot = units.boot_time.saturating_mul(MICROS_PER_SECOND);
    ProcessStats {
        resident_memory_bytes: resident_pages.saturating_mul(units.page_bytes),
        open_fds,
        max_fds,
        cpu_time: Micros(ticks(stat.cpu_ticks)),
        start_time: Micros(boot.saturating_add(ticks(stat.start_ticks))),
    }
}

/// Read the process' figures now; None where `/proc` is not mounted or
/// not readable (a sandbox): the page then leaves them out.
pub fn read() -> Option<ProcessStats> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let boot_time = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    // SAFETY: sysconf has no preconditions.
    let (hz, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let units = Units {
        ticks_per_second: u64::try_from(hz).ok()?,
        page_bytes: u64::try_from(page).ok()?,
        boot_time,
    };
    let raw = Raw {
        stat,
        resident_pages: parse_statm_resident(&statm)?,
        open_fds: open_fds()?,
        max_fds: max_fds()?,
    };
    Some(stats(raw, units))
}

/// The entries of `/proc/self/fd`, less the listing's own descriptor and
/// `.` and `..`. Through libc's readdir rather than `std::fs::read_dir`:
/// the same system calls, a few KiB less in the static binary.
fn open_fds() -> Option<u64> {
    // SAFETY: a NUL-terminated path; the stream is used only between a
    // successful opendir and its closedir, and each entry only before the
    // next readdir.
    unsafe {
        let dir = libc::opendir(c"/proc/self/fd".as_ptr());
        if dir.is_null() {
            return None;
        }
        let mut entries: u64 = 0;
        while !libc::readdir(dir).is_null() {
            entries += 1;
        }
        libc::closedir(dir);
        Some(entries.saturating_sub(3))
    }
}

fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we hand it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // rlim_t is u64 on the targets we build, but not on every libc.
    #[allow(clippy::unnecessary_cast)]
    let soft = limit.rlim_cur as u64;
    (rc == 0).then_some(soft)
}

/// Unix time of a wall-clock time, as a metric value.
pub fn unix_time(at: SystemTime) -> Micros {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Micros(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `/proc/<pid>/stat` line, with a name that has a space and a
    /// parenthesis in it.
    const STAT: &str = "4242 (vault (redir) 2) S 1 4242 4242 0 -1 4194560 312 0 0 0 \
                        150 75 0 0 20 0 2 0 123456 5242880 366 18446744073709551615 1 1 0 0 0 0 0 \
                        4096 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(StatFields {
                cpu_ticks: 225,
                start_ticks: 123456,
            })
        );
    }

    #[test]
    fn truncated_or_garbled_stat_is_none() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
        assert_eq!(parse_stat(&STAT.replace(" 150 ", " x ")), None);
    }

    #[test]
    fn resident_pages_are_statms_second_field() {
        assert_eq!(
            parse_statm_resident("1280 366 200 150 0 300 0\n"),
            Some(366)
        );
        assert_eq!(parse_statm_resident("1280"), None);
        assert_eq!(parse_statm_resident("1280 x"), None);
    }

    #[test]
    fn boot_time_comes_from_btime() {
        let text = "cpu  1 2 3\nintr 5\nbtime 1764115200\nprocesses 9\n";
        assert_eq!(parse_boot_time(text), Some(1_764_115_200));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn ticks_and_pages_become_seconds_and_bytes() {
        let raw = Raw {
            stat: parse_stat(STAT).unwrap(),
            resident_pages: parse_statm_resident("1280 366 200 150 0 300 0\n").unwrap(),
            open_fds: 7,
            max_fds: 1024,
        };
        let units = Units {
            ticks_per_second: 100,
            page_bytes: 4096,
            boot_time: 1_764_115_200,
        };
        let s = stats(raw, units);
        assert_eq!(s.resident_memory_bytes, 366 * 4096);
        assert_eq!(s.cpu_time.to_string(), "2.250000");
        assert_eq!(s.start_time.to_string(), "1764116434.560000");
        assert_eq!((s.open_fds, s.max_fds), (7, 1024));
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = read().expect("/proc is mounted where the tests run");
        assert!(s.resident_memory_bytes > 0);
        assert!(s.open_fds >= 3 && s.open_fds <= s.max_fds, "{s:?}");
        let now = unix_time(SystemTime::now()).0;
        let started = s.start_time.0;
        assert!(started <= now + MICROS_PER_SECOND && started + 86_400 * MICROS_PER_SECOND > now);
    }
}
