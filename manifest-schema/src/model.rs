//! The resolved manifest: typed, validated, defaults applied. What the rest of trtfarm uses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
pub use trtfarm_types::{Blake3Digest, ComputeCapability};

use crate::diagnostic::{Diagnostic, ManifestErrors, SourceFile, sort_and_dedup};
use crate::enums::{
    HardwareCompatibility, Precision, RefitMode, TacticSource, TilingLevel, TimingCachePolicy,
};
use crate::profiles::ProfileSpans;
use crate::toolchain::ToolchainRequirement;

/// A parsed and validated `engine.toml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file, as given to [`crate::load`] or [`crate::parse`].
    pub path: PathBuf,
    /// Format version of the file (currently always 1).
    pub schema_version: u32,
    /// The model the engines are built from.
    pub model: Model,
    pub(crate) variants: Vec<Variant>,
    /// Where each variant's profiles were written: `profile_spans[v][p]` belongs to
    /// `variants[v].profiles[p]`.
    pub(crate) profile_spans: Vec<Vec<ProfileSpans>>,
    /// Where each variant's settings were written: `setting_spans[v]` belongs to `variants[v]`.
    pub(crate) setting_spans: Vec<SettingSpans>,
    pub(crate) source: SourceFile,
}

/// Where one variant's settings were written (in `[defaults]` or its `[[engine]]`, whichever
/// it takes them from), for checks against what only the daemon or the model knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct SettingSpans {
    /// The `toolchain` value.
    pub(crate) toolchain: Range<usize>,
    /// The values a daemon may refuse on its own knowledge, by manifest key
    /// (`compatibility.gpu`, ...), those written.
    pub(crate) refusable: BTreeMap<&'static str, Range<usize>>,
    /// Each `autocast.keep_fp32` entry, first place written.
    pub(crate) keep_fp32: BTreeMap<String, Range<usize>>,
    /// Each `autocast.convert` entry, first place written.
    pub(crate) convert: BTreeMap<String, Range<usize>>,
}

impl Manifest {
    /// The directory relative paths in the manifest are resolved against (`.` for a bare file
    /// name).
    pub fn dir(&self) -> &Path {
        manifest_dir(&self.path)
    }

    /// Every engine variant, fully resolved, in manifest order.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The variant called `name`.
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// Where `variant`'s engine file goes: its `output`, else `build/<name>.engine` beside the
    /// manifest. The one default `trtfarm submit`, `trtfarm fetch` and `trtfarmd build` share.
    pub fn engine_file(&self, variant: &Variant) -> PathBuf {
        variant.output.clone().unwrap_or_else(|| {
            self.dir()
                .join("build")
                .join(format!("{}.engine", variant.name))
        })
    }

    /// The manifest's source text.
    pub fn source_text(&self) -> &str {
        self.source.text()
    }

    /// Wraps diagnostics about this manifest (from [`Manifest::check_inputs`],
    /// [`Manifest::check_against_model`] or [`Manifest::model_diagnostic`]) with its source, so
    /// they render like parse errors ([`ManifestErrors::render_plain`],
    /// [`ManifestErrors::render_fancy`]). Sorts them by position and drops repeats.
    pub fn errors(&self, mut diagnostics: Vec<Diagnostic>) -> ManifestErrors {
        sort_and_dedup(&mut diagnostics);
        ManifestErrors::new(self.source.clone(), diagnostics)
    }

    /// An error about the model file itself (for example, it is not an ONNX model), located at
    /// the `[model] path` value.
    pub fn model_diagnostic(&self, message: impl Into<String>, hint: Option<String>) -> Diagnostic {
        self.source
            .error(self.model.spans.path.clone(), message, hint)
    }
}

/// The directory of a manifest path (`.` when it has none).
pub(crate) fn manifest_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The `[model]` table.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// The model path exactly as written in the manifest.
    pub path: String,
    /// The model path joined to the manifest's directory.
    pub resolved_path: PathBuf,
    /// The pinned content digest, if any.
    pub digest: Option<Blake3Digest>,
    /// Plugin libraries, in manifest order.
    pub plugins: Vec<PluginLibrary>,
    #[serde(skip)]
    pub(crate) spans: ModelSpans,
}

/// Where the `[model]` values were written, for filesystem diagnostics.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelSpans {
    pub(crate) path: Range<usize>,
    pub(crate) digest: Option<Range<usize>>,
}

/// A plugin shared library from `[model] plugins`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginLibrary {
    /// The path exactly as written.
    pub path: String,
    /// The path joined to the manifest's directory.
    pub resolved_path: PathBuf,
    #[serde(skip)]
    pub(crate) span: Range<usize>,
}

/// One engine to build: an `[[engine]]` (or the implicit `default`) with `[defaults]` applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// The engine's name, unique within the manifest.
    pub name: String,
    /// Where the built engine is written, joined to the manifest's directory.
    pub output: Option<PathBuf>,
    /// Every build setting, defaults applied.
    pub settings: BuildSettings,
    /// Optimization profiles, in order (empty for static-shape models).
    pub profiles: Vec<Profile>,
}

/// The build settings of one variant, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildSettings {
    /// Which toolchain builds it.
    pub toolchain: ToolchainRequirement,
    /// Engine precision (default fp32).
    pub precision: Precision,
    /// Builder optimization level 0–5 (default 3).
    pub optimization_level: u8,
    /// Auxiliary streams 0–64; `None` lets the toolchain choose.
    pub max_aux_streams: Option<u32>,
    /// Timing iterations per tactic, 1–1000 (default 1).
    pub avg_timing_iterations: u32,
    /// Allowed tactic sources; `None` keeps the toolchain's default.
    pub tactic_sources: Option<BTreeSet<TacticSource>>,
    /// Tiling optimization level (default none).
    pub tiling: TilingLevel,
    /// CUDA MPS active-thread percentage 1–100; `None` means no limit.
    pub mps_percentage: Option<u8>,
    /// Build deadline (default one hour). Not part of the engine's identity.
    #[serde(with = "duration_text")]
    pub build_timeout: Duration,
    /// Memory pool limits.
    pub memory_pools: MemoryPools,
    /// Where the engine may run.
    pub compatibility: Compatibility,
    /// Timing cache policy (default off).
    pub timing_cache: TimingCachePolicy,
    /// Refit options.
    pub weights: Weights,
    /// How autocast converts the model; always the default unless `precision` is fp16 or bf16.
    pub autocast: Autocast,
}

mod duration_text {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

/// Memory pool limits in bytes; `None` keeps the toolchain's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryPools {
    /// Scratch device memory for layers.
    pub workspace: Option<u64>,
    /// Device memory for tactic selection.
    pub tactic_dram: Option<u64>,
    /// Shared memory per block for tactics.
    pub tactic_shared_memory: Option<u64>,
}

/// Where the engine may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compatibility {
    /// Hardware compatibility level (Enterprise).
    pub hardware: HardwareCompatibility,
    /// Runs on later TensorRT versions (Enterprise).
    pub version_compatible: bool,
    /// Leave the lean runtime out of a version-compatible plan.
    pub exclude_lean_runtime: bool,
    /// Target GPUs (TensorRT-RTX); empty for Enterprise.
    pub compute_capabilities: BTreeSet<ComputeCapability>,
    /// Which GPU an Enterprise engine is built on; `None`: any GPU the daemon has. Not part of
    /// the canonical encoding: the daemon keys a build by the GPU the selector resolved to.
    pub gpu: Option<GpuSelector>,
}

/// `compatibility.gpu`: which GPUs a TensorRT Enterprise build may run on, and so target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GpuSelector {
    /// Any GPU of this compute capability, written `"9.0"`.
    ComputeCapability(ComputeCapability),
    /// Any GPU whose name contains this text, ignoring case, written e.g. `"H100"`.
    Name(String),
}

impl GpuSelector {
    /// Whether the GPU called `gpu_name` (as the driver names it, e.g. "NVIDIA H100 80GB HBM3"),
    /// of compute capability `cc`, is one this selector means.
    pub fn matches(&self, gpu_name: &str, cc: ComputeCapability) -> bool {
        match self {
            GpuSelector::ComputeCapability(wanted) => *wanted == cc,
            GpuSelector::Name(fragment) => {
                gpu_name.to_lowercase().contains(&fragment.to_lowercase())
            }
        }
    }
}

/// The manifest spelling: `9.0` or the name fragment as written (trimmed).
impl fmt::Display for GpuSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSelector::ComputeCapability(cc) => cc.fmt(f),
            GpuSelector::Name(fragment) => f.write_str(fragment),
        }
    }
}

impl Serialize for GpuSelector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a `compatibility.gpu` string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuSelectorParseError {
    /// Nothing but whitespace.
    #[error("`compatibility.gpu` is empty")]
    Empty,
    /// Only digits and dots, but not `major.minor`.
    #[error("`{0}` is not a compute capability")]
    BadComputeCapability(String),
}

/// Digits and dots only (`"9.0"`, `"90"`, `"9"`) mean a compute capability, which must then be
/// `major.minor`; anything else is a name fragment (GPU names always contain a letter).
impl FromStr for GpuSelector {
    type Err = GpuSelectorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(GpuSelectorParseError::Empty);
        }
        if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return text
                .parse()
                .map(GpuSelector::ComputeCapability)
                .map_err(|_| GpuSelectorParseError::BadComputeCapability(text.to_string()));
        }
        Ok(GpuSelector::Name(text.to_string()))
    }
}

/// How `precision = "fp16"`/`"bf16"` converts the model (`[autocast]`). Empty lists and `false`
/// are the built-in behaviour; other precisions always carry the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Autocast {
    /// ONNX operator types kept in float32 on top of the built-in list (default empty).
    pub keep_fp32: BTreeSet<String>,
    /// Operator types of the built-in float32 list converted anyway (default empty); never
    /// shares a type with `keep_fp32`.
    pub convert: BTreeSet<String>,
    /// Graph inputs and outputs stay float32, with casts at the boundary (default false).
    pub keep_fp32_io: bool,
}

impl Autocast {
    /// Whether this is the built-in behaviour (nothing set, or only defaults written).
    pub fn is_default(&self) -> bool {
        *self == Autocast::default()
    }
}

/// Refit options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Weights {
    /// Which weights are refittable.
    pub refit: RefitMode,
    /// Strip refittable weights from the plan.
    pub strip: bool,
}

/// One optimization profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Label for messages and the lock (`profile<index>` unless named). Not part of the engine's
    /// identity.
    pub name: String,
    /// Shape range per input name.
    pub inputs: BTreeMap<String, ShapeRange>,
}

/// The shapes one input may take: same rank, `1 <= min <= opt <= max` per dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeRange {
    /// Smallest shape.
    pub min: Vec<i64>,
    /// Shape to optimize for.
    pub opt: Vec<i64>,
    /// Largest shape.
    pub max: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_capabilities_parse() {
        assert_eq!("8.6".parse(), Ok(ComputeCapability { major: 8, minor: 6 }));
        assert_eq!(
            "12.0".parse(),
            Ok(ComputeCapability {
                major: 12,
                minor: 0
            })
        );
        for bad in ["8", "86", "8.", ".6", "8.6.1", "a.b", "-8.6", "0.5", "+8.6"] {
            assert!(bad.parse::<ComputeCapability>().is_err(), "{bad}");
        }
    }

    #[test]
    fn gpu_selectors_parse_match_and_display() {
        let hopper = ComputeCapability { major: 9, minor: 0 };
        let ada = ComputeCapability { major: 8, minor: 9 };
        let parse = |s: &str| s.parse::<GpuSelector>();
        assert_eq!(parse(" 9.0"), Ok(GpuSelector::ComputeCapability(hopper)));
        assert_eq!(parse("h100 "), Ok(GpuSelector::Name("h100".into())));
        assert_eq!(parse("  "), Err(GpuSelectorParseError::Empty));
        for bad in ["90", "9", "9.0.1", "9."] {
            assert_eq!(
                parse(bad),
                Err(GpuSelectorParseError::BadComputeCapability(bad.into()))
            );
        }

        let name = GpuSelector::Name("h100".into());
        assert!(name.matches("NVIDIA H100 80GB HBM3", hopper));
        assert!(!name.matches("NVIDIA H200", hopper));
        let capability = GpuSelector::ComputeCapability(hopper);
        assert!(capability.matches("NVIDIA H200", hopper));
        assert!(!capability.matches("NVIDIA H100 PCIe", ada));
        assert!(GpuSelector::Name("rtx 4090".into()).matches("NVIDIA GeForce RTX 4090", ada));

        for text in ["9.0", "12.0", "H100", "NVIDIA L40S"] {
            assert_eq!(parse(text).map(|s| s.to_string()).as_deref(), Ok(text));
        }
    }
}
