//! Live progress of requests (`sync --wait`, `rebuild --wait`): on a terminal, one line per
//! GitSync drawn with `indicatif` (a spinner, the time, the current stage and, while applying,
//! a bar); otherwise nothing is drawn and, for text output, each change is a plain line.

use std::collections::BTreeMap;
use std::time::Duration;

use headway_controller::SyncKey;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{Format, stdout_is_terminal};

/// Where progress goes.
pub struct Live {
    /// Text output: lines are printed (above the bars on a terminal).
    lines: bool,
    /// Drawn bars (stdout is a terminal).
    multi: Option<MultiProgress>,
    bars: BTreeMap<SyncKey, ProgressBar>,
    last: BTreeMap<SyncKey, String>,
    width: usize,
}

const TEMPLATE: &str = "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {msg}";
const TEMPLATE_COUNTED: &str =
    "{spinner:.cyan} {prefix:.bold} {elapsed:>4} [{bar:24.cyan/blue}] {msg}";

impl Live {
    /// Progress for a command printing `format`: bars when stdout is a terminal.
    pub fn new(format: Format) -> Live {
        Live::with(format == Format::Text, stdout_is_terminal())
    }

    fn with(lines: bool, draw: bool) -> Live {
        Live {
            lines,
            multi: draw.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout())),
            bars: BTreeMap::new(),
            last: BTreeMap::new(),
            width: 0,
        }
    }

    /// Adds a line for each of `keys`.
    pub fn track<'a>(&mut self, keys: impl IntoIterator<Item = &'a SyncKey>) {
        let keys: Vec<&SyncKey> = keys.into_iter().collect();
        self.width = keys.iter().map(|k| k.to_string().len()).max().unwrap_or(0);
        let Some(multi) = &self.multi else {
            return;
        };
        for key in keys {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style(TEMPLATE));
            bar.set_prefix(format!("{:<w$}", key.to_string(), w = self.width));
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bars.insert(key.clone(), bar);
        }
    }

    /// A line of text output (above the bars on a terminal).
    pub fn println(&self, line: &str) {
        if !self.lines {
            return;
        }
        match &self.multi {
            // Above the bars while some are drawn; otherwise a plain line (indicatif pads its
            // lines to the terminal's width instead of ending them).
            Some(multi) if !self.bars.is_empty() => {
                let _ = multi.println(line);
            }
            _ => println!("{line}"),
        }
    }

    /// What `key` is doing now (`fetching`, `applying 412/1000`, ...).
    pub fn update(&mut self, key: &SyncKey, text: &str) {
        if self.last.get(key).is_some_and(|t| t == text) {
            return;
        }
        self.last.insert(key.clone(), text.to_string());
        match self.bars.get(key) {
            Some(bar) => {
                match counts(text) {
                    Some((done, total)) => {
                        bar.set_style(style(TEMPLATE_COUNTED));
                        bar.set_length(total);
                        bar.set_position(done);
                    }
                    None => bar.set_style(style(TEMPLATE)),
                }
                bar.set_message(text.to_string());
            }
            None if self.multi.is_none() => self.println(&format!("{key}: {text}")),
            None => {}
        }
    }

    /// `key` is over: its line is replaced by `line`.
    pub fn finish(&mut self, key: &SyncKey, line: &str) {
        if let Some(bar) = self.bars.remove(key) {
            bar.finish_and_clear();
        }
        self.println(line);
    }

    /// Removes every bar still drawn.
    pub fn clear(&mut self) {
        for (_, bar) in std::mem::take(&mut self.bars) {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
}

/// `(done, total)` from a stage message that ends in `done/total` (`applying 412/1000`).
fn counts(text: &str) -> Option<(u64, u64)> {
    let (done, total) = text.split_whitespace().last()?.split_once('/')?;
    let total: u64 = total.parse().ok()?;
    (total > 0).then_some(())?;
    Some((done.parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_stage_message() {
        assert_eq!(counts("applying 412/1000"), Some((412, 1000)));
        assert_eq!(counts("waiting for 3 objects"), None);
        assert_eq!(counts("fetching"), None);
        assert_eq!(counts("applying 0/0"), None);
        assert_eq!(counts(""), None);
    }

    #[test]
    fn templates_are_valid() {
        for t in [TEMPLATE, TEMPLATE_COUNTED] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
