//! Runs an approved command: its argv directly (never through a shell), in its recorded cwd,
//! with an environment built from an allow-list, in its own process group so that a timeout
//! kills everything it started, and with stdout and stderr captured up to a bound (the tail is
//! kept, truncation is marked).
//!
//! This is blocking code (threads and `std::process`); async callers run it with
//! `spawn_blocking`.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use gaia_core::commands::{CommandSpec, Execution};

/// Variables passed through from Gaia's own environment unless configured otherwise.
pub const DEFAULT_ENV_ALLOW: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR",
];

/// Bounds of one execution.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept (each); the tail is kept.
    pub max_output: usize,
    /// Names of environment variables passed through.
    pub env_allow: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            max_output: 64 * 1024,
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The tail of a stream, bounded.
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    truncated: bool,
}

fn drain<R: Read + Send + 'static>(
    mut r: R,
    max: usize,
) -> (Arc<Mutex<Tail>>, thread::JoinHandle<()>) {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let sink = tail.clone();
    let handle = thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                    t.buf.extend_from_slice(&chunk[..n]);
                    if t.buf.len() > max {
                        let cut = t.buf.len() - max;
                        t.buf.drain(..cut);
                        t.truncated = true;
                    }
                }
            }
        }
    });
    (tail, handle)
}

fn take(tail: &Arc<Mutex<Tail>>) -> (String, bool) {
    let t = tail.lock().unwrap_or_else(|e| e.into_inner());
    // Stores keep no NUL and at most a bounded tail; invalid UTF-8 grew into replacement
    // characters, so the text may need cutting again.
    let (text, cut) = gaia_core::text::storable_output(
        &String::from_utf8_lossy(&t.buf),
        gaia_core::commands::MAX_STORED_OUTPUT_BYTES,
    );
    (text, t.truncated || cut)
}

#[cfg(unix)]
fn kill_group(pid: u32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: u32) {}

/// Runs `spec` in `cwd` within `limits`. Never panics: a command that cannot start is an
/// [`Execution`] with `error` set.
pub fn run(spec: &CommandSpec, cwd: Option<&str>, limits: &Limits, executor: &str) -> Execution {
    let started_at = Utc::now();
    let started = Instant::now();
    let failed = |error: String| Execution {
        executor: executor.to_owned(),
        dry_run: false,
        started_at,
        exit_code: None,
        timed_out: false,
        duration_ms: 0,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        error: Some(error),
    };
    let argv = match argv_of(spec) {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let mut child = match command(argv, cwd, limits).spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {}: {e}", argv[0])),
    };
    let out = Pipe::drain(child.stdout.take(), limits.max_output);
    let err = Pipe::drain(child.stderr.take(), limits.max_output);
    let (status, timed_out) = wait(&mut child, [&out, &err], started + limits.timeout);
    let (stdout, stdout_truncated) = out.finish();
    let (stderr, stderr_truncated) = err.finish();
    Execution {
        executor: executor.to_owned(),
        dry_run: false,
        started_at,
        exit_code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        error: None,
    }
}

/// The argv Gaia runs; shell text and empty commands are refused with the reason.
fn argv_of(spec: &CommandSpec) -> Result<&[String], String> {
    match spec {
        CommandSpec::Argv(a) if !a.is_empty() => Ok(a),
        CommandSpec::Argv(_) => Err("the command is empty".into()),
        CommandSpec::Shell(_) => Err(
            "shell text is run by the agent that asked for it; Gaia itself runs argv commands only"
                .into(),
        ),
    }
}

/// The process to start: no shell, no stdin, only the allowed environment, piped output, in
/// its own process group.
fn command(argv: &[String], cwd: Option<&str>, limits: &Limits) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in &limits.env_allow {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own group: on timeout the whole group, grandchildren included, is killed.
        cmd.process_group(0);
    }
    cmd
}

/// One output stream of the child, read by its own thread into a bounded tail.
struct Pipe {
    tail: Arc<Mutex<Tail>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Pipe {
    fn drain<R: Read + Send + 'static>(stream: Option<R>, max: usize) -> Self {
        match stream {
            Some(s) => {
                let (tail, h) = drain(s, max);
                Self {
                    tail,
                    reader: Some(h),
                }
            }
            None => Self {
                tail: Arc::default(),
                reader: None,
            },
        }
    }

    fn is_closed(&self) -> bool {
        self.reader.as_ref().is_none_or(|h| h.is_finished())
    }

    /// The tail read, and whether it was cut, once the reader ended.
    fn finish(self) -> (String, bool) {
        if let Some(h) = self.reader {
            let _ = h.join();
        }
        take(&self.tail)
    }
}

/// Waits for the process and for its output to close (children it left behind may hold the
/// pipes open), but never past `deadline`, when the whole group is killed. Returns the exit
/// status and whether the deadline passed.
fn wait(child: &mut Child, pipes: [&Pipe; 2], deadline: Instant) -> (Option<ExitStatus>, bool) {
    let mut status = None;
    loop {
        if status.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => status = Some(s),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        if status.is_some() && pipes.iter().all(|p| p.is_closed()) {
            return (status, false);
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            // The main process may have ended while its group outlived the deadline.
            return (status.or_else(|| child.wait().ok()), true);
        }
        thread::sleep(Duration::from_millis(5));
    }
    (child.wait().ok(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> CommandSpec {
        CommandSpec::Argv(a.iter().map(|s| (*s).to_owned()).collect())
    }

    fn limits(timeout_ms: u64, max_output: usize) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            max_output,
            ..Limits::default()
        }
    }

    #[test]
    fn arguments_are_passed_literally() {
        let nasty = [
            "; rm -rf /",
            "a | b",
            "x & y",
            "$(whoami)",
            "`id`",
            "line1\nline2",
            "-n",
            "../..",
            "\\",
        ];
        let mut a = vec!["printf", "%s\\n"];
        a.extend(nasty);
        let e = run(&argv(&a), None, &limits(10_000, 1 << 20), "t");
        assert_eq!(e.exit_code, Some(0), "{e:?}");
        let want: String = nasty.iter().map(|s| format!("{s}\n")).collect();
        assert_eq!(e.stdout, want);
        let long = "x".repeat(100_000);
        let e = run(
            &argv(&["printf", "%s", &long]),
            None,
            &limits(10_000, 1 << 20),
            "t",
        );
        assert_eq!(e.stdout.len(), 100_000);
    }

    #[test]
    fn the_whole_group_is_killed_on_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let e = run(&argv(&["sh", "-c", &script]), None, &limits(300, 1024), "t");
        assert!(e.timed_out);
        assert_eq!(e.exit_code, None);
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "a child outlived the timeout");
    }

    #[test]
    fn output_is_capped_to_its_tail() {
        // 100 MiB through a 64 KiB cap.
        let e = run(
            &argv(&[
                "sh",
                "-c",
                "head -c 104857600 /dev/zero | tr '\\0' a; echo END",
            ]),
            None,
            &limits(60_000, 64 * 1024),
            "t",
        );
        assert_eq!(e.exit_code, Some(0));
        assert!(e.stdout_truncated);
        assert_eq!(e.stdout.len(), 64 * 1024);
        assert!(e.stdout.ends_with("aEND\n"));
    }

    #[test]
    fn environment_is_an_allow_list_and_cwd_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let e = run(
            &argv(&["sh", "-c", "pwd; env"]),
            dir.path().to_str(),
            &limits(10_000, 1 << 20),
            "t",
        );
        let canonical = dir.path().canonicalize().unwrap();
        assert!(
            e.stdout.starts_with(canonical.to_str().unwrap()),
            "{}",
            e.stdout
        );
        for line in e.stdout.lines().skip(1) {
            let name = line.split('=').next().unwrap_or("");
            assert!(
                DEFAULT_ENV_ALLOW.contains(&name)
                    || ["PWD", "SHLVL", "_", "OLDPWD"].contains(&name),
                "unexpected variable {name}"
            );
        }
    }

    #[test]
    fn failures_are_reported_not_raised() {
        let e = run(
            &argv(&["/nonexistent/program"]),
            None,
            &limits(1000, 10),
            "t",
        );
        assert!(e.error.as_deref().unwrap_or("").contains("cannot start"));
        let e = run(&argv(&["sh", "-c", "exit 7"]), None, &limits(1000, 10), "t");
        assert_eq!(e.exit_code, Some(7));
        let e = run(
            &CommandSpec::Shell("ls".into()),
            None,
            &limits(1000, 10),
            "t",
        );
        assert!(e.error.is_some());
    }
}
