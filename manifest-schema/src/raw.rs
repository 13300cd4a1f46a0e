//! The serde input types: `engine.toml` exactly as written, with spans on every value that
//! validation may need to point at. Nothing here is validated beyond TOML types and known keys;
//! `resolve` turns these into the public, typed [`crate::Manifest`].
//!
//! Doc comments here become the descriptions in `engine.schema.json`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_spanned::Spanned;

use crate::enums::{
    HardwareCompatibility, Precision, RefitMode, TacticSource, TilingLevel, TimingCachePolicy,
};
use crate::size::SizeValue;

/// A value with the byte range it was written at. Its JSON Schema is `T`'s.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub(crate) struct Located<T>(pub(crate) Spanned<T>);

impl<T> Located<T> {
    /// Byte range of the value in the manifest source.
    pub(crate) fn span(&self) -> Range<usize> {
        self.0.span()
    }

    /// The value.
    pub(crate) fn get(&self) -> &T {
        self.0.get_ref()
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// An `engine.toml`: the TensorRT engines to build from one ONNX model.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "engine.toml")]
pub(crate) struct RawManifest {
    /// Format version of this file; this release reads `1`.
    #[schemars(required, range(min = 1, max = 1))]
    pub(crate) schema_version: Option<Located<i64>>,
    /// The ONNX model the engines are built from.
    pub(crate) model: Located<RawModel>,
    /// Build settings inherited by every `[[engine]]`, which may override them.
    #[serde(default)]
    pub(crate) defaults: Option<Located<RawSettings>>,
    /// Optimization profiles shared by every `[[engine]]` without its own, in order
    /// (TensorRT selects profiles by index). None for static-shape models. At most 64.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub(crate) profile: Option<Vec<Located<RawProfile>>>,
    /// The engine variants to build, at most 256. Default: one engine named `default` built from
    /// `[defaults]`.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub(crate) engine: Option<Vec<Located<RawEngine>>>,
}

/// The model file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Model")]
pub(crate) struct RawModel {
    /// The ONNX file, relative to the manifest (use `/`). Like every path here it stays inside
    /// the manifest's directory: not absolute, no `..`, no symbolic link that leads out.
    /// External-data files beside it are inputs too. Example: `"resnet50.onnx"`.
    #[schemars(length(min = 1))]
    pub(crate) path: Located<String>,
    /// `blake3:<64 hex digits>`: refuse to build if the model's content differs. Default: none.
    #[serde(default)]
    #[schemars(regex(pattern = r"^blake3:[0-9a-fA-F]{64}$"))]
    pub(crate) digest: Option<Located<String>>,
    /// Plugin shared libraries loaded by the builder, relative to the manifest and inside its
    /// directory (as `path`); their content is part of the build's key. Default: `[]`.
    /// Example: `["plugins/libroi_align.so"]`.
    #[serde(default)]
    pub(crate) plugins: Option<Vec<Located<String>>>,
}

/// One optimization profile: min/opt/max shapes for every dynamic input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Profile")]
pub(crate) struct RawProfile {
    /// A label for messages and the lock. Default: `"profile<index>"`. Does not change the engine.
    #[serde(default)]
    pub(crate) name: Option<Located<String>>,
    /// Input name → `{ min = [...], opt = [...], max = [...] }`, at most 1024 inputs.
    pub(crate) inputs: Located<BTreeMap<Located<String>, Located<RawShapeRange>>>,
}

/// The shapes one input may take in a profile: same rank, `1 <= min <= opt <= max` per dimension.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ShapeRange")]
pub(crate) struct RawShapeRange {
    /// Smallest shape, e.g. `[1, 3, 224, 224]`. Every shape has rank 0–8 and dimensions
    /// 1–2147483647.
    #[schemars(length(max = 8), inner(range(min = 1, max = 2147483647)))]
    pub(crate) min: Located<Vec<Located<i64>>>,
    /// Shape TensorRT optimizes for, e.g. `[8, 3, 224, 224]`.
    #[schemars(length(max = 8), inner(range(min = 1, max = 2147483647)))]
    pub(crate) opt: Located<Vec<Located<i64>>>,
    /// Largest shape, e.g. `[32, 3, 224, 224]`; its element count must fit in 63 bits.
    #[schemars(length(max = 8), inner(range(min = 1, max = 2147483647)))]
    pub(crate) max: Located<Vec<Located<i64>>>,
}

/// Memory pool limits. Sizes are integers (bytes) or strings with a unit such as `"2GiB"`, at
/// most 1 TiB.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MemoryPools")]
pub(crate) struct RawMemoryPools {
    /// Scratch device memory layers may use. Default: the toolchain's.
    #[serde(default)]
    pub(crate) workspace: Option<Located<SizeValue>>,
    /// Device memory for tactic selection. Default: the toolchain's.
    #[serde(default)]
    pub(crate) tactic_dram: Option<Located<SizeValue>>,
    /// Shared memory per block for tactics. Default: the toolchain's.
    #[serde(default)]
    pub(crate) tactic_shared_memory: Option<Located<SizeValue>>,
}

/// Where the engine may run.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Compatibility")]
pub(crate) struct RawCompatibility {
    /// Hardware compatibility level (TensorRT Enterprise only). Default: `"none"`.
    #[serde(default)]
    pub(crate) hardware: Option<Located<HardwareCompatibility>>,
    /// The engine runs on later TensorRT versions (TensorRT Enterprise only). Default: `false`.
    #[serde(default)]
    pub(crate) version_compatible: Option<Located<bool>>,
    /// Leave the lean runtime out of a version-compatible plan; needs
    /// `version_compatible = true`. Default: `false`.
    #[serde(default)]
    pub(crate) exclude_lean_runtime: Option<Located<bool>>,
    /// Target GPUs as `"major.minor"` (`"8.6"`, `"12.0"`); order and repeats do not matter.
    /// Required for `tensorrt-rtx`, not allowed for `tensorrt` (it builds for the build GPU).
    #[serde(default)]
    pub(crate) compute_capabilities: Option<Located<Vec<Located<ComputeCapabilityText>>>>,
    /// The build GPU (TensorRT Enterprise only, which builds on the GPU it targets): a compute
    /// capability such as `"9.0"` (any GPU of that capability) or part of a GPU's name such as
    /// `"H100"` (any GPU whose name contains it, ignoring case, e.g. "NVIDIA H100 80GB HBM3").
    /// Default: any GPU the daemon has.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub(crate) gpu: Option<Located<String>>,
}

/// A compute capability as written, `"major.minor"`.
pub(crate) type ComputeCapabilityText = String;

/// Timing cache use.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TimingCache")]
pub(crate) struct RawTimingCache {
    /// `off`, `record` or `locked` (TensorRT Enterprise only for `record`/`locked`; `locked`
    /// refuses `optimization_level = 0`, which ignores the cache). Default: `"off"`.
    #[serde(default)]
    pub(crate) policy: Option<Located<TimingCachePolicy>>,
}

/// Refitting.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Weights")]
pub(crate) struct RawWeights {
    /// Which weights can be refitted. Default: `"none"`.
    #[serde(default)]
    pub(crate) refit: Option<Located<RefitMode>>,
    /// Strip refittable weights from the plan; needs `refit` other than `none`. Default: `false`.
    #[serde(default)]
    pub(crate) strip: Option<Located<bool>>,
}

/// How `precision = "fp16"` or `"bf16"` converts the model (autocast): which ONNX operators stay
/// in float32 and whether the graph's inputs and outputs do. Only for those two precisions; in
/// `[defaults]` it applies to the engines that use them.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Autocast")]
pub(crate) struct RawAutocast {
    /// ONNX operator types kept in float32 in addition to the built-in list (reductions,
    /// softmax, normalizations, `Exp`/`Log`/`Pow`, ...). Default: `[]`. Example: `["Sigmoid"]`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")))]
    pub(crate) keep_fp32: Option<Located<Vec<Located<OpTypeText>>>>,
    /// Operator types of the built-in float32 list to convert anyway (also custom-domain
    /// operators of these types); not allowed together with `keep_fp32` for the same type.
    /// Default: `[]`. Example: `["ReduceMean"]`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")))]
    pub(crate) convert: Option<Located<Vec<Located<OpTypeText>>>>,
    /// Keep float32 graph inputs and outputs float32, with casts inserted at the boundary,
    /// instead of converting them. Default: `false`.
    #[serde(default)]
    pub(crate) keep_fp32_io: Option<Located<bool>>,
}

/// An ONNX operator type as written, e.g. `"Softmax"`.
pub(crate) type OpTypeText = String;

/// Combining a `[defaults]` value with an engine's: the engine's wins, tables merge key by key.
pub(crate) trait Overlay: Clone {
    /// `self` is the default, `over` the engine's value.
    fn overlay(&self, over: &Self) -> Self;
}

impl<T: Clone> Overlay for Located<T> {
    fn overlay(&self, over: &Self) -> Self {
        over.clone()
    }
}

fn overlay_option<T: Overlay>(base: &Option<T>, over: &Option<T>) -> Option<T> {
    match (base, over) {
        (Some(base), Some(over)) => Some(base.overlay(over)),
        (None, Some(value)) | (Some(value), None) => Some(value.clone()),
        (None, None) => None,
    }
}

/// Implements [`Overlay`] for a table struct whose fields are all `Option<_: Overlay>`.
macro_rules! overlay_table {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl Overlay for $name {
            fn overlay(&self, over: &Self) -> Self {
                $name { $( $field: overlay_option(&self.$field, &over.$field), )+ }
            }
        }
    };
}

overlay_table!(RawMemoryPools {
    workspace,
    tactic_dram,
    tactic_shared_memory
});
overlay_table!(RawCompatibility {
    hardware,
    version_compatible,
    exclude_lean_runtime,
    compute_capabilities,
    gpu
});
overlay_table!(RawTimingCache { policy });
overlay_table!(RawWeights { refit, strip });
overlay_table!(RawAutocast {
    keep_fp32,
    convert,
    keep_fp32_io
});

/// Declares the build settings once, for both `[defaults]` ([`RawSettings`]) and `[[engine]]`
/// ([`RawEngine`]): serde's `flatten` cannot be combined with `deny_unknown_fields`.
macro_rules! build_settings {
    ( $( $(#[$meta:meta])* $field:ident : $ty:ty, )+ ) => {
        /// Build settings: every key may appear in `[defaults]` and in any `[[engine]]`.
        #[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "BuildSettings")]
        pub(crate) struct RawSettings {
            $( $(#[$meta])* #[serde(default)] pub(crate) $field: Option<$ty>, )+
        }

        /// One engine variant: a name, where to write it, optional own profiles, and any build
        /// setting, which overrides `[defaults]`.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "Engine")]
        pub(crate) struct RawEngine {
            /// Unique within the manifest; letters, digits, `.`, `_`, `-`. Example: `"fp16"`.
            #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
            pub(crate) name: Located<String>,
            /// Where `trtfarm submit --out`/`fetch` writes the engine, relative to the manifest and
            /// inside its directory (no `..`).
            /// Default: none. Example: `"build/resnet50.fp16.engine"`.
            #[serde(default)]
            pub(crate) output: Option<Located<String>>,
            /// This engine's own optimization profiles, used instead of the top-level
            /// `[[profile]]` entries, at most 64. Default: the top-level ones.
            #[serde(default)]
            #[schemars(length(max = 64))]
            pub(crate) profile: Option<Vec<Located<RawProfile>>>,
            $( $(#[$meta])* #[serde(default)] pub(crate) $field: Option<$ty>, )+
        }

        impl RawEngine {
            /// The build settings written in this `[[engine]]`.
            pub(crate) fn settings(&self) -> RawSettings {
                RawSettings { $( $field: self.$field.clone(), )+ }
            }
        }

        impl RawSettings {
            /// The precision these settings ask for; the default, fp32, when unset.
            pub(crate) fn precision(&self) -> Precision {
                self.precision.as_ref().map_or(Precision::Fp32, |p| *p.get())
            }
        }

        impl Overlay for RawSettings {
            fn overlay(&self, over: &Self) -> Self {
                RawSettings { $( $field: overlay_option(&self.$field, &over.$field), )+ }
            }
        }
    };
}

build_settings! {
    /// Flavour and version requirement: `"tensorrt-rtx 1.7"`, `"tensorrt 11.4"`,
    /// `"tensorrt >=10.8, <11"`. A bare version matches by prefix; comparators are `=`, `>=`,
    /// `<=`, `>`, `<`, separated by commas. Required here or in every `[[engine]]`.
    #[schemars(regex(pattern = r"^\s*(tensorrt-rtx|tensorrt)\s+\S"))]
    toolchain: Located<String>,
    /// Precision of the engine. Default: `"fp32"`.
    precision: Located<Precision>,
    /// Builder optimization level, 0–5. Default: `3`.
    #[schemars(range(min = 0, max = 5))]
    optimization_level: Located<i64>,
    /// Auxiliary streams the engine may use, 0–64. Default: the toolchain's choice.
    #[schemars(range(min = 0, max = 64))]
    max_aux_streams: Located<i64>,
    /// Timing iterations per tactic, 1–1000 (TensorRT Enterprise only). Default: `1`.
    #[schemars(range(min = 1, max = 1000))]
    avg_timing_iterations: Located<i64>,
    /// Libraries tactics may come from. Default: the toolchain's.
    tactic_sources: Located<Vec<Located<TacticSource>>>,
    /// Tiling optimization search effort. Default: `"none"`.
    tiling_optimization_level: Located<TilingLevel>,
    /// CUDA MPS active-thread percentage for the build, 1–100 (TensorRT Enterprise only; it
    /// changes tactic timing). Default: no limit.
    #[schemars(range(min = 1, max = 100))]
    mps_percentage: Located<i64>,
    /// Build deadline such as `"90s"`, `"20m"`, `"2h"`; not part of the engine's identity.
    /// Default: `"1h"`.
    build_timeout: Located<String>,
    /// Memory pool limits, merged key by key with `[defaults]`.
    memory_pools: RawMemoryPools,
    /// Where the engine may run, merged key by key with `[defaults]`.
    compatibility: RawCompatibility,
    /// Timing cache use, merged key by key with `[defaults]`.
    timing_cache: RawTimingCache,
    /// Refitting, merged key by key with `[defaults]`.
    weights: RawWeights,
    /// How fp16/bf16 convert the model, merged key by key with `[defaults]`.
    autocast: RawAutocast,
}
