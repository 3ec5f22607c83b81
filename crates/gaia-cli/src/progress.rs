//! Progress of long work (backup, store copy, export, import) on stderr: a one-line bar
//! redrawn in place on a terminal, and plain lines at intervals when stderr is a pipe or a
//! log, which a supervisor's journal can keep.

use std::io::{IsTerminal, Write};

/// Counts units of work done out of an optional total.
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    total: Option<u64>,
    done: u64,
    bar: bool,
    /// `done` when the last plain line was written.
    reported: u64,
}

impl Progress {
    const WIDTH: u64 = 30;
    /// Plain lines: at least this much work between two lines.
    const MIN_STEP: u64 = 10_000;

    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(what: &'static str, unit: &'static str, total: Option<u64>) -> Self {
        Self {
            what,
            unit,
            total,
            done: 0,
            bar: std::io::stderr().is_terminal(),
            reported: 0,
        }
    }

    /// Records `n` more units done.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        let mut err = std::io::stderr().lock();
        if self.bar {
            let line = match self.total.filter(|t| *t > 0) {
                Some(total) => {
                    let filled = Self::WIDTH * self.done.min(total) / total;
                    format!(
                        "\r{} [{}{}] {}/{} {}",
                        self.what,
                        "#".repeat(usize::try_from(filled).unwrap_or(0)),
                        "-".repeat(usize::try_from(Self::WIDTH - filled).unwrap_or(0)),
                        self.done,
                        total,
                        self.unit
                    )
                }
                None => format!("\r{}: {} {}", self.what, self.done, self.unit),
            };
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
        } else {
            let step = self
                .total
                .map_or(Self::MIN_STEP, |t| (t / 10).max(Self::MIN_STEP));
            if self.done - self.reported >= step {
                self.reported = self.done;
                let _ = writeln!(err, "{}", self.plain());
            }
        }
    }

    fn plain(&self) -> String {
        match self.total {
            Some(total) => format!("{}: {}/{} {}", self.what, self.done, total, self.unit),
            None => format!("{}: {} {}", self.what, self.done, self.unit),
        }
    }

    /// Clears the bar, or writes the last plain line after earlier ones.
    pub fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.bar {
            let _ = err.write_all(b"\r\x1b[2K");
            let _ = err.flush();
        } else if self.reported > 0 && self.done != self.reported {
            // Short work printed nothing on the way and needs no last line either.
            self.reported = self.done;
            let _ = writeln!(err, "{}", self.plain());
        }
    }
}
