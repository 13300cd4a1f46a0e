//! Turning diagnostics into text: a plain caret renderer and miette's graphical one.

use std::fmt::{self, Write as _};

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

use crate::diagnostic::{Diagnostic, Severity, SourceFile};

/// `file:line:column: error: message`, the source line with carets under the span, and
/// `= help: hint`, for every diagnostic, separated by blank lines.
pub(crate) fn render_plain(text: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Writing into a String cannot fail.
        let _ = render_one_plain(&mut out, text, diagnostic);
    }
    out
}

fn render_one_plain(out: &mut String, text: &str, d: &Diagnostic) -> fmt::Result {
    writeln!(
        out,
        "{}:{}:{}: {}: {}",
        d.file.display(),
        d.line,
        d.column,
        d.severity,
        d.message
    )?;
    let pad = " ".repeat(d.line.to_string().len());
    out.push_str(&snippet(text, d));
    if let Some(hint) = &d.hint {
        // Continuation lines of a multi-line hint (a snippet to paste) line up after `help: `.
        let mut lines = hint.lines();
        writeln!(out, "{pad} = help: {}", lines.next().unwrap_or(""))?;
        for line in lines {
            writeln!(out, "{pad}         {line}")?;
        }
    }
    Ok(())
}

/// The source line of `d` with carets under its span, behind a gutter holding the line
/// number; empty when the line is not in `text`.
pub(crate) fn snippet(text: &str, d: &Diagnostic) -> String {
    let Some(source_line) = text.lines().nth(d.line.saturating_sub(1)) else {
        return String::new();
    };
    let pad = " ".repeat(d.line.to_string().len());
    let source_line = source_line.trim_end_matches('\r');
    // Keep tabs as tabs so the carets line up with what the terminal shows.
    let prefix: String = source_line
        .chars()
        .take(d.column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let available = source_line
        .chars()
        .count()
        .saturating_sub(d.column.saturating_sub(1));
    let span_chars = text
        .get(d.span.clone())
        .map_or(0, |s| s.split('\n').next().unwrap_or("").chars().count());
    let carets = span_chars.min(available).max(1);
    format!(
        "{pad} |\n{} | {source_line}\n{pad} | {prefix}{}\n",
        d.line,
        "^".repeat(carets)
    )
}

/// Renders with miette's [`GraphicalReportHandler`] (unicode; coloured if `color`).
pub(crate) fn render_fancy(source: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    let named = NamedSource::new(
        source.path().display().to_string(),
        source.text().to_string(),
    )
    .with_language("TOML");
    let mut out = String::new();
    for diagnostic in diagnostics {
        let view = MietteView {
            diagnostic,
            source: &named,
        };
        if handler.render_report(&mut out, &view).is_err() {
            // Fall back to the plain form rather than losing the message.
            out.push_str(&render_plain(
                source.text(),
                std::slice::from_ref(diagnostic),
            ));
        }
    }
    out
}

/// One diagnostic with its source attached, in the shape miette renders.
struct MietteView<'a> {
    diagnostic: &'a Diagnostic,
    source: &'a NamedSource<String>,
}

impl fmt::Debug for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diagnostic, f)
    }
}

impl fmt::Display for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for MietteView<'_> {}

impl miette::Diagnostic for MietteView<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .hint
            .as_ref()
            .map(|hint| Box::new(hint) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.source.inner().is_empty() {
            None
        } else {
            Some(self.source)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.source.inner().is_empty() {
            return None;
        }
        let span = &self.diagnostic.span;
        let label = LabeledSpan::new_primary_with_span(
            None,
            SourceSpan::new(span.start.into(), span.end.saturating_sub(span.start)),
        );
        Some(Box::new(std::iter::once(label)))
    }
}
