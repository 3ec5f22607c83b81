//! Running under a supervisor: `gaia serve --pid-file` writes its pid, `/readyz` answers once
//! it serves, and SIGTERM stops it cleanly (exit 0, the pid file removed).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gaia_testkit::TestDb;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{CHILD_BOUND, gaia, wait_bounded};

/// The status line of `GET /readyz` on `addr`, or `None` when nothing answers.
fn readyz(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.lines().next().map(str::to_owned)
}

#[test]
fn serve_writes_its_pid_is_ready_and_stops_cleanly_on_sigterm() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("gaia.pid");
    let mut c = gaia();
    c.current_dir(dir.path())
        .env("MONITOR_ADMIN_TOKEN", "test-admin-token-0123456789abcdef")
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--db",
            &db.url,
            "--pid-file",
        ])
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = c.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before serving").unwrap();
        if let Some(rest) = line.strip_prefix("gaia serving on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));

    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id());
    loop {
        if readyz(&addr).is_some_and(|s| s.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(
            started.elapsed() < CHILD_BOUND,
            "/readyz never answered 200"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).unwrap();
    let status = wait_bounded(&mut child, Instant::now(), "serve after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!pid_file.exists(), "the pid file outlived the server");
}
