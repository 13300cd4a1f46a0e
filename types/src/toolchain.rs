//! Which TensorRT built something: [`Flavour`], [`Version`] and, with the libraries' digests,
//! [`ToolchainIdentity`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Blake3Digest;
use crate::text_serde::text_serde;

/// Which TensorRT product builds an engine. Written `tensorrt-rtx` or `tensorrt` (manifests,
/// locks, the wire, JSON); [`Flavour::product_name`] is the name for prose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavour {
    /// TensorRT-RTX: builds ahead of time on the CPU for listed compute capabilities.
    TensorRtRtx,
    /// TensorRT Enterprise: builds on the GPU it targets and times tactics.
    TensorRt,
}

impl Flavour {
    /// Every flavour, in documentation order.
    pub const ALL: &'static [Flavour] = &[Flavour::TensorRtRtx, Flavour::TensorRt];
    /// Every spelling [`FromStr`] accepts, in the order of [`Flavour::ALL`].
    pub const NAMES: &'static [&'static str] = &["tensorrt-rtx", "tensorrt"];

    /// The spelling in manifests, locks and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::TensorRtRtx => "tensorrt-rtx",
            Flavour::TensorRt => "tensorrt",
        }
    }

    /// NVIDIA's name for the product, for messages: `TensorRT-RTX`, `TensorRT`.
    pub fn product_name(self) -> &'static str {
        match self {
            Flavour::TensorRtRtx => "TensorRT-RTX",
            Flavour::TensorRt => "TensorRT",
        }
    }
}

impl fmt::Display for Flavour {
    /// The spelling of [`Flavour::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavour {
    type Err = UnknownFlavour;

    fn from_str(text: &str) -> Result<Self, UnknownFlavour> {
        Flavour::ALL
            .iter()
            .copied()
            .find(|flavour| flavour.as_str() == text)
            .ok_or_else(|| UnknownFlavour(text.to_string()))
    }
}

text_serde!(Flavour, "a toolchain flavour, `tensorrt-rtx` or `tensorrt`");

/// A string that is not a [`Flavour`]'s spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown toolchain flavour `{0}`, expected one of `tensorrt-rtx`, `tensorrt`")]
pub struct UnknownFlavour(pub String);

/// A toolchain version as TensorRT reports it: major.minor.patch.build, e.g. `1.7.1.116`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Major version (1 for TensorRT-RTX 1.7, 11 for TensorRT 11.4).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// Build number (0 if the library does not report one).
    pub build: u32,
}

impl Version {
    /// Decodes getInferLibVersion()'s packed form, (major * 100 + minor) * 100 + patch.
    pub fn from_packed(packed: u32, build: u32) -> Version {
        Version {
            major: packed / 10000,
            minor: (packed / 100) % 100,
            patch: packed % 100,
            build,
        }
    }

    /// The four numbers, most significant first (for comparing a prefix of them).
    pub fn components(&self) -> [u32; 4] {
        [self.major, self.minor, self.patch, self.build]
    }
}

impl fmt::Display for Version {
    /// `major.minor.patch.build`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.patch, self.build
        )
    }
}

impl FromStr for Version {
    type Err = VersionError;

    /// Parses exactly four dot-separated numbers: a loaded toolchain always has all four.
    fn from_str(text: &str) -> Result<Self, VersionError> {
        let error = || VersionError(text.to_string());
        let mut numbers = [0u32; 4];
        let mut parts = text.split('.');
        for number in &mut numbers {
            let part = parts.next().ok_or_else(error)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error());
            }
            *number = part.parse().map_err(|_| error())?;
        }
        if parts.next().is_some() {
            return Err(error());
        }
        let [major, minor, patch, build] = numbers;
        Ok(Version {
            major,
            minor,
            patch,
            build,
        })
    }
}

text_serde!(Version, "a toolchain version, major.minor.patch.build");

/// A string that is not a [`Version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a toolchain version: expected four numbers, major.minor.patch.build, as \
     TensorRT reports them (e.g. 1.7.1.116)"
)]
pub struct VersionError(pub String);

/// The toolchain a build runs with, as loaded (not as requested): what goes into action keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolchainIdentity {
    /// Which product.
    pub flavour: Flavour,
    /// The version the builder library reports.
    pub version: Version,
    /// blake3 of the builder library file.
    pub library: Blake3Digest,
    /// blake3 of the ONNX parser library file: the parser decides the network TensorRT sees,
    /// so a parser upgrade is a toolchain change even when the builder library stays.
    pub parser: Blake3Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavours_round_trip_through_their_spelling() {
        for (flavour, name) in Flavour::ALL.iter().zip(Flavour::NAMES) {
            assert_eq!(flavour.as_str(), *name);
            assert_eq!(flavour.to_string(), *name);
            assert_eq!(name.parse::<Flavour>(), Ok(*flavour));
        }
        assert_eq!(Flavour::TensorRtRtx.product_name(), "TensorRT-RTX");
        assert_eq!(Flavour::TensorRt.product_name(), "TensorRT");
        assert_eq!(
            "TensorRT".parse::<Flavour>().unwrap_err().to_string(),
            "unknown toolchain flavour `TensorRT`, expected one of `tensorrt-rtx`, `tensorrt`"
        );
    }

    #[test]
    fn versions_round_trip_and_decode_the_packed_form() {
        assert_eq!(Version::from_packed(10701, 116).to_string(), "1.7.1.116");
        assert_eq!(Version::from_packed(110400, 106).to_string(), "11.4.0.106");
        assert_eq!(Version::from_packed(100300, 0).to_string(), "10.3.0.0");
        let version: Version = "11.4.0.106".parse().unwrap();
        assert_eq!(version.components(), [11, 4, 0, 106]);
        assert_eq!(version.to_string(), "11.4.0.106");
        assert!(version > "1.7.1.116".parse().unwrap());
    }

    #[test]
    fn versions_need_exactly_four_numbers() {
        for bad in [
            "",
            "1.7",
            "1.7.1",
            "1.7.1.116.1",
            "1..1.1",
            "1.7.1.x",
            "+1.7.1.1",
            "1.7.1.99999999999",
        ] {
            let error = bad.parse::<Version>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "`{bad}` is not a toolchain version: expected four numbers, \
                     major.minor.patch.build, as TensorRT reports them (e.g. 1.7.1.116)"
                )
            );
        }
    }

    #[test]
    fn identities_serialise_with_the_text_forms() {
        let identity = ToolchainIdentity {
            flavour: Flavour::TensorRtRtx,
            version: "1.7.1.116".parse().unwrap(),
            library: Blake3Digest([0xab; 32]),
            parser: Blake3Digest([0xef; 32]),
        };
        let text = toml::to_string(&identity).unwrap();
        assert_eq!(
            text,
            format!(
                "flavour = \"tensorrt-rtx\"\nversion = \"1.7.1.116\"\nlibrary = \"blake3:{}\"\n\
                 parser = \"blake3:{}\"\n",
                "ab".repeat(32),
                "ef".repeat(32)
            )
        );
        assert_eq!(toml::from_str::<ToolchainIdentity>(&text), Ok(identity));
    }
}
