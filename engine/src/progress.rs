//! Terminal output of a run: a spinner or bar per running stage (indicatif) and one
//! summary line per finished stage. Without a terminal, only the summary lines print.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stage::Progress;

/// Style once a stage has announced its total work.
pub fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} {msg} ({eta} left)")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The run's terminal.
pub struct Ui {
    multi: MultiProgress,
    tty: bool,
    quiet: bool,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Ui { multi, tty, quiet }
    }

    /// A spinner for a stage that starts running.
    pub fn start(&self, name: &str) -> (Progress, Option<ProgressBar>) {
        if !self.tty {
            return (Progress::hidden(), None);
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        (Progress::from_bar(bar.clone()), Some(bar))
    }

    /// Removes a stage's bar and prints its summary line.
    pub fn finish(&self, bar: Option<ProgressBar>, line: &str) {
        if let Some(b) = bar {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
        self.line(line);
    }

    /// Prints a line above the bars.
    pub fn line(&self, line: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            let _ = self.multi.println(line);
        } else {
            println!("{line}");
        }
    }
}
