//! Turning `toml`/serde errors into diagnostics with suggestions.
//!
//! serde reports unknown keys as "unknown field `x`, expected one of `a`, `b`" and our enums
//! (see `enums.rs`) report "unknown precision `x`, expected one of ...". We take those messages
//! apart to offer "did you mean" instead of a long list.

use crate::diagnostic::{Diagnostic, SourceFile};
use crate::suggest::{did_you_mean, quoted_list, unknown_value_hint};

/// The one diagnostic for a TOML syntax or type error.
pub(crate) fn toml_diagnostic(source: &SourceFile, error: &toml::de::Error) -> Diagnostic {
    let span = error.span().unwrap_or(0..0);
    let message = error.message().trim();
    if let Some(unknown) = parse_unknown(message) {
        return unknown_diagnostic(source, span, &unknown);
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return source.error(
            span,
            format!("missing required key `{field}`"),
            Some(format!("add `{field} = ...` to this table")),
        );
    }
    if message == "duplicate key" {
        let key = source.text().get(span.clone()).unwrap_or("").trim();
        return source.error(
            span,
            format!("duplicate key `{key}`"),
            Some("each key may appear only once per table".to_string()),
        );
    }
    // Syntax errors and type mismatches: toml's message is already specific.
    let first_line = message.lines().next().unwrap_or(message);
    source.error(span, first_line.to_string(), None)
}

/// The pieces of an "unknown <kind> `<value>`, expected ..." message.
#[derive(Debug, PartialEq, Eq)]
struct Unknown<'a> {
    kind: &'a str,
    value: &'a str,
    expected: Vec<&'a str>,
}

fn parse_unknown(message: &str) -> Option<Unknown<'_>> {
    let rest = message.strip_prefix("unknown ")?;
    let (kind, rest) = rest.split_once(" `")?;
    // The value itself may contain backticks; the list starts after the last "`, ".
    let (value, expected_text) = match rest.rfind("`, expected ") {
        Some(end) => (&rest[..end], &rest[end + "`, expected ".len()..]),
        None => (rest.strip_suffix("`, there are no fields")?, ""),
    };
    // Every other backtick-delimited piece of the list is a name.
    let expected = expected_text.split('`').skip(1).step_by(2).collect();
    Some(Unknown {
        kind,
        value,
        expected,
    })
}

fn unknown_diagnostic(
    source: &SourceFile,
    span: std::ops::Range<usize>,
    unknown: &Unknown<'_>,
) -> Diagnostic {
    if unknown.kind == "field" {
        let hint = match did_you_mean(unknown.value, &unknown.expected) {
            Some(best) => Some(format!("did you mean `{best}`?")),
            None if unknown.expected.is_empty() => Some("this table takes no keys".to_string()),
            None => Some(format!(
                "valid keys here: {}",
                quoted_list(&unknown.expected)
            )),
        };
        return source.error(span, format!("unknown key `{}`", unknown.value), hint);
    }
    let kind = if unknown.kind == "variant" {
        "value"
    } else {
        unknown.kind
    };
    source.error(
        span,
        format!("unknown {kind} `{}`", unknown.value),
        Some(unknown_value_hint(unknown.value, &unknown.expected)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serde_unknown_messages() {
        assert_eq!(
            parse_unknown("unknown field `precison`, expected one of `name`, `precision`"),
            Some(Unknown {
                kind: "field",
                value: "precison",
                expected: vec!["name", "precision"],
            })
        );
        assert_eq!(
            parse_unknown("unknown field `a`b`, expected `min` or `max`"),
            Some(Unknown {
                kind: "field",
                value: "a`b",
                expected: vec!["min", "max"],
            })
        );
        assert_eq!(
            parse_unknown("unknown precision `fp61`, expected one of `fp32`, `fp16`"),
            Some(Unknown {
                kind: "precision",
                value: "fp61",
                expected: vec!["fp32", "fp16"],
            })
        );
        assert_eq!(
            parse_unknown("unknown field `x`, there are no fields"),
            Some(Unknown {
                kind: "field",
                value: "x",
                expected: vec![],
            })
        );
        assert_eq!(parse_unknown("invalid type: string"), None);
    }
}
