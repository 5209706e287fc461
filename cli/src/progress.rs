//! Progress of an import: a bar per mailbox on a terminal, a plain line per finished folder
//! otherwise (logs, CI, pipes).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mailroom::domain::FolderKey;
use mailroom::engine::{ImportObserver, MessageOutcome};

#[derive(Default, Clone, Copy)]
struct Counts {
    imported: u64,
    already: u64,
    failed: u64,
}

pub struct Progress {
    bars: Option<MultiProgress>,
    state: Mutex<HashMap<FolderKey, (Option<ProgressBar>, Counts)>>,
}

impl Progress {
    /// Bars if stderr is a terminal, else nothing until the summary.
    pub fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            bars,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Removes the bars before the summary is printed.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.clear().ok();
        }
    }
}

impl ImportObserver for Progress {
    fn settled(&self, key: &FolderKey, outcome: &MessageOutcome) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (bar, counts) = state.entry(key.clone()).or_insert_with(|| {
            let bar = self.bars.as_ref().map(|bars| {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(key.to_string());
                bar
            });
            (bar, Counts::default())
        });
        match outcome {
            MessageOutcome::Imported { .. } => counts.imported += 1,
            MessageOutcome::Failed { .. } => counts.failed += 1,
            _ => counts.already += 1,
        }
        let line = format!(
            "{} imported, {} already stored, {} failed",
            counts.imported, counts.already, counts.failed
        );
        match bar {
            Some(bar) => {
                bar.set_message(line);
                bar.tick();
            }
            None if (counts.imported + counts.already + counts.failed) % 50 == 0 => {
                eprintln!("{key}: {line}");
            }
            None => {}
        }
    }
}
