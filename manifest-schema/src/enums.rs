//! The enumerated build-setting values, spelled in `engine.toml` as kebab-case strings.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::suggest::quoted_list;

/// A string that is not one of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`, expected one of {}", quoted_list(.valid))]
pub struct UnknownValue {
    /// What kind of value was expected ("precision", "toolchain flavour", ...).
    pub what: &'static str,
    /// The string that was given.
    pub value: String,
    /// Every valid spelling.
    pub valid: &'static [&'static str],
}

/// Declares a fieldless enum spelled as strings, with parsing, serde and JSON Schema support.
/// Deserialization errors read "unknown <what> `<value>`, expected one of ..." so that the
/// TOML error translation can offer a suggestion.
macro_rules! string_enum {
    (
        $(#[doc = $doc:literal])*
        $name:ident, $what:literal {
            $( #[doc = $vdoc:literal] $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( #[doc = $vdoc] $variant, )+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// Every spelling accepted in `engine.toml`.
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The spelling used in `engine.toml`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_string(), valid: Self::NAMES }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct NameVisitor;
                impl Visitor<'_> for NameVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} string: one of {}", $what, quoted_list($name::NAMES))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(NameVisitor)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let mut description = String::new();
                $( description.push_str($doc.trim()); description.push(' '); )*
                let mut description = description.trim_end().to_string();
                description.push('\n');
                $( description.push_str(&format!("\n- `{}`: {}", $text, $vdoc.trim())); )+
                json_schema!({
                    "description": description,
                    "type": "string",
                    "enum": [$($text,)+],
                })
            }
        }
    };
}

/// Which TensorRT product builds the engine (shared with every crate).
pub use trtfarm_types::Flavour;

string_enum! {
    /// Numeric precision the engine computes in (a model transform on strongly typed toolchains).
    Precision, "precision" {
        /// 32-bit floating point.
        Fp32 = "fp32",
        /// TensorFloat-32 matrix maths.
        Tf32 = "tf32",
        /// 16-bit floating point.
        Fp16 = "fp16",
        /// bfloat16.
        Bf16 = "bf16",
        /// 8-bit integer; the model needs Q/DQ nodes.
        Int8 = "int8",
        /// 8-bit floating point; the model needs Q/DQ nodes.
        Fp8 = "fp8",
        /// 4-bit floating point; the model needs Q/DQ nodes.
        Fp4 = "fp4",
    }
}

impl Precision {
    /// fp16 and bf16: built from a model the worker converts (autocasts) to that type first,
    /// which the `autocast` table configures.
    pub fn is_autocast(self) -> bool {
        matches!(self, Precision::Fp16 | Precision::Bf16)
    }
}

string_enum! {
    /// A library TensorRT may take tactics from.
    TacticSource, "tactic source" {
        /// cuBLAS.
        Cublas = "cublas",
        /// cuBLASLt.
        CublasLt = "cublas-lt",
        /// cuDNN.
        Cudnn = "cudnn",
        /// Edge-mask convolution kernels.
        EdgeMaskConvolutions = "edge-mask-convolutions",
        /// JIT-compiled convolution kernels.
        JitConvolutions = "jit-convolutions",
    }
}

string_enum! {
    /// How hard the builder searches for tiling optimizations.
    TilingLevel, "tiling optimization level" {
        /// No tiling optimization (default).
        None = "none",
        /// Fast search.
        Fast = "fast",
        /// Moderate search.
        Moderate = "moderate",
        /// Full search.
        Full = "full",
    }
}

string_enum! {
    /// Which GPUs besides the build GPU an Enterprise engine may run on.
    HardwareCompatibility, "hardware compatibility level" {
        /// Only the build GPU's model (default).
        None = "none",
        /// Any Ampere or later GPU.
        AmperePlus = "ampere+",
        /// Any GPU with the build GPU's compute capability.
        SameComputeCapability = "same-compute-capability",
    }
}

string_enum! {
    /// What a build does with a timing cache.
    TimingCachePolicy, "timing cache policy" {
        /// No timing cache (default).
        Off = "off",
        /// Build with an editable cache and publish it.
        Record = "record",
        /// Load the cache pinned in engine.lock, fail on a miss, never write it back.
        Locked = "locked",
    }
}

string_enum! {
    /// Which weights of the engine can be refitted after the build.
    RefitMode, "refit mode" {
        /// No refitting (default).
        None = "none",
        /// Every weight is refittable.
        All = "all",
        /// Only weights marked refittable in the model.
        Individual = "individual",
        /// Refit with identical weights only.
        Identical = "identical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>(), Ok(*p));
        }
        assert_eq!("ampere+".parse(), Ok(HardwareCompatibility::AmperePlus));
        let err = "fp61".parse::<Precision>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "unknown precision `fp61`, expected one of `fp32`, `tf32`, `fp16`, `bf16`, `int8`, `fp8`, `fp4`"
            )
        );
    }
}
