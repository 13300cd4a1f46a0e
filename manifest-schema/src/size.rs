//! Byte sizes as written in `engine.toml`: plain integers (bytes) or strings with a unit.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A size exactly as written, before unit parsing (so validation can point at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SizeValue {
    /// `workspace = 1048576`
    Integer(i64),
    /// `workspace = "2GiB"`
    Text(String),
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string such as \"2GiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                Ok(SizeValue::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                i64::try_from(v)
                    .map(SizeValue::Integer)
                    .map_err(|_| E::custom("size is too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl JsonSchema for SizeValue {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Size")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: an integer, or a string with a unit such as \"512MiB\", \"2GiB\", \"64KiB\" or \"1GB\".",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^[0-9]+ ?([KMGT]i?B|B)?$" }
            ]
        })
    }
}

/// Units accepted after the number, with their multipliers.
const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SizeError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

fn size_error(message: String, hint: &str) -> SizeError {
    SizeError {
        message,
        hint: Some(hint.to_string()),
    }
}

const UNIT_HINT: &str = "write a whole number with an optional unit: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB (e.g. \"512MiB\")";

/// Parses `"2GiB"`, `"512 MiB"`, `"1GB"`, `"4096"` into bytes. Units are case-insensitive.
pub(crate) fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(size_error(format!("`{text}` is not a size"), UNIT_HINT));
    }
    if unit.starts_with('.') || unit.starts_with(',') {
        return Err(size_error(
            format!("`{text}` is not a whole number"),
            "use a smaller unit instead of a fraction, e.g. \"1536MiB\" for 1.5 GiB",
        ));
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, m)| m)
            .ok_or_else(|| {
                size_error(format!("unknown size unit `{unit}` in `{text}`"), UNIT_HINT)
            })?
    };
    let number: u64 = number
        .parse()
        .map_err(|_| size_error(format!("`{text}` is too large"), UNIT_HINT))?;
    number.checked_mul(multiplier).ok_or_else(|| {
        size_error(
            format!("`{text}` is too large"),
            "sizes must fit in 64 bits",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("3TB"), Ok(3_000_000_000_000));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_size("").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("99999999999TiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("999999999999999999999999").is_err());
    }
}
