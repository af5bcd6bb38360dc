//! A single self-updating status line on stderr, drawn only for a human watching a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws at most this often, so progress never costs measurable time.
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// Draws `\r<message>` on stderr when enabled; silent in `--json` mode or when stderr is
/// not a terminal (pipes, CI logs, tests).
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    last_draw: Option<Instant>,
    drawn_len: usize,
}

impl Progress {
    /// Enabled when stderr is a terminal and the output is not JSON.
    pub fn new(json: bool) -> Self {
        Progress {
            enabled: !json && std::io::stderr().is_terminal(),
            last_draw: None,
            drawn_len: 0,
        }
    }

    /// Redraws the line with the message `make` builds, if the last redraw is old enough.
    /// The message is built only when drawn.
    pub fn update(&mut self, make: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW_INTERVAL)
        {
            return;
        }
        self.last_draw = Some(now);
        self.draw(&make());
    }

    /// Draws `message` now, regardless of the rate limit.
    pub fn force(&mut self, message: &str) {
        if self.enabled {
            self.last_draw = Some(Instant::now());
            self.draw(message);
        }
    }

    fn draw(&mut self, message: &str) {
        let pad = self.drawn_len.saturating_sub(message.chars().count());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{message}{:pad$}", "");
        let _ = err.flush();
        self.drawn_len = message.chars().count();
    }

    /// Erases the line so the final output starts on a clean line.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn_len > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:width$}\r", "", width = self.drawn_len);
            let _ = err.flush();
            self.drawn_len = 0;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
