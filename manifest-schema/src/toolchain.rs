//! Toolchain requirements: `"tensorrt-rtx 1.7"`, `"tensorrt >=10.8, <11"`.
//!
//! A requirement names one to four numeric components ([`RequiredVersion`]); the version it is
//! checked against is a loaded toolchain's full [`Version`] (`10.7.0.23`).
//! Every comparator looks only at as many components of the actual version as it names itself,
//! so `1.7` and `=1.7` match `1.7.1.116`, `<11` matches every `10.x`, `>10.8` starts at `10.9`
//! and `<=10.8` includes `10.8.5`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::enums::Flavour;
use crate::suggest::unknown_value_hint;
pub use trtfarm_types::Version;

/// Most components a version may have.
const MAX_COMPONENTS: usize = 4;

/// The version a requirement names: one to four numeric components, such as `1.7` or
/// `10.7.0.23`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequiredVersion {
    components: Vec<u32>,
}

impl RequiredVersion {
    /// The numeric components, most significant first.
    pub fn components(&self) -> &[u32] {
        &self.components
    }
}

/// Why a version or requirement string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolchainParseError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

fn parse_error(message: String, hint: &str) -> ToolchainParseError {
    ToolchainParseError {
        message,
        hint: Some(hint.to_string()),
    }
}

impl FromStr for RequiredVersion {
    type Err = ToolchainParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HINT: &str =
            "a version is 1 to 4 numbers separated by dots, e.g. `1.7` or `10.7.0.23`";
        let s = s.trim();
        let mut components = Vec::new();
        for part in s.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(parse_error(format!("`{s}` is not a version"), HINT));
            }
            let number = part.parse().map_err(|_| {
                parse_error(
                    format!("version `{s}` has a component that is too large"),
                    HINT,
                )
            })?;
            components.push(number);
        }
        if components.len() > MAX_COMPONENTS {
            return Err(parse_error(
                format!("version `{s}` has more than 4 components"),
                HINT,
            ));
        }
        Ok(RequiredVersion { components })
    }
}

impl fmt::Display for RequiredVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.components.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl Serialize for RequiredVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How a comparator relates the actual version to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionOp {
    /// A bare version: the actual version starts with these components.
    Prefix,
    /// `=`: equal on the components given (the same test as a bare version).
    Exact,
    /// `>=`
    GreaterEq,
    /// `<=`
    LessEq,
    /// `>`
    Greater,
    /// `<`
    Less,
}

impl VersionOp {
    /// The operator as written (empty for a bare version).
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOp::Prefix => "",
            VersionOp::Exact => "=",
            VersionOp::GreaterEq => ">=",
            VersionOp::LessEq => "<=",
            VersionOp::Greater => ">",
            VersionOp::Less => "<",
        }
    }
}

/// One `op version` term of a requirement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Comparator {
    /// The operator.
    pub op: VersionOp,
    /// The version it compares against.
    pub version: RequiredVersion,
}

impl Comparator {
    /// Whether `actual` satisfies this comparator, comparing only as many components as this
    /// comparator's version has.
    pub fn matches(&self, actual: &Version) -> bool {
        let wanted = &self.version.components;
        let actual = actual.components();
        let ordering = actual[..wanted.len()].cmp(wanted.as_slice());
        match self.op {
            VersionOp::Prefix | VersionOp::Exact => ordering == Ordering::Equal,
            VersionOp::GreaterEq => ordering != Ordering::Less,
            VersionOp::LessEq => ordering != Ordering::Greater,
            VersionOp::Greater => ordering == Ordering::Greater,
            VersionOp::Less => ordering == Ordering::Less,
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.op.as_str(), self.version)
    }
}

/// Comma-separated comparators that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionReq {
    /// The comparators, in the order written.
    pub comparators: Vec<Comparator>,
}

impl VersionReq {
    /// Whether `version` satisfies every comparator.
    pub fn matches(&self, version: &Version) -> bool {
        self.comparators.iter().all(|c| c.matches(version))
    }
}

impl FromStr for VersionReq {
    type Err = ToolchainParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HINT: &str =
            "write a version (`1.7`) or comparators separated by commas (`>=10.8, <11`)";
        let mut comparators = Vec::new();
        for term in s.split(',') {
            let term = term.trim();
            if term.is_empty() {
                return Err(parse_error(
                    format!("version requirement `{}` has an empty term", s.trim()),
                    HINT,
                ));
            }
            let (op, rest) = [
                (">=", VersionOp::GreaterEq),
                ("<=", VersionOp::LessEq),
                (">", VersionOp::Greater),
                ("<", VersionOp::Less),
                ("=", VersionOp::Exact),
            ]
            .iter()
            .find_map(|&(text, op)| term.strip_prefix(text).map(|rest| (op, rest)))
            .unwrap_or((VersionOp::Prefix, term));
            let version = rest
                .parse()
                .map_err(|e: ToolchainParseError| ToolchainParseError {
                    message: format!("bad version requirement `{}`: {}", s.trim(), e.message),
                    hint: Some(HINT.to_string()),
                })?;
            comparators.push(Comparator { op, version });
        }
        Ok(VersionReq { comparators })
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.comparators.iter().map(Comparator::to_string).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Which toolchain a variant needs: a flavour and a version requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolchainRequirement {
    /// TensorRT-RTX or TensorRT Enterprise.
    pub flavour: Flavour,
    /// Versions of that flavour that are acceptable.
    pub versions: VersionReq,
}

impl ToolchainRequirement {
    /// The requirement a manifest writes to build with the toolchain `flavour` `version`:
    /// `tensorrt-rtx 1.7` (major.minor, so later patch releases still match).
    pub fn selecting(flavour: Flavour, version: &Version) -> String {
        format!("{flavour} {}.{}", version.major, version.minor)
    }

    /// Whether a toolchain of this requirement's flavour at `version` is acceptable.
    pub fn matches(&self, version: &Version) -> bool {
        self.versions.matches(version)
    }

    /// Whether a toolchain of `flavour` at `version` is acceptable.
    pub fn accepts(&self, flavour: Flavour, version: &Version) -> bool {
        flavour == self.flavour && self.matches(version)
    }
}

impl fmt::Display for ToolchainRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.flavour, self.versions)
    }
}

impl Serialize for ToolchainRequirement {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for ToolchainRequirement {
    type Err = ToolchainParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXAMPLE: &str =
            "write a flavour and a version, e.g. \"tensorrt-rtx 1.7\" or \"tensorrt >=10.8, <11\"";
        let s = s.trim();
        if s.is_empty() {
            return Err(parse_error("toolchain is empty".to_string(), EXAMPLE));
        }
        let (flavour_text, requirement) = s
            .split_once(char::is_whitespace)
            .map_or((s, ""), |(f, r)| (f, r.trim()));
        let flavour: Flavour = flavour_text.parse().map_err(|_| ToolchainParseError {
            message: format!("unknown toolchain flavour `{flavour_text}`"),
            hint: Some(unknown_value_hint(flavour_text, Flavour::NAMES)),
        })?;
        if requirement.is_empty() {
            return Err(parse_error(
                format!("toolchain `{s}` has no version requirement"),
                EXAMPLE,
            ));
        }
        Ok(ToolchainRequirement {
            flavour,
            versions: requirement.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loaded toolchain's version, the missing trailing components 0 (`1.7` is 1.7.0.0).
    fn version(s: &str) -> Version {
        let mut parts: Vec<&str> = s.split('.').collect();
        parts.resize(4, "0");
        let full = parts.join(".");
        full.parse().unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn req(s: &str) -> ToolchainRequirement {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bare_versions_match_by_prefix() {
        let r = req("tensorrt-rtx 1.7");
        assert_eq!(r.flavour, Flavour::TensorRtRtx);
        assert!(r.matches(&version("1.7.1.116")));
        assert!(r.matches(&version("1.7")));
        assert!(!r.matches(&version("1.70")));
        assert!(!r.matches(&version("1.8.0.1")));
        assert!(r.accepts(Flavour::TensorRtRtx, &version("1.7.0")));
        assert!(!r.accepts(Flavour::TensorRt, &version("1.7.0")));
    }

    #[test]
    fn comparators_compare_the_components_they_name() {
        let r = req("tensorrt >=10.8, <11");
        assert!(r.matches(&version("10.8.0.1")));
        assert!(r.matches(&version("10.13")));
        assert!(!r.matches(&version("10.7.9.9")));
        assert!(!r.matches(&version("11.0.0.1")));
        assert!(req("tensorrt >10.8").matches(&version("10.9")));
        assert!(!req("tensorrt >10.8").matches(&version("10.8.5")));
        assert!(req("tensorrt <=10.8").matches(&version("10.8.5")));
        assert!(req("tensorrt =10.7.0.23").matches(&version("10.7.0.23")));
        assert!(!req("tensorrt =10.7.0.23").matches(&version("10.7.0.24")));
        assert!(req("tensorrt 10").matches(&version("10.7.0.23")));
    }

    #[test]
    fn rejects_bad_requirements() {
        for bad in [
            "",
            "tensorrt",
            "tensorrtx 1.7",
            "tensorrt 1..7",
            "tensorrt >=10.8,",
            "tensorrt 1.2.3.4.5",
            "tensorrt ~1.2",
            "tensorrt 99999999999",
        ] {
            assert!(bad.parse::<ToolchainRequirement>().is_err(), "{bad}");
        }
        let err = "tensorrt_rtx 1.7".parse::<ToolchainRequirement>().err();
        let hint = err.and_then(|e| e.hint).unwrap_or_default();
        assert!(hint.contains("did you mean `tensorrt-rtx`"), "{hint}");
    }
}
