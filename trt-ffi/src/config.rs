//! Every builder option trtfarm can set, as plain Rust data.
//!
//! `BuildConfig::default()` is TensorRT's own default configuration: no call is made for an
//! option left at its default, so "unset" and "set to TensorRT's default" stay distinguishable.
//! Which options a flavour accepts is decided in `calls.rs`. Everything serialises, so a build
//! configuration can travel to a separate builder process as data.

use serde::{Deserialize, Serialize};
/// A CUDA compute capability, the type every trtfarm crate shares: what a TensorRT-RTX build
/// targets ahead of time (`calls.rs` maps it to TensorRT's enum).
pub use trtfarm_types::ComputeCapability;

/// Options for one engine build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildConfig {
    /// Optimisation profiles, in order (profile 0 first). Needed when an input is dynamic.
    pub profiles: Vec<OptimizationProfile>,
    /// Builder optimisation level (0..=5; TensorRT's default is 3).
    pub builder_optimization_level: Option<i32>,
    /// Memory pool limits; `None` keeps TensorRT's default for that pool.
    pub memory_pools: MemoryPoolLimits,
    /// Maximum number of auxiliary streams.
    pub max_aux_streams: Option<i32>,
    /// Averaging iterations when timing tactics (Enterprise: RTX does not time tactics).
    pub avg_timing_iterations: Option<i32>,
    /// Tactic sources to allow; `None` keeps TensorRT's default set.
    pub tactic_sources: Option<Vec<TacticSource>>,
    /// Tiling optimisation level.
    pub tiling_optimization_level: Option<TilingOptimizationLevel>,
    /// Hardware compatibility level (Enterprise only).
    pub hardware_compatibility_level: Option<HardwareCompatibilityLevel>,
    /// Build a version-compatible engine (Enterprise only).
    pub version_compatible: bool,
    /// Leave the lean runtime out of a version-compatible plan (Enterprise only).
    pub exclude_lean_runtime: bool,
    /// Compute capabilities to build for, in order (TensorRT-RTX only), each one of
    /// [`ComputeCapability::TENSORRT_RTX_TARGETS`]; empty keeps TensorRT's default (the GPU of
    /// the build machine). Serialised as text, `["8.6", "12.0"]`.
    pub compute_capabilities: Vec<ComputeCapability>,
    /// Timing cache in/out (Enterprise only: TensorRT-RTX's timing cache calls are no-ops).
    pub timing_cache: Option<TimingCacheConfig>,
    /// BuilderFlag::kREFIT: weights can be refitted.
    pub refit: bool,
    /// BuilderFlag::kREFIT_INDIVIDUAL: only weights marked refittable can be refitted.
    pub refit_individual: bool,
    /// BuilderFlag::kREFIT_IDENTICAL: refit with identical weights (enables plan stripping).
    pub refit_identical: bool,
    /// BuilderFlag::kSTRIP_PLAN: leave refittable weights out of the plan.
    pub strip_plan: bool,
    /// BuilderFlag::kTF32: `Some(false)` forbids TF32 (TensorRT enables it by default).
    pub tf32: Option<bool>,
    /// Profiling verbosity stored in the plan (`Detailed` for full inspector output).
    pub profiling_verbosity: Option<ProfilingVerbosity>,
    /// After building, deserialise the plan and collect the engine inspector's layer JSON.
    pub layer_info: bool,
}

/// One optimisation profile: dimensions for each dynamic input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptimizationProfile {
    /// The inputs this profile constrains.
    pub inputs: Vec<ProfileInput>,
}

/// Minimum, optimum and maximum dimensions of one network input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInput {
    /// Input tensor name, as in the ONNX graph.
    pub name: String,
    /// Smallest shape the engine must accept.
    pub min: Vec<i64>,
    /// Shape tactics are chosen for.
    pub opt: Vec<i64>,
    /// Largest shape the engine must accept.
    pub max: Vec<i64>,
}

impl ProfileInput {
    /// An input with the given name and shapes.
    pub fn new(name: impl Into<String>, min: &[i64], opt: &[i64], max: &[i64]) -> ProfileInput {
        ProfileInput {
            name: name.into(),
            min: min.to_vec(),
            opt: opt.to_vec(),
            max: max.to_vec(),
        }
    }

    /// A static shape (min = opt = max).
    pub fn fixed(name: impl Into<String>, shape: &[i64]) -> ProfileInput {
        ProfileInput::new(name, shape, shape, shape)
    }
}

/// Limits for TensorRT's memory pools, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryPoolLimits {
    /// MemoryPoolType::kWORKSPACE.
    pub workspace: Option<u64>,
    /// MemoryPoolType::kTACTIC_DRAM.
    pub tactic_dram: Option<u64>,
    /// MemoryPoolType::kTACTIC_SHARED_MEMORY.
    pub tactic_shared_memory: Option<u64>,
}

/// Timing cache input and output (Enterprise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingCacheConfig {
    /// Serialised cache to start from; `None` starts from an empty cache. Never serialised:
    /// a cache can be large, so it travels as a file beside the configuration.
    #[serde(skip)]
    pub input: Option<Vec<u8>>,
    /// Return the cache after the build in `BuildOutput::timing_cache_out`.
    pub write_output: bool,
    /// BuilderFlag::kEDITABLE_TIMING_CACHE.
    pub editable: bool,
    /// BuilderFlag::kERROR_ON_TIMING_CACHE_MISS: fail instead of timing a new tactic.
    pub error_on_miss: bool,
    /// Accept a cache made on another device or TensorRT version (setTimingCache ignoreMismatch).
    pub ignore_mismatch: bool,
}

/// A tactic source (nvinfer1::TacticSource).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TacticSource {
    /// kEDGE_MASK_CONVOLUTIONS.
    EdgeMaskConvolutions = 0,
    /// kJIT_CONVOLUTIONS.
    JitConvolutions = 1,
}

/// nvinfer1::TilingOptimizationLevel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TilingOptimizationLevel {
    /// No tiling.
    None = 0,
    /// Fast search.
    Fast = 1,
    /// Moderate search.
    Moderate = 2,
    /// Full search.
    Full = 3,
}

/// nvinfer1::HardwareCompatibilityLevel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HardwareCompatibilityLevel {
    /// Only the build GPU's architecture.
    None = 0,
    /// Any Ampere or newer GPU.
    AmperePlus = 1,
    /// Any GPU with the build GPU's compute capability.
    SameComputeCapability = 2,
}

/// nvinfer1::ProfilingVerbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProfilingVerbosity {
    /// Layer names only (TensorRT's default).
    LayerNamesOnly = 0,
    /// Nothing.
    None = 1,
    /// Everything the engine inspector can report.
    Detailed = 2,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_capabilities_travel_as_text() {
        let config = BuildConfig {
            compute_capabilities: vec![ComputeCapability::new(8, 6), ComputeCapability::new(12, 0)],
            ..Default::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            json.contains(r#""compute_capabilities":["8.6","12.0"]"#),
            "{json}"
        );
        let back: BuildConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn default_config_asks_for_nothing() {
        let config = BuildConfig::default();
        assert!(config.profiles.is_empty());
        assert!(!config.layer_info);
        assert_eq!(config.tf32, None);
    }
}
