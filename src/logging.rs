//! Logging: our `log::Log` on stderr at the `-v` level, the `-l` switch
//! (SIGUSR1/SIGUSR2 at run time), and the few lines printed even while
//! logging is disabled, as the original did.
//!
//! The event loop must never wait for stderr (a pipe nobody reads) nor die
//! of it (EPIPE). So a log call only formats the line and hands it to a
//! writer thread through a queue with a byte budget; when the budget is
//! spent the line is dropped and counted, and the writer reports the count
//! once it can write again. Every line is escaped here, centrally: control
//! characters from Consul or from clients cannot forge or hide lines.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Only our own crate logs: ureq's internals would otherwise show at -vv.
const OUR_TARGET: &str = "vault_redirector";
/// Bytes of formatted lines that may wait for the writer. A stuck stderr
/// costs at most this much memory; beyond it lines are dropped.
const QUEUE_BUDGET_BYTES: usize = 256 * 1024;
/// What a queued line costs beyond its text (the String and channel node).
const LINE_OVERHEAD_BYTES: usize = 64;
/// Longest message kept in a line, after escaping; the rest is cut and its
/// size given. Callers truncate what clients send well below this.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Most bytes the writer gathers into one write to stderr.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// How long exit paths wait for the writer to empty the queue.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The level chosen by `-v`, kept so that re-enabling restores it.
static CONFIGURED: AtomicUsize = AtomicUsize::new(LevelFilter::Warn as usize);
static LOGGER: OnceLock<QueueLogger> = OnceLock::new();

fn level_for(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    }
}

fn configured() -> LevelFilter {
    match CONFIGURED.load(Ordering::Relaxed) {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Start the writer thread and install the logger. Fails only if the
/// thread cannot be started.
pub fn init(verbosity: u8) -> std::io::Result<()> {
    let level = level_for(verbosity);
    CONFIGURED.store(level as usize, Ordering::Relaxed);
    let (sender, receiver) = mpsc::channel();
    let logger = LOGGER.get_or_init(|| QueueLogger {
        sender: Mutex::new(sender),
        queue: QueueState::default(),
    });
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(receiver, &logger.queue))?;
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    Ok(())
}

/// Turn logging on or off at run time (`-l`, SIGUSR1, SIGUSR2).
pub fn set_enabled(enabled: bool) {
    log::set_max_level(if enabled {
        configured()
    } else {
        LevelFilter::Off
    });
}

/// Log a line even while logging is disabled with `-l` (Consul poll errors
/// and the signal confirmations); still subject to the `-v` level.
pub fn always(level: Level, args: fmt::Arguments<'_>) {
    log::logger().log(
        &Record::builder()
            .level(level)
            .target(OUR_TARGET)
            .module_path_static(Some(OUR_TARGET))
            .args(args)
            .build(),
    );
}

/// A line without the level prefix (start-up failures: `ERROR: ...`),
/// printed whatever the level, escaped and queued like any other.
pub fn plain(args: fmt::Arguments<'_>) {
    let line = format_line(format_args!(""), args);
    match LOGGER.get() {
        Some(logger) => logger.enqueue(line),
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Wait, at most `timeout`, until every line queued so far is written:
/// for exit paths, so that the last lines are not lost.
pub fn flush(timeout: Duration) {
    if let Some(logger) = LOGGER.get() {
        logger.queue.wait_written(timeout);
    }
}

struct QueueLogger {
    /// Held only for a send, which never blocks (the channel is
    /// unbounded; the budget bounds it): lines are numbered and sent in
    /// one order, which `flush` relies on.
    sender: Mutex<Sender<Line>>,
    queue: QueueState,
}

/// A formatted line and what it is charged against the budget.
struct Line {
    text: String,
    cost: usize,
    seq: u64,
}

/// What the loggers and the writer share about the queue.
#[derive(Default)]
struct QueueState {
    /// Bytes charged by lines queued and not yet written.
    queued_bytes: AtomicUsize,
    /// Lines dropped since the writer last reported.
    dropped: AtomicU64,
    /// Sequence number of the last line queued.
    last_queued: AtomicU64,
    /// Sequence number of the last line written (or given up on).
    last_written: Mutex<u64>,
    written: Condvar,
}

impl QueueState {
    /// Charge `cost` bytes, or refuse (and count a drop) past the budget.
    fn reserve(&self, cost: usize) -> bool {
        let before = self.queued_bytes.fetch_add(cost, Ordering::AcqRel);
        if before + cost > QUEUE_BUDGET_BYTES {
            self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Lines up to number `seq`, charged `cost` bytes in all, are written.
    fn mark_written(&self, seq: u64, cost: usize) {
        self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
        let mut last = self.last_written.lock().unwrap_or_else(|e| e.into_inner());
        *last = seq;
        self.written.notify_all();
    }

    fn wait_written(&self, timeout: Duration) {
        let target = self.last_queued.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        let mut last = self.last_written.lock().unwrap_or_else(|e| e.into_inner());
        while *last < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            last = match self.written.wait_timeout(last, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl QueueLogger {
    /// Never blocks: a line that does not fit the budget is dropped.
    fn enqueue(&self, text: String) {
        let cost = text.len() + LINE_OVERHEAD_BYTES;
        if !self.queue.reserve(cost) {
            return;
        }
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        // Numbered under the lock, so the writer sees increasing numbers.
        let seq = self.queue.last_queued.fetch_add(1, Ordering::AcqRel) + 1;
        if sender.send(Line { text, cost, seq }).is_err() {
            // The writer is gone: nothing can be written any more.
            self.queue.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
        }
    }
}

impl Log for QueueLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with(OUR_TARGET) && metadata.level() <= configured()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // The original's (simple_logger's) shape: `WARN  [module] message`.
        let prefix = format_args!("{:<5} [{}] ", record.level(), record.target());
        self.enqueue(format_line(prefix, *record.args()));
    }

    fn flush(&self) {}
}

/// The writer thread: the only place that waits for stderr. Write errors
/// (EPIPE once the reader is gone) are ignored: there is nowhere to report
/// them, and the daemon must go on serving.
///
/// Lines waiting together go out in one write (up to `WRITE_BATCH_BYTES`):
/// a busy `-v` log costs one system call per batch, not per line.
fn write_lines(receiver: Receiver<Line>, queue: &QueueState) {
    let mut stderr = std::io::stderr();
    let mut batch = String::new();
    while let Ok(first) = receiver.recv() {
        batch.clear();
        let (mut last_seq, mut cost) = (first.seq, first.cost);
        batch.push_str(&first.text);
        while batch.len() < WRITE_BATCH_BYTES {
            let Ok(line) = receiver.try_recv() else { break };
            batch.push_str(&line.text);
            last_seq = line.seq;
            cost += line.cost;
        }
        let _ = stderr.write_all(batch.as_bytes());
        queue.mark_written(last_seq, cost);
        let dropped = queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = stderr.write_all(dropped_line(dropped).as_bytes());
        }
    }
}

fn dropped_line(count: u64) -> String {
    format!(
        "{:<5} [{OUR_TARGET}] {count} log lines dropped: stderr was not keeping up\n",
        Level::Warn
    )
}

/// `prefix` (ours: level and module) + the escaped, size-capped message +
/// newline.
fn format_line(prefix: fmt::Arguments<'_>, message: fmt::Arguments<'_>) -> String {
    let mut out = String::with_capacity(128);
    let _ = out.write_fmt(prefix);
    let mut escaper = Escaper {
        kept_limit: out.len() + MAX_MESSAGE_BYTES,
        out,
        message_bytes: 0,
        cut: false,
    };
    let _ = escaper.write_fmt(message);
    if escaper.cut {
        let total = escaper.message_bytes;
        let _ = write!(escaper.out, "…({total} bytes)");
    }
    escaper.out.push('\n');
    escaper.out
}

/// Escapes as the message is formatted, and stops keeping text past the
/// limit (but goes on counting it).
struct Escaper {
    out: String,
    kept_limit: usize,
    /// Bytes of the message before escaping.
    message_bytes: usize,
    cut: bool,
}

impl fmt::Write for Escaper {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.message_bytes += s.len();
        if self.cut {
            return Ok(());
        }
        for c in s.chars() {
            let before = self.out.len();
            push_escaped(&mut self.out, c);
            if self.out.len() > self.kept_limit {
                self.out.truncate(before);
                self.cut = true;
                break;
            }
        }
        Ok(())
    }
}

/// Characters that could break a line, move the cursor, recolour the
/// terminal or reorder what a reader sees: C0, DEL and C1 controls, and
/// Unicode's invisible format and bidirectional controls.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' // soft hyphen
            | '\u{061C}' // Arabic letter mark
            | '\u{180E}' // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width characters, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}' // byte order mark
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        )
}

fn push_escaped(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
        return;
    }
    match c {
        '\r' => out.push_str("\\r"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// Text escaped as log lines escape it (for unit tests of callers).
#[cfg(test)]
pub fn escaped(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// Displays at most `limit` bytes of `text` (cut at a character boundary),
/// then `…(N bytes)` with the whole length: for anything a client sends.
pub struct Truncated<'a>(pub &'a str, pub usize);

impl fmt::Display for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Truncated(text, limit) = *self;
        if text.len() <= limit {
            return f.write_str(text);
        }
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}…({} bytes)", &text[..end], text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), LevelFilter::Warn);
        assert_eq!(level_for(1), LevelFilter::Info);
        assert_eq!(level_for(2), LevelFilter::Debug);
        assert_eq!(level_for(9), LevelFilter::Debug);
    }

    #[test]
    fn lines_keep_the_original_shape() {
        let line = format_line(
            format_args!("{:<5} [{}] ", Level::Warn, OUR_TARGET),
            format_args!("Initial Vault active node: {}", "vault-a:8200"),
        );
        assert_eq!(
            line,
            "WARN  [vault_redirector] Initial Vault active node: vault-a:8200\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let forged = "boom\rFAKE: Initial Vault active node: attacker:8200\n\x1b[31m\t\x7f\u{85}";
        assert_eq!(
            escaped(forged),
            "boom\\rFAKE: Initial Vault active node: attacker:8200\\n\\u{1b}[31m\\t\\u{7f}\\u{85}"
        );
        assert_eq!(escaped("/x\u{202E}gpj.exe"), "/x\\u{202e}gpj.exe");
        for c in [
            '\u{200F}', '\u{2028}', '\u{2066}', '\u{2069}', '\u{FEFF}', '\u{61C}',
        ] {
            assert!(escaped(&c.to_string()).starts_with("\\u{"), "{c:?}");
        }
        // Printable text, non-ASCII letters included, is left alone.
        assert_eq!(escaped("/v1/é/日本?a=b\\c"), "/v1/é/日本?a=b\\c");
    }

    #[test]
    fn escaping_applies_to_the_whole_formatted_line() {
        let line = format_line(format_args!(""), format_args!("a{}b{}", "\r", '\u{202E}'));
        assert_eq!(line, "a\\rb\\u{202e}\n");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn long_messages_are_cut_with_their_size() {
        let long = "x".repeat(MAX_MESSAGE_BYTES * 3);
        let line = format_line(format_args!("P "), format_args!("{long}"));
        assert!(line.starts_with("P xxx"));
        assert!(
            line.ends_with(&format!("…({} bytes)\n", long.len())),
            "{line}"
        );
        assert!(line.len() <= 2 + MAX_MESSAGE_BYTES + 32);
        // Escapes count against the limit too, and are never cut in half.
        let controls = "\x1b".repeat(MAX_MESSAGE_BYTES);
        let line = format_line(format_args!(""), format_args!("{controls}"));
        let kept = line.split('…').next().unwrap();
        assert!(kept.len() <= MAX_MESSAGE_BYTES);
        assert!(kept.ends_with("\\u{1b}"));
    }

    #[test]
    fn truncated_cuts_at_a_character_boundary() {
        assert_eq!(Truncated("/short", 256).to_string(), "/short");
        assert_eq!(Truncated("/abcdef", 3).to_string(), "/ab…(7 bytes)");
        // 'é' is two bytes: a cut inside it keeps the character out.
        assert_eq!(Truncated("/é", 2).to_string(), "/…(3 bytes)");
    }

    #[test]
    fn the_budget_drops_and_counts_what_does_not_fit() {
        let queue = QueueState::default();
        let cost = 1000;
        let fits = QUEUE_BUDGET_BYTES / cost;
        for _ in 0..fits {
            assert!(queue.reserve(cost));
        }
        assert!(!queue.reserve(cost));
        assert!(!queue.reserve(cost));
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(queue.queued_bytes.load(Ordering::Relaxed), fits * cost);
    }
}
