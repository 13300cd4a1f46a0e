//! Located diagnostics: what users see when a manifest is wrong.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifest cannot be used.
    Error,
    /// The manifest can be used, but something looks wrong.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a manifest, located in its source text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The manifest file the problem is in.
    pub file: PathBuf,
    /// 1-based line of the start of `span`.
    pub line: usize,
    /// 1-based column of the start of `span`, counted in characters.
    pub column: usize,
    /// Byte range of the offending text in the manifest source.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we know.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " (help: {hint})")?;
        }
        Ok(())
    }
}

/// A manifest's source text with its path, able to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    path: PathBuf,
    text: Arc<str>,
}

impl SourceFile {
    pub(crate) fn new(path: &Path, text: &str) -> Self {
        SourceFile {
            path: path.to_path_buf(),
            text: Arc::from(text),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// An error diagnostic at `span` (clamped to the source and to character boundaries).
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let start = floor_char_boundary(&self.text, span.start);
        let end = floor_char_boundary(&self.text, span.end.max(start));
        let (line, column) = line_column(&self.text, start);
        Diagnostic {
            severity: Severity::Error,
            file: self.path.clone(),
            line,
            column,
            span: start..end,
            message: message.into(),
            hint,
        }
    }
}

/// The largest character boundary of `text` at or below `offset`.
fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// 1-based line and 1-based character column of byte `offset` (a character boundary).
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Every problem found in a manifest. Returned by [`crate::load`] and [`crate::parse`].
#[derive(Debug, Clone)]
pub struct ManifestErrors {
    pub(crate) source: SourceFile,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl ManifestErrors {
    pub(crate) fn new(source: SourceFile, diagnostics: Vec<Diagnostic>) -> Self {
        ManifestErrors {
            source,
            diagnostics,
        }
    }

    /// The diagnostics, in source order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The manifest file the diagnostics refer to.
    pub fn file(&self) -> &Path {
        self.source.path()
    }

    /// The manifest source text the spans index into (empty when the file could not be read).
    pub fn source_text(&self) -> &str {
        self.source.text()
    }

    /// Plain rendering without colour: `file:line:column: error: message`, a caret snippet and
    /// `help: hint` for every diagnostic. For tests, logs and non-terminal output.
    pub fn render_plain(&self) -> String {
        crate::render::render_plain(self.source.text(), &self.diagnostics)
    }

    /// Rendering with miette's graphical handler (unicode box drawing, colour if `color`).
    pub fn render_fancy(&self, color: bool) -> String {
        crate::render::render_fancy(&self.source, &self.diagnostics, color)
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render_plain().trim_end())
    }
}

impl std::error::Error for ManifestErrors {}

/// Sorts diagnostics by position and drops exact repeats (one default inherited by several
/// engines can trip the same check once per engine).
pub(crate) fn sort_and_dedup(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (a.span.start, a.span.end, &a.message).cmp(&(b.span.start, b.span.end, &b.message))
    });
    diagnostics.dedup_by(|a, b| a.span == b.span && a.message == b.message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "a = \"é€\"\nb = 1\n";
        let offset = text.find('€').unwrap_or(0);
        assert_eq!(line_column(text, offset), (1, 7));
        let b = text.find('b').unwrap_or(0);
        assert_eq!(line_column(text, b), (2, 1));
    }

    #[test]
    fn spans_inside_a_character_are_clamped() {
        let source = SourceFile::new(Path::new("x.toml"), "é = 1");
        let d = source.error(1..99, "m", None);
        assert_eq!(d.span, 0..source.text().len());
        assert_eq!((d.line, d.column), (1, 1));
    }
}
