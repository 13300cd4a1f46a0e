//! Parsing of the value formats `daemon.toml`, flags and environment share: sizes ("2GiB"),
//! durations ("90s"), socket addresses and `KEY=VALUE` store options.
//!
//! Each format has one `parse_*` function returning a message that says what is valid; clap uses
//! them as value parsers and the serde adapters below wrap them, so a flag and a file key accept
//! exactly the same text.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// What a size may look like, for error messages.
const SIZE_HELP: &str = "expected a whole number of bytes or a size like \"512MiB\", \"16GiB\" \
                         or \"2GB\" (KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000)";

/// What a duration may look like, for error messages.
const DURATION_HELP: &str =
    "expected a duration like \"500ms\", \"90s\", \"30m\", \"1h\" or \"1h 30m\"";

/// What a socket address may look like, for error messages.
const ADDRESS_HELP: &str =
    "expected an IP address and port like \"127.0.0.1:50051\" or \"[::1]:50051\" (no host names)";

/// Parses a size: a whole number of bytes, or a number with a unit (`"2GiB"`, `"1.5 GB"`).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with(['-', '+']) {
        return Err(format!("invalid size {text:?}: {SIZE_HELP}"));
    }
    match trimmed.parse::<bytesize::ByteSize>() {
        // bytesize saturates on overflow; a size that large is a typo, not a limit.
        Ok(size) if size.as_u64() == u64::MAX => {
            Err(format!("invalid size {text:?}: too large; {SIZE_HELP}"))
        }
        Ok(size) => Ok(size.as_u64()),
        Err(why) => Err(format!("invalid size {text:?}: {why}; {SIZE_HELP}")),
    }
}

/// Parses a duration with units (`"90s"`, `"1h 30m"`); a bare number is refused as ambiguous.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|why| format!("invalid duration {text:?}: {why}; {DURATION_HELP}"))
}

/// Parses an IP socket address (`"127.0.0.1:50051"`, `"[::1]:0"`).
pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid address {text:?}: {ADDRESS_HELP}"))
}

/// Parses one `KEY=VALUE` store option (the value may itself contain `=`).
pub(crate) fn parse_store_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "invalid store option {text:?}: expected KEY=VALUE, like aws_region=eu-west-1"
        )),
    }
}

/// Serde adapter for a size field: accepts a TOML integer (bytes) or a string with a unit.
pub(crate) fn de_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(SizeVisitor)
}

/// Serde adapter for an optional size field (absent = `None`).
pub(crate) fn de_opt_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    de_size(deserializer).map(Some)
}

/// Serde adapter for a duration field: a string with units.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(ParsedStr {
        expecting: DURATION_HELP,
        parse: parse_duration,
    })
}

/// Serde adapter for a socket address field.
pub(crate) fn de_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    deserializer.deserialize_any(ParsedStr {
        expecting: ADDRESS_HELP,
        parse: parse_socket_addr,
    })
}

/// Serde adapter for an optional socket address field (absent = `None`).
pub(crate) fn de_opt_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    de_socket_addr(deserializer).map(Some)
}

/// Serde adapter for `store.options`: a table whose values are strings, or booleans and numbers
/// taken as their text (`aws_allow_http = true` means `"true"`), since backends take strings.
pub(crate) fn de_store_options<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let options = BTreeMap::<String, StoreOptionValue>::deserialize(deserializer)?;
    Ok(options
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect())
}

/// One `store.options` value, as text.
struct StoreOptionValue(String);

impl<'de> Deserialize<'de> for StoreOptionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(StoreOptionVisitor)
            .map(StoreOptionValue)
    }
}

/// Visits a scalar and keeps its text.
struct StoreOptionVisitor;

impl Visitor<'_> for StoreOptionVisitor {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string, boolean or number (store options are passed as text)")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<String, E> {
        Ok(value.to_string())
    }
}

/// Visits a size given as an integer or a string.
struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(SIZE_HELP)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::custom(format!("invalid size {value}: {SIZE_HELP}")))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
        parse_size(value).map_err(E::custom)
    }
}

/// Visits a string and parses it with one of the `parse_*` functions above.
struct ParsedStr<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for ParsedStr<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value).map_err(E::custom)
    }
}
