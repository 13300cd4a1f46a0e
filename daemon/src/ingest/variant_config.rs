//! From a resolved manifest variant to the exact TensorRT builder configuration.
//!
//! Everything the manifest asks for either maps to a builder option or is refused here with the
//! reason; nothing is dropped on the way. (Which options a loaded flavour accepts is checked
//! again, call by call, in `trt_ffi::plan_builder_calls`.)

use manifest_schema::{
    Flavour, HardwareCompatibility, Precision, RefitMode, TacticSource, TilingLevel, Variant,
};
use trt_ffi::{
    BuildConfig, ComputeCapability, HardwareCompatibilityLevel, MemoryPoolLimits,
    OptimizationProfile, ProfileInput, ProfilingVerbosity, TilingOptimizationLevel,
};

/// A manifest setting this build path cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("engine `{variant}`: {setting} = {value}: {reason}")]
pub struct ConfigError {
    /// The variant's name.
    pub variant: String,
    /// The manifest key.
    pub setting: &'static str,
    /// The value the manifest gives.
    pub value: String,
    /// Why it cannot be built, and what to do instead.
    pub reason: String,
}

/// The builder configuration for `variant`, for a model already prepared as
/// `build::prepare::Preparation::for_variant` says (converted or checked by the prepare step). Computed when a request
/// arrives, so impossible settings are refused before a queue wait, and handed to the builder
/// as it is. Always asks for detailed profiling verbosity, so the builder lists every layer
/// with its data types (and the inspector, on a GPU host, can report them).
pub fn build_config_for_prepared_model(variant: &Variant) -> Result<BuildConfig, ConfigError> {
    let settings = &variant.settings;
    let error = |setting: &'static str, value: String, reason: &str| ConfigError {
        variant: variant.name.clone(),
        setting,
        value,
        reason: reason.to_string(),
    };
    let enterprise = settings.toolchain.flavour == Flavour::TensorRt;

    // TF32 is the one precision left as a builder flag; everything else comes from the model's
    // types, and fp32 layers of a reduced-precision model stay exact fp32.
    let tf32 = Some(settings.precision == Precision::Tf32);

    // The cache's bytes are not part of the configuration: the builder reads the version the
    // registry resolved from its inputs (`ingest::timing`).
    let timing_cache = crate::timing_cache::builder_settings(settings.timing_cache);

    let compute_capabilities = settings
        .compatibility
        .compute_capabilities
        .iter()
        .map(|&cc| {
            if cc.is_tensorrt_rtx_target() {
                return Ok(cc);
            }
            let known: Vec<String> = ComputeCapability::TENSORRT_RTX_TARGETS
                .iter()
                .map(ToString::to_string)
                .collect();
            Err(error(
                "compatibility.compute_capabilities",
                quoted(&cc.to_string()),
                &format!("TensorRT-RTX targets only {}", known.join(", ")),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let tactic_sources = match &settings.tactic_sources {
        None => None,
        Some(sources) => Some(
            sources
                .iter()
                .map(|source| match source {
                    TacticSource::EdgeMaskConvolutions => {
                        Ok(trt_ffi::TacticSource::EdgeMaskConvolutions)
                    }
                    TacticSource::JitConvolutions => Ok(trt_ffi::TacticSource::JitConvolutions),
                    other => Err(error(
                        "tactic_sources",
                        quoted(other.as_str()),
                        "TensorRT 10 and later no longer offer cuBLAS/cuDNN tactic sources; \
                         keep edge-mask-convolutions and jit-convolutions",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };

    Ok(BuildConfig {
        profiles: variant
            .profiles
            .iter()
            .map(|profile| OptimizationProfile {
                inputs: profile
                    .inputs
                    .iter()
                    .map(|(name, shapes)| {
                        ProfileInput::new(name, &shapes.min, &shapes.opt, &shapes.max)
                    })
                    .collect(),
            })
            .collect(),
        builder_optimization_level: Some(i32::from(settings.optimization_level)),
        memory_pools: MemoryPoolLimits {
            workspace: settings.memory_pools.workspace,
            tactic_dram: settings.memory_pools.tactic_dram,
            tactic_shared_memory: settings.memory_pools.tactic_shared_memory,
        },
        max_aux_streams: settings
            .max_aux_streams
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        // TensorRT-RTX does not time tactics; the manifest refuses an explicit value for it.
        avg_timing_iterations: enterprise
            .then(|| i32::try_from(settings.avg_timing_iterations).unwrap_or(i32::MAX)),
        tactic_sources,
        tiling_optimization_level: match settings.tiling {
            TilingLevel::None => None,
            TilingLevel::Fast => Some(TilingOptimizationLevel::Fast),
            TilingLevel::Moderate => Some(TilingOptimizationLevel::Moderate),
            TilingLevel::Full => Some(TilingOptimizationLevel::Full),
        },
        hardware_compatibility_level: match settings.compatibility.hardware {
            HardwareCompatibility::None => None,
            HardwareCompatibility::AmperePlus => Some(HardwareCompatibilityLevel::AmperePlus),
            HardwareCompatibility::SameComputeCapability => {
                Some(HardwareCompatibilityLevel::SameComputeCapability)
            }
        },
        version_compatible: settings.compatibility.version_compatible,
        exclude_lean_runtime: settings.compatibility.exclude_lean_runtime,
        compute_capabilities,
        timing_cache,
        refit: settings.weights.refit == RefitMode::All,
        refit_individual: settings.weights.refit == RefitMode::Individual,
        refit_identical: settings.weights.refit == RefitMode::Identical,
        strip_plan: settings.weights.strip,
        tf32,
        profiling_verbosity: Some(ProfilingVerbosity::Detailed),
        layer_info: false,
    })
}

fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

#[cfg(test)]
#[path = "variant_config_tests.rs"]
mod tests;
