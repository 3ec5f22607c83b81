//! `gaia env-run`: the env file's variables reach the command, its argv arrives unchanged, its
//! exit code and its death by a signal pass through, and values are never printed.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Instant;

use support::{drain, gaia, wait_bounded};

/// A directory with an env file and a script that prints its argv (one per line, between
/// brackets) and the variable `SECRET_X`, then exits with `$EXIT_WITH` or kills itself with
/// `$KILL_WITH`.
fn fixture(env_text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test.env"), env_text).unwrap();
    let script = dir.path().join("show-argv");
    std::fs::write(
        &script,
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n\
         printf 'SECRET_X=%s\\n' \"$SECRET_X\"\n\
         if [ -n \"$KILL_WITH\" ]; then kill -\"$KILL_WITH\" $$; fi\n\
         exit \"${EXIT_WITH:-0}\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `gaia env-run --env-file test.env -- ARGS` in `dir`; returns (status, stdout, stderr).
fn env_run(dir: &tempfile::TempDir, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut c = gaia();
    c.current_dir(dir.path())
        .args(["env-run", "--env-file", "test.env", "--"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_bounded(&mut child, Instant::now(), "env-run");
    (
        status,
        String::from_utf8(out.join().unwrap()).unwrap(),
        String::from_utf8(err.join().unwrap()).unwrap(),
    )
}

#[test]
fn arguments_with_spaces_and_quotes_arrive_unchanged() {
    let dir = fixture("SECRET_X='s3cret value'\n");
    let args = [
        "./show-argv",
        "two words",
        "it's",
        "\"double\"",
        "$HOME",
        "a;b|c&&d",
        "",
        "--flag=x y",
        "*",
    ];
    let (status, out, err) = env_run(&dir, &args);
    assert_eq!(status.code(), Some(0), "{err}");
    let want: String = args[1..].iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(out, format!("{want}SECRET_X=s3cret value\n"));
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn exit_codes_pass_through() {
    let dir = fixture("EXIT_WITH=0\n");
    for code in [0, 1, 3, 42, 255] {
        let dir_env = format!("EXIT_WITH={code}\n");
        std::fs::write(dir.path().join("test.env"), &dir_env).unwrap();
        let (status, _, err) = env_run(&dir, &["./show-argv"]);
        assert_eq!(status.code(), Some(code), "{err}");
    }
}

#[test]
fn death_by_a_signal_passes_through() {
    let dir = fixture("KILL_WITH=TERM\n");
    let (status, _, _) = env_run(&dir, &["./show-argv"]);
    assert_eq!(status.code(), None);
    assert_eq!(status.signal(), Some(15));
    std::fs::write(dir.path().join("test.env"), "KILL_WITH=KILL\n").unwrap();
    let (status, _, _) = env_run(&dir, &["./show-argv"]);
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn a_missing_command_exits_127_and_names_it() {
    let dir = fixture("SECRET_X=v\n");
    let (status, _, err) = env_run(&dir, &["./no-such-program"]);
    assert_eq!(status.code(), Some(127));
    assert!(err.contains("no-such-program"), "{err}");
}

#[test]
fn parse_errors_name_the_line_never_the_value() {
    let dir = fixture("A=1\n# comment\nSECRET_X='hunter2-unterminated\n");
    let (status, out, err) = env_run(&dir, &["./show-argv"]);
    assert_eq!(status.code(), Some(2));
    assert!(out.is_empty(), "the command must not run: {out}");
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_missing_env_file_is_bad_input() {
    let dir = fixture("");
    let (status, _, err) = env_run(&dir, &[]);
    // No command after `--`: clap refuses it.
    assert_eq!(status.code(), Some(2), "{err}");
    let mut c = gaia();
    c.current_dir(dir.path())
        .args(["env-run", "--env-file", "missing.env", "--", "./show-argv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (code, out, err) = support::finish(c.spawn().unwrap(), &"env-run missing");
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("missing.env"), "{err}");
}
