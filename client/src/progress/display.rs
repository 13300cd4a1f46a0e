//! The live display of a round of builds on stderr. On a terminal: one aligned line per engine
//! variant (spinner, name, elapsed time, state), a summary line under them (`[2/5] 1 built,
//! 1 cached`), each line left showing how its variant ended, and all of it cleared when the
//! round ends so the report that follows says each variant once. Elsewhere (a pipe, CI logs):
//! a plain line only when a variant is queued or starts building; the report says how it
//! ended. With `-q`: nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{LineState, describe, plain_stage};
use crate::term::{self, Style, Verbosity, paint};

/// How the round's variants have ended so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Variants in the round.
    pub total: usize,
    /// Built now.
    pub built: usize,
    /// Answered from the cache.
    pub cached: usize,
    /// Submitted without waiting.
    pub queued: usize,
    /// Refused or failed.
    pub failed: usize,
}

impl Tally {
    /// Counts one variant that ended in `state`.
    pub fn count(&mut self, state: &LineState) {
        match state {
            LineState::Built(_) => self.built += 1,
            LineState::Cached => self.cached += 1,
            LineState::Submitted(_) => self.queued += 1,
            LineState::Failed(_) => self.failed += 1,
            _ => {}
        }
    }

    /// Variants that have ended.
    pub fn done(&self) -> usize {
        self.built + self.cached + self.queued + self.failed
    }

    /// `[2/5] 1 built, 1 cached`: what has ended, leaving out the kinds none ended as.
    pub fn render(&self, color: bool) -> String {
        let mut parts = Vec::new();
        for (count, word, style) in [
            (self.built, "built", Style::Good),
            (self.cached, "cached", Style::Calm),
            (self.queued, "queued", Style::Notice),
            (self.failed, "failed", Style::Bad),
        ] {
            if count > 0 {
                parts.push(paint(&format!("{count} {word}"), style, color));
            }
        }
        format!("[{}/{}] {}", self.done(), self.total, parts.join(", "))
    }
}

/// The progress display of one command.
pub struct Display {
    multi: Option<MultiProgress>,
    verbosity: Verbosity,
    color: bool,
    round: Arc<Mutex<Round>>,
}

/// The round of builds being shown, shared by the display and its lines.
#[derive(Default)]
struct Round {
    tally: Tally,
    summary: Option<ProgressBar>,
    /// Every line's bar, kept until the round ends: a finished line stays on screen, showing
    /// how its variant ended, until the report replaces them all.
    bars: Vec<ProgressBar>,
    started: Option<Instant>,
}

impl Default for Display {
    fn default() -> Self {
        Self::new()
    }
}

impl Display {
    /// Redrawn lines when stderr is a terminal, plain lines otherwise, nothing with `-q`.
    pub fn new() -> Self {
        let term = term::get();
        let live = term.verbosity > Verbosity::Quiet && term.stderr_is_terminal;
        Self::drawing(
            live.then(ProgressDrawTarget::stderr),
            term.verbosity,
            term.color_stderr,
        )
    }

    /// A display that redraws into `target` (none: plain lines).
    fn drawing(target: Option<ProgressDrawTarget>, verbosity: Verbosity, color: bool) -> Self {
        Self {
            multi: target.map(MultiProgress::with_draw_target),
            verbosity,
            color,
            round: Arc::default(),
        }
    }

    /// Starts a round of builds: one line per label (`manifest#variant`), names aligned, each
    /// saying "waiting", and on a terminal a summary line under them.
    pub fn lines(&self, labels: Vec<String>) -> Vec<Line> {
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        {
            let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
            round.tally = Tally {
                total: labels.len(),
                ..Tally::default()
            };
            round.started = Some(Instant::now());
            let summary = match &self.multi {
                Some(multi) if round.tally.total > 1 => {
                    let summary = multi.add(ProgressBar::new_spinner());
                    summary.set_style(style("  {msg}  {elapsed}"));
                    summary.set_message(round.tally.render(self.color));
                    summary.enable_steady_tick(Duration::from_millis(500));
                    Some(summary)
                }
                _ => None,
            };
            if let Some(old) = std::mem::replace(&mut round.summary, summary) {
                old.finish_and_clear();
            }
        }
        // Each new line locks the round for a moment itself.
        labels
            .into_iter()
            .map(|label| self.new_line(label, width))
            .collect()
    }

    fn new_line(&self, label: String, width: usize) -> Line {
        let padded = format!("{label:<width$}");
        let bar = self.multi.as_ref().map(|multi| {
            let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
            let bar = match &round.summary {
                Some(summary) => multi.insert_before(summary, ProgressBar::new_spinner()),
                None => multi.add(ProgressBar::new_spinner()),
            };
            round.bars.push(bar.clone());
            bar.set_style(style("{spinner:.cyan} {prefix}  {elapsed:>4}  {wide_msg}"));
            bar.set_prefix(padded.clone());
            bar.set_message(describe(&LineState::Waiting));
            bar.enable_steady_tick(Duration::from_millis(120));
            (multi.clone(), bar)
        });
        Line {
            bar,
            label: padded,
            quiet: self.verbosity == Verbosity::Quiet,
            verbose: self.verbosity == Verbosity::Verbose,
            color: self.color,
            last_plain: Mutex::new(""),
            round: self.round.clone(),
        }
    }

    /// Ends the round: every line and the summary leave the screen, for the report that says
    /// how each variant ended. How long the round took.
    pub fn finish_round(&self) -> Duration {
        let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        let bars = std::mem::take(&mut round.bars);
        for bar in bars.iter().chain(round.summary.take().as_ref()) {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(bar);
            }
        }
        round
            .started
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Runs `f` (which prints to stdout) with the live lines cleared, so the two do not mix.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(multi) => multi.suspend(f),
            None => f(),
        }
    }

    /// Prints a message above the live lines (or as a plain line) on stderr; nothing with `-q`.
    pub fn note(&self, text: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// One variant's line.
pub struct Line {
    /// On a terminal: the display it lives in, and its live bar.
    bar: Option<(MultiProgress, ProgressBar)>,
    /// The variant's name, padded to the round's widest.
    label: String,
    quiet: bool,
    verbose: bool,
    color: bool,
    last_plain: Mutex<&'static str>,
    /// The round whose summary counts this line's end.
    round: Arc<Mutex<Round>>,
}

impl Line {
    /// Shows `state`.
    pub fn show(&self, state: &LineState) {
        match &self.bar {
            Some((_, bar)) => bar.set_message(self.colored(state)),
            None => self.print_plain(state),
        }
    }

    /// Shows a final `state`: on a terminal the line stops, showing how the variant ended, and
    /// the summary counts it; plain output leaves the end to the report.
    pub fn finish(&self, state: &LineState) {
        {
            let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
            round.tally.count(state);
            if let Some(summary) = &round.summary {
                summary.set_message(round.tally.render(self.color));
            }
        }
        if let Some((_, bar)) = &self.bar {
            bar.set_style(style("  {prefix}  {elapsed:>4}  {wide_msg}"));
            bar.finish_with_message(self.colored(state));
        }
    }

    /// A line of the build's log (`-v` shows TensorRT's warnings and errors as they come).
    pub fn log(&self, severity: &str, text: &str) {
        if !self.verbose || !matches!(severity, "error" | "warning") {
            return;
        }
        let style = if severity == "error" {
            Style::Bad
        } else {
            Style::Notice
        };
        let line = format!(
            "{} {}: {text}",
            self.label.trim_end(),
            paint(severity, style, self.color)
        );
        match &self.bar {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn colored(&self, state: &LineState) -> String {
        let text = describe(state);
        let style = match state {
            LineState::Built(_) => Style::Good,
            LineState::Cached => Style::Calm,
            LineState::Queued(_) | LineState::Submitted(_) => Style::Notice,
            LineState::Failed(_) => Style::Bad,
            _ => return text,
        };
        paint(&text, style, self.color)
    }

    fn print_plain(&self, state: &LineState) {
        if self.quiet {
            return;
        }
        let stage = plain_stage(state);
        let mut last = self.last_plain.lock().unwrap_or_else(|p| p.into_inner());
        if *last != stage && stage != "done" {
            let text = match state {
                LineState::Building { .. } => "building".to_string(),
                other => describe(other),
            };
            eprintln!("{}  {text}", self.label);
            *last = stage;
        }
    }
}

impl Drop for Line {
    /// A line dropped unfinished (its task was replaced by a newer one) leaves no spinner behind.
    fn drop(&mut self) {
        if let Some((multi, bar)) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
            multi.remove(bar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_what_ended_and_names_only_what_happened() {
        let mut tally = Tally {
            total: 5,
            ..Tally::default()
        };
        assert_eq!(tally.render(false), "[0/5] ");
        tally.count(&LineState::Built(Duration::from_secs(1)));
        tally.count(&LineState::Cached);
        tally.count(&LineState::Cached);
        tally.count(&LineState::Building {
            phase: "x".into(),
            step: 0,
            steps: 0,
        });
        assert_eq!(tally.render(false), "[3/5] 1 built, 2 cached");
        tally.count(&LineState::Failed("no".into()));
        assert_eq!(tally.render(false), "[4/5] 1 built, 2 cached, 1 failed");
    }

    #[test]
    fn a_live_round_draws_ends_and_clears_without_waiting_on_itself() {
        let display =
            Display::drawing(Some(ProgressDrawTarget::hidden()), Verbosity::Normal, false);
        for _ in 0..2 {
            let lines = display.lines(vec!["a/engine.toml#fp32".into(), "b#fp16".into()]);
            lines[0].show(&LineState::Queued(1));
            lines[0].finish(&LineState::Cached);
            lines[1].finish(&LineState::Failed("no".into()));
            let round = display.round.lock().unwrap().tally;
            assert_eq!((round.done(), round.cached, round.failed), (2, 1, 1));
            drop(lines);
            display.finish_round();
            assert!(display.round.lock().unwrap().bars.is_empty());
        }
    }
}
