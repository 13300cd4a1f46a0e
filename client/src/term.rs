//! What the terminal gets: whether to colour (`--color`, `NO_COLOR`), how much to say (`-q`,
//! `-v`), and the few styles the commands use. Set once from the command line, read anywhere.

use std::io::IsTerminal;
use std::sync::OnceLock;

use crate::cli::{ColorChoice, OutputArgs};

/// How chatty the commands are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: results and errors only.
    Quiet,
    /// The default.
    Normal,
    /// `-v`: build warnings as they come, whole failure logs.
    Verbose,
}

/// The output settings of this run.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    /// Colour on stdout.
    pub color_stdout: bool,
    /// Colour on stderr.
    pub color_stderr: bool,
    /// Whether stdout is a terminal (short digests in reports).
    pub stdout_is_terminal: bool,
    /// Whether stderr is a terminal (a live progress display).
    pub stderr_is_terminal: bool,
    /// How much to say.
    pub verbosity: Verbosity,
}

static TERM: OnceLock<Term> = OnceLock::new();

/// Whether `choice` means colour for a stream that is (or is not) a terminal, given the
/// `NO_COLOR` variable's value (<https://no-color.org>: set and not empty turns colour off).
pub fn wants_color(choice: ColorChoice, is_terminal: bool, no_color: Option<&str>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty),
    }
}

/// Records this run's output settings (the first call wins) and tells the progress library.
pub fn init(args: &OutputArgs) {
    let no_color = std::env::var("NO_COLOR").ok();
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let term = Term {
        color_stdout: wants_color(args.color, stdout_is_terminal, no_color.as_deref()),
        color_stderr: wants_color(args.color, stderr_is_terminal, no_color.as_deref()),
        stdout_is_terminal,
        stderr_is_terminal,
        verbosity: if args.quiet {
            Verbosity::Quiet
        } else if args.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        },
    };
    console::set_colors_enabled(term.color_stdout);
    console::set_colors_enabled_stderr(term.color_stderr);
    let _ = TERM.set(term);
}

/// This run's settings (defaults, colourless, when [`init`] was never called: unit tests).
pub fn get() -> Term {
    TERM.get().copied().unwrap_or(Term {
        color_stdout: false,
        color_stderr: false,
        stdout_is_terminal: false,
        stderr_is_terminal: std::io::stderr().is_terminal(),
        verbosity: Verbosity::Normal,
    })
}

/// A style for a word the eye should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Success (built).
    Good,
    /// Nothing happened, by design (cached).
    Calm,
    /// Waiting or worth a look (queued, warnings).
    Notice,
    /// Failure.
    Bad,
    /// Secondary detail (digests, paths).
    Dim,
}

/// `text` in `style` when `enabled`, as it is otherwise.
pub fn paint(text: &str, style: Style, enabled: bool) -> String {
    if !enabled || text.is_empty() {
        return text.to_string();
    }
    let code = match style {
        Style::Good => "32",
        Style::Calm => "36",
        Style::Notice => "33",
        Style::Bad => "1;31",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// How many columns `text` takes on a terminal: its characters, leaving out colour codes.
pub fn width(text: &str) -> usize {
    let mut columns = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => columns += 1,
        }
    }
    columns
}

/// Width of the label column of `label  value` listings (`status`, `inspect`): the longest
/// label they print, and a space.
pub const LABEL_WIDTH: usize = "timing cache loaded".len() + 1;

/// `text` padded with spaces to `columns` wide (colour codes take no room).
pub fn pad(text: &str, columns: usize) -> String {
    let missing = columns.saturating_sub(width(text));
    format!("{text}{}", " ".repeat(missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        assert!(wants_color(ColorChoice::Auto, true, None));
        assert!(wants_color(ColorChoice::Auto, true, Some("")));
        assert!(!wants_color(ColorChoice::Auto, true, Some("1")));
        assert!(!wants_color(ColorChoice::Auto, false, None));
        assert!(wants_color(ColorChoice::Always, false, Some("1")));
        assert!(!wants_color(ColorChoice::Never, true, None));
    }

    #[test]
    fn painted_text_pads_by_what_shows() {
        let red = paint("FAILED", Style::Bad, true);
        assert_ne!(red, "FAILED");
        assert_eq!(width(&red), 6);
        assert_eq!(width(&pad(&red, 9)), 9);
        assert_eq!(paint("built", Style::Good, false), "built");
        assert_eq!(pad("cached", 3), "cached");
    }
}
