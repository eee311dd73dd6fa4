//! The command line as the Python 0.2.0 tool had it: stdout/stderr, texts
//! and exit codes.

use crate::daemon::command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = command(args).output().expect("run");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let (code, stdout, stderr) = run(&["-h"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("usage: vault-redirector [-h] [-v] [-l] [-V] [-S] [-I]"),
        "{stdout}"
    );
    assert!(stdout.contains("CONSUL_HOST_PORT"));
    assert!(stderr.is_empty());
    assert_eq!(run(&["--help"]).0, 0);
}

#[test]
fn version_goes_to_stdout_and_exits_0() {
    let (code, stdout, _) = run(&["-V"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!(
            "vault-redirector {} (see <",
            env!("CARGO_PKG_VERSION")
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("> for source code)\n"), "{stdout}");
    assert_eq!(run(&["--version", "c:1"]).1, stdout);
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    for (args, text) in [
        (
            &[][..],
            "the following arguments are required: CONSUL_HOST_PORT",
        ),
        (
            &["-P", "x", "c:1"][..],
            "argument -P/--port: invalid int value: 'x'",
        ),
        (
            &["-p", "soon", "c:1"][..],
            "argument -p/--poll-interval: invalid float value: 'soon'",
        ),
        (&["--bogus", "c:1"][..], "unrecognized arguments: --bogus"),
        (&["-x", "c:1"][..], "unrecognized arguments: -x"),
        (&["c:1", "d:2"][..], "unrecognized arguments: d:2"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(stdout.is_empty());
        assert!(stderr.starts_with("usage: vault-redirector"), "{stderr}");
        assert!(
            stderr.ends_with(&format!("vault-redirector: error: {text}\n")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn inconsistent_arguments_exit_1_with_the_original_texts() {
    assert_eq!(
        run(&["consul.example"]),
        (
            1,
            String::new(),
            "ERROR: CONSUL_HOST_PORT must be in host:port or ip:port format\n".into()
        )
    );
    assert_eq!(
        run(&["-c", "/tmp/cert.pem", "127.0.0.1:8500"]),
        (
            1,
            String::new(),
            "ERROR: -k|--key-path and -c|--cert-path must be specified together\n".into()
        )
    );
    assert_eq!(run(&["127.0.0.1:8500", "--key-path=/tmp/k.pem"]).0, 1);
}
