//! Logging: `log` + `simple_logger` on stderr at the `-v` level, the `-l`
//! switch (SIGUSR1/SIGUSR2 at run time), and the few lines that are printed
//! even while logging is disabled, as the original did.

use log::{Level, LevelFilter, Record};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The level chosen by `-v`, kept so that re-enabling restores it.
static CONFIGURED: AtomicUsize = AtomicUsize::new(LevelFilter::Warn as usize);

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

pub fn init(verbosity: u8) {
    let level = level_for(verbosity);
    CONFIGURED.store(level as usize, Ordering::Relaxed);
    // Only our own crate logs: ureq's internals would otherwise show at -vv.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(LevelFilter::Off)
        .with_module_level("vault_redirector", level)
        .init();
    log::set_max_level(level);
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
pub fn always(level: Level, args: std::fmt::Arguments<'_>) {
    log::logger().log(
        &Record::builder()
            .level(level)
            .target("vault_redirector")
            .module_path_static(Some("vault_redirector"))
            .args(args)
            .build(),
    );
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
}
