//! What the CLI's integration tests share: the `gaia` binary started with a clean
//! environment, a `gaia serve` child that is up once its `/healthz` answers, and bounded waits
//! on children whose pipes are drained.
//!
//! Each test file is its own crate and uses only part of this module.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gaia_testkit::TestDb;

pub mod mcp;

/// The binary under test.
pub const GAIA: &str = env!("CARGO_BIN_EXE_gaia");

/// Generous "does not hang" bound for one child process.
pub const CHILD_BOUND: Duration = Duration::from_secs(60);

/// Variables of the prototype that the configuration reads besides `GAIA_*` (each also as
/// `NAME_FILE`). `prototype_vars_match_the_configuration` in `cli.rs` checks this list against
/// `src/config.rs`.
pub const PROTOTYPE_VARS: &[&str] = &[
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_NOTIFY_CHAT",
    "CHAT_ID",
    "TELEGRAM_APPROVER_IDS",
    "TELEGRAM_API_URL",
    "AUTO_REQUEUE_EVERY",
    "ALLOW_COMMAND_EXECUTION",
    "MONITOR_ADMIN_TOKEN",
    "AUTO_REQUEUE_MAX_RETRIES",
    "AUTO_REQUEUE_MAX_AGE_HOURS",
    "AUTO_REQUEUE_MAX_PER_RUN",
];

/// Whether a variable of the test's own environment would configure the child.
fn configures_gaia(var: &str) -> bool {
    let base = var.strip_suffix("_FILE").unwrap_or(var);
    var.starts_with("GAIA_") || PROTOTYPE_VARS.contains(&base)
}

/// Removes every inherited variable that configures Gaia, so that a child sees only what the
/// test sets.
pub fn clean_env(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if configures_gaia(&k) {
            c.env_remove(k);
        }
    }
    c
}

/// A `gaia` command with a clean environment.
pub fn gaia() -> Command {
    let mut c = Command::new(GAIA);
    clean_env(&mut c);
    c
}

/// Reads a child's pipe to the end on a thread, so that large output cannot block the child.
pub fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for a child to exit, bounded by [`CHILD_BOUND`] from `started`: a hung child is killed
/// and fails the test instead of hanging it.
pub fn wait_bounded(child: &mut Child, started: Instant, what: &str) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > CHILD_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gaia {what} did not finish within {CHILD_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a child to completion (bounded) while draining its pipes. Returns (exit code, stdout,
/// stderr); a child killed by a signal has code -1.
pub fn finish(mut child: Child, what: &dyn std::fmt::Debug) -> (i32, String, String) {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_bounded(&mut child, Instant::now(), &format!("{what:?}"));
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout.join().unwrap()).unwrap(),
        String::from_utf8(stderr.join().unwrap()).unwrap(),
    )
}

/// Runs `gaia --db DB ARGS` with `envs` set, in a scratch directory, to completion: (exit
/// code, stdout, stderr).
pub fn run_on(db: &str, envs: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = gaia();
    c.current_dir(dir.path())
        .envs(envs.iter().copied())
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(c.spawn().unwrap(), &args)
}

/// [`run_on`] that must succeed: its stdout.
pub fn ok_on(db: &str, envs: &[(&str, &str)], args: &[&str]) -> String {
    let (code, out, err) = run_on(db, envs, args);
    assert_eq!(code, 0, "gaia {args:?}: {err}");
    out
}

/// A child that is killed and reaped when dropped, so a failing assertion leaves nothing
/// running; [`Killed::kill`] kills it on purpose (SIGKILL) and reaps it.
pub struct Killed(pub Child);

impl Killed {
    /// SIGKILL, and reaps the process.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `gaia serve` child on a test database, for remote mode. It is killed and reaped when
/// dropped, so that a failing assertion leaves no server behind.
pub struct Server {
    child: Child,
    pub url: String,
    /// The admin token it was started with (`MONITOR_ADMIN_TOKEN`).
    pub token: String,
    /// Its working directory, which also holds its stderr (`server.log`).
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `gaia serve --bind 127.0.0.1:0` on `db` with a random admin token from
    /// `MONITOR_ADMIN_TOKEN` and `env`, and waits until `/healthz` answers.
    pub fn start(db: &TestDb, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("test-admin-{:032x}", rand::random::<u128>());
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut c = gaia();
        c.env("MONITOR_ADMIN_TOKEN", &token)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--db", &db.url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut server = Self {
            child,
            url: String::new(),
            token,
            dir,
        };
        let deadline = Instant::now() + CHILD_BOUND;
        server.url = server.wait_for_url(stdout, deadline);
        let addr = server.url.trim_start_matches("http://").to_owned();
        while !healthz(&addr) {
            assert!(
                Instant::now() < deadline,
                "/healthz never answered: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Reads stdout on a thread (it keeps draining until the server exits) until the line
    /// naming the address.
    fn wait_for_url(&self, stdout: std::process::ChildStdout, deadline: Instant) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("gaia serving on ") {
                        return rest.split_whitespace().next().unwrap().to_owned();
                    }
                }
                Err(_) => panic!("gaia serve did not start: {}", self.log()),
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `GET /healthz` on `addr` answers 200.
pub fn healthz(addr: &str) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}
