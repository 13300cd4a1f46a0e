//! What can go wrong reading the daemon configuration, said so a person can fix it.

use std::path::PathBuf;

/// An error loading `daemon.toml` or combining it with flags and environment.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read daemon config {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key, or a value of the wrong form.
    #[error("{}:{line}:{column}: {message}\n  {line} | {source_line}", path.display())]
    Parse {
        /// The file the text came from.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong and what would be valid.
        message: String,
        /// The offending line, for context.
        source_line: String,
    },
    /// A setting parsed but its value cannot work (after file, environment and flags combined).
    #[error("invalid daemon config: `{field}` {message}")]
    Invalid {
        /// The setting's dotted name as written in `daemon.toml`, e.g. `limits.max_build_timeout`.
        field: &'static str,
        /// What is wrong and what would be valid.
        message: String,
    },
}

impl ConfigError {
    /// Turns a TOML error into a [`ConfigError::Parse`] naming the file, line and column.
    pub(crate) fn from_toml(error: &toml::de::Error, text: &str, path: PathBuf) -> Self {
        let start = error.span().map_or(0, |span| span.start).min(text.len());
        let (line, column, source_line) = line_and_column(text, start);
        ConfigError::Parse {
            path,
            line,
            column,
            message: error.message().trim_end().to_string(),
            source_line,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`, and that line's text.
fn line_and_column(text: &str, at: usize) -> (usize, usize, String) {
    // Back off to a char boundary: spans are byte offsets and must not split a character.
    let mut at = at;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let source_line = text[line_start..]
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (line, column, source_line)
}

#[cfg(test)]
mod tests {
    use super::line_and_column;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_and_column(text, 0), (1, 1, "a = 1".to_string()));
        let second_equals = text.rfind('=').unwrap();
        assert_eq!(
            line_and_column(text, second_equals),
            (2, 4, "bé = \"x\"".to_string())
        );
        // A span inside a multi-byte character backs off instead of panicking.
        assert_eq!(line_and_column(text, 8).1, 2);
        assert_eq!(line_and_column(text, text.len()).0, 3);
    }
}
