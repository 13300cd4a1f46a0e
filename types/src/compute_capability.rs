//! [`ComputeCapability`]: a CUDA architecture such as 8.6, from a manifest, a GPU or a
//! TensorRT-RTX target list.

use std::fmt;
use std::str::FromStr;

use crate::text_serde::text_serde;

/// A CUDA compute capability; written `8.6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComputeCapability {
    /// Major version (9 for Hopper).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ComputeCapability {
    /// The targets TensorRT-RTX 1.7 can build for ahead of time (its headers' list).
    pub const TENSORRT_RTX_TARGETS: [ComputeCapability; 6] = [
        ComputeCapability::new(7, 5),
        ComputeCapability::new(8, 0),
        ComputeCapability::new(8, 6),
        ComputeCapability::new(8, 9),
        ComputeCapability::new(12, 0),
        ComputeCapability::new(12, 1),
    ];

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The `sm_XY` number, major * 10 + minor (86 for 8.6), as CUDA and TensorRT name targets.
    pub fn sm(self) -> u32 {
        self.major * 10 + self.minor
    }

    /// Whether TensorRT-RTX can build for this capability ahead of time.
    pub fn is_tensorrt_rtx_target(self) -> bool {
        Self::TENSORRT_RTX_TARGETS.contains(&self)
    }
}

impl fmt::Display for ComputeCapability {
    /// `major.minor`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for ComputeCapability {
    type Err = ComputeCapabilityError;

    /// Parses `major.minor`: one to three digits each, major not 0.
    fn from_str(text: &str) -> Result<Self, ComputeCapabilityError> {
        let error = || ComputeCapabilityError(text.to_string());
        let (major, minor) = text.split_once('.').ok_or_else(error)?;
        let number = |part: &str| {
            let digits = !part.is_empty() && part.len() <= 3;
            if !digits || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error());
            }
            part.parse::<u32>().map_err(|_| error())
        };
        let capability = ComputeCapability::new(number(major)?, number(minor)?);
        if capability.major == 0 {
            return Err(error());
        }
        Ok(capability)
    }
}

text_serde!(
    ComputeCapability,
    "a compute capability, major.minor such as 8.6"
);

/// A string that is not a compute capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a compute capability: expected major.minor, such as 8.6")]
pub struct ComputeCapabilityError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_sm_numbers() {
        let ampere: ComputeCapability = "8.6".parse().unwrap();
        assert_eq!(ampere, ComputeCapability::new(8, 6));
        assert_eq!(ampere.to_string(), "8.6");
        assert_eq!(ampere.sm(), 86);
        assert_eq!("12.0".parse(), Ok(ComputeCapability::new(12, 0)));
        assert_eq!(ComputeCapability::new(12, 1).sm(), 121);
    }

    #[test]
    fn refuses_what_is_not_major_dot_minor() {
        for bad in [
            "", "8", "8.", ".6", "0.9", "8.6.1", "x.6", "1000.0", "+8.6", "8,6",
        ] {
            let error = bad.parse::<ComputeCapability>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("`{bad}` is not a compute capability: expected major.minor, such as 8.6")
            );
        }
    }

    #[test]
    fn knows_the_tensorrt_rtx_targets() {
        let names: Vec<String> = ComputeCapability::TENSORRT_RTX_TARGETS
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]);
        assert!(ComputeCapability::new(8, 9).is_tensorrt_rtx_target());
        assert!(!ComputeCapability::new(9, 0).is_tensorrt_rtx_target());
    }

    #[test]
    fn serialises_as_its_text() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Gpu {
            cc: ComputeCapability,
        }
        let gpu = Gpu {
            cc: ComputeCapability::new(9, 0),
        };
        assert_eq!(toml::to_string(&gpu).unwrap(), "cc = \"9.0\"\n");
        assert_eq!(toml::from_str::<Gpu>("cc = \"9.0\""), Ok(gpu));
    }
}
