//! The usage line and the help text, laid out as Python's argparse lays out
//! the original tool's (width 78, help column 24), generated from the option
//! table.

use super::options::{ENVIRONMENT, OPTIONS, Opt, POSITIONAL, Takes};

/// argparse's layout for an 80-column terminal.
const WIDTH: usize = 78;
const HELP_COLUMN: usize = 24;
const INDENT: usize = 2;
const PROG: &str = "vault-redirector";

const DESCRIPTION: &str = "\
Redirect Hashicorp Vault (and OpenBao) client requests to the active node in
a HA cluster, as found in Consul (or, with --vault-nodes, by asking the
nodes themselves).
";

/// `usage: vault-redirector [-h] ... CONSUL_HOST_PORT`, wrapped as argparse
/// wraps it: options filled to the width, the positional on its own line.
pub fn usage() -> String {
    let prefix = format!("usage: {PROG} ");
    let indent = " ".repeat(prefix.len());
    let mut out = String::new();
    let mut line = prefix.clone();
    for opt in OPTIONS {
        let item = usage_item(opt);
        if line.len() > prefix.len() && line.len() + 1 + item.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
        } else if line.len() > prefix.len() {
            line.push(' ');
        }
        line.push_str(&item);
    }
    out.push_str(&line);
    out.push('\n');
    out.push_str(&indent);
    out.push_str(POSITIONAL.0);
    out.push('\n');
    out
}

fn usage_item(opt: &Opt) -> String {
    let key = opt.short.unwrap_or(opt.long);
    match opt.takes {
        Takes::Value { metavar, .. } => format!("[{key} {metavar}]"),
        Takes::Flag | Takes::Count => format!("[{key}]"),
    }
}

/// `-p POLL_INTERVAL, --poll-interval POLL_INTERVAL` / `-v, --verbose`.
fn invocation(opt: &Opt) -> String {
    let with_value = |key: &str| match opt.takes {
        Takes::Value { metavar, .. } => format!("{key} {metavar}"),
        Takes::Flag | Takes::Count => key.to_owned(),
    };
    match opt.short {
        Some(short) => format!("{}, {}", with_value(short), with_value(opt.long)),
        None => with_value(opt.long),
    }
}

/// One entry: the name at the indent, the help at its column (on the next
/// line when the name is too long), wrapped to the width.
fn entry(out: &mut String, name: &str, help: &str) {
    let room = HELP_COLUMN - INDENT - 2;
    out.push_str(&" ".repeat(INDENT));
    out.push_str(name);
    let mut lines = wrap(help, WIDTH - HELP_COLUMN).into_iter();
    if name.len() <= room {
        out.push_str(&" ".repeat(HELP_COLUMN - INDENT - name.len()));
        out.push_str(&lines.next().unwrap_or_default());
    }
    out.push('\n');
    for line in lines {
        out.push_str(&" ".repeat(HELP_COLUMN));
        out.push_str(&line);
        out.push('\n');
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

pub fn help() -> String {
    let mut out = format!("{}\n{DESCRIPTION}\npositional arguments:\n", usage());
    entry(&mut out, POSITIONAL.0, POSITIONAL.1);
    out.push_str("\noptions:\n");
    for opt in OPTIONS {
        entry(&mut out, &invocation(opt), opt.help);
    }
    out.push_str("\nenvironment variables (options win over them):\n");
    for (name, help) in ENVIRONMENT {
        entry(&mut out, name, help);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_and_variable_is_in_the_help() {
        let text = help();
        for opt in OPTIONS {
            let name = invocation(opt);
            assert!(text.contains(&format!("\n  {name}")), "help lacks {name}");
            assert!(usage().contains(&usage_item(opt)), "usage lacks {name}");
        }
        for (name, _) in ENVIRONMENT {
            assert!(text.contains(&format!("\n  {name}")), "help lacks {name}");
        }
    }

    #[test]
    fn the_man_page_documents_every_option_and_variable() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cross/package/vault-redirector.8"
        );
        let roff = std::fs::read_to_string(path).expect(path);
        // roff writes a hyphen-minus as `\-`.
        let page = roff.replace("\\-", "-");
        let documented = |name: &str| page.lines().any(|l| l.starts_with(".") && l.contains(name));
        for opt in OPTIONS {
            for key in opt.short.iter().chain([&opt.long]) {
                assert!(documented(key), "the man page lacks {key}");
            }
        }
        for (name, _) in ENVIRONMENT {
            assert!(documented(name), "the man page lacks {name}");
        }
    }

    #[test]
    fn the_packaged_defaults_file_lists_every_option_and_variable() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cross/package/vault-redirector.default"
        );
        let text = std::fs::read_to_string(path).expect(path);
        // Set (`NAME=`) or explained in a comment.
        let listed = |name: &str| {
            text.lines()
                .any(|l| l.split(['#', ' ', ',', '=']).any(|w| w == name))
        };
        for opt in OPTIONS {
            for key in opt.short.iter().chain([&opt.long]) {
                assert!(listed(key), "{path} lacks {key}");
            }
        }
        for (name, _) in ENVIRONMENT {
            assert!(listed(name), "{path} lacks {name}");
        }
    }

    #[test]
    fn laid_out_as_argparse_does() {
        let text = help();
        assert!(
            text.starts_with(
                "usage: vault-redirector [-h] [-v] [-l] [-V] [-S] [-I] [-p POLL_INTERVAL]\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n  -h, --help            show this help message and exit\n"));
        // Too long for the name column: the help starts on the next line.
        assert!(text.contains(
            "\n  -p POLL_INTERVAL, --poll-interval POLL_INTERVAL\n                        Consul"
        ));
        assert!(text.lines().all(|l| l.len() <= WIDTH), "{text}");
    }
}
