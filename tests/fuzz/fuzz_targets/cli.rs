//! The command line and environment (`cli::parse_with_env`): arguments and
//! variables of any bytes. Never panics; a refusal is exit code 2 (usage)
//! or 1, with a message.
//!
//! Input: NUL-separated arguments, then (after a double NUL) NUL-separated
//! `NAME=VALUE` environment entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use vault_redirector::cli::{self, EXIT_ERROR, EXIT_USAGE, Outcome};

fuzz_target!(|data: &[u8]| {
    let (args, env) = match data.windows(2).position(|w| w == b"\0\0") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let argv: Vec<OsString> = args
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let vars: Vec<(String, String)> = env
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    let lookup = |name: &str| {
        vars.iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    if let Outcome::Fail { message, code } = cli::parse_with_env(argv, &lookup) {
        assert!(code == EXIT_USAGE || code == EXIT_ERROR, "exit code {code}");
        assert!(!message.is_empty(), "a refusal without a message");
    }
});
