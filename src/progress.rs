//! One writer for stderr: log lines and the progress line share the terminal without
//! garbling each other.
//!
//! The runner's progress line is redrawn in place (a carriage return, then the line). A log
//! line written by another thread in the middle of a redraw lands on the same row, and the
//! next redraw overwrites half of it. Every log line therefore goes through [`LogWriter`],
//! which, while a progress line is showing, hides it, writes the log line whole and draws it
//! again below (`ProgressBar::suspend`). The progress line is only ever shown when stderr is
//! a terminal; piped or redirected stderr gets plain log lines.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::ProgressBar;

/// The progress line showing now, if any.
static SHOWING: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress line on stderr while it lives; `None` when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn start() -> Option<Progress> {
        if !io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        *SHOWING.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Some(Progress { bar })
    }

    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        SHOWING.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.bar.finish_and_clear();
    }
}

/// `tracing_subscriber`'s writer for log lines: stderr, around the progress line.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

impl Write for LogWriter {
    /// The formatter hands over each event whole, so one call is one log line.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let showing = SHOWING.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match showing {
            Some(bar) if !bar.is_finished() => bar.suspend(|| io::stderr().write_all(buf))?,
            _ => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
