//! Turns a `BuildConfig` into the exact list of IBuilderConfig calls the shim makes, per flavour.
//!
//! This is the one place that knows which options a flavour supports. An option the flavour
//! cannot honour is refused here, before anything is built; nothing is silently dropped.

use crate::config::{BuildConfig, ComputeCapability};
use crate::config::{HardwareCompatibilityLevel, ProfilingVerbosity, TilingOptimizationLevel};
use crate::shim::ffi;
use crate::toolchain::Flavour;

/// A builder flag trtfarm sets or clears (nvinfer1::BuilderFlag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuilderFlag {
    /// kREFIT.
    Refit,
    /// kREFIT_INDIVIDUAL.
    RefitIndividual,
    /// kREFIT_IDENTICAL.
    RefitIdentical,
    /// kSTRIP_PLAN.
    StripPlan,
    /// kTF32.
    Tf32,
    /// kVERSION_COMPATIBLE.
    VersionCompatible,
    /// kEXCLUDE_LEAN_RUNTIME.
    ExcludeLeanRuntime,
    /// kEDITABLE_TIMING_CACHE.
    EditableTimingCache,
    /// kERROR_ON_TIMING_CACHE_MISS.
    ErrorOnTimingCacheMiss,
}

impl BuilderFlag {
    fn raw(self) -> i64 {
        i64::from(match self {
            BuilderFlag::Refit => ffi::TRTFARM_FLAG_REFIT,
            BuilderFlag::RefitIndividual => ffi::TRTFARM_FLAG_REFIT_INDIVIDUAL,
            BuilderFlag::RefitIdentical => ffi::TRTFARM_FLAG_REFIT_IDENTICAL,
            BuilderFlag::StripPlan => ffi::TRTFARM_FLAG_STRIP_PLAN,
            BuilderFlag::Tf32 => ffi::TRTFARM_FLAG_TF32,
            BuilderFlag::VersionCompatible => ffi::TRTFARM_FLAG_VERSION_COMPATIBLE,
            BuilderFlag::ExcludeLeanRuntime => ffi::TRTFARM_FLAG_EXCLUDE_LEAN_RUNTIME,
            BuilderFlag::EditableTimingCache => ffi::TRTFARM_FLAG_EDITABLE_TIMING_CACHE,
            BuilderFlag::ErrorOnTimingCacheMiss => ffi::TRTFARM_FLAG_ERROR_ON_TIMING_CACHE_MISS,
        })
    }
}

/// A TensorRT memory pool (nvinfer1::MemoryPoolType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryPool {
    /// kWORKSPACE.
    Workspace = 0,
    /// kTACTIC_DRAM.
    TacticDram = 4,
    /// kTACTIC_SHARED_MEMORY.
    TacticSharedMemory = 5,
}

/// One call on IBuilderConfig / IBuilder, in the order the shim makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderCall {
    /// createOptimizationProfile + setDimensions + addOptimizationProfile for `profiles[i]`.
    AddOptimizationProfile(usize),
    /// setFlag / clearFlag.
    SetFlag {
        /// Which flag.
        flag: BuilderFlag,
        /// Set (true) or clear (false).
        enabled: bool,
    },
    /// setBuilderOptimizationLevel.
    SetBuilderOptimizationLevel(i32),
    /// setMemoryPoolLimit.
    SetMemoryPoolLimit {
        /// Which pool.
        pool: MemoryPool,
        /// Limit in bytes.
        bytes: u64,
    },
    /// setMaxAuxStreams.
    SetMaxAuxStreams(i32),
    /// setAvgTimingIterations.
    SetAvgTimingIterations(i32),
    /// setTacticSources with this bit mask.
    SetTacticSources(u32),
    /// setTilingOptimizationLevel.
    SetTilingOptimizationLevel(TilingOptimizationLevel),
    /// setHardwareCompatibilityLevel.
    SetHardwareCompatibilityLevel(HardwareCompatibilityLevel),
    /// setNbComputeCapabilities (TensorRT-RTX).
    SetNbComputeCapabilities(i32),
    /// setComputeCapability (TensorRT-RTX).
    SetComputeCapability {
        /// Target.
        capability: ComputeCapability,
        /// Slot index.
        index: i32,
    },
    /// setProfilingVerbosity.
    SetProfilingVerbosity(ProfilingVerbosity),
    /// createTimingCache from the config's input bytes + setTimingCache.
    SetTimingCache {
        /// Accept a cache from another device/version.
        ignore_mismatch: bool,
    },
}

impl BuilderCall {
    /// The shim's encoding of this call.
    pub(crate) fn to_ffi(&self) -> ffi::trtfarm_builder_call {
        let (kind, a, b): (u32, i64, i64) = match *self {
            BuilderCall::AddOptimizationProfile(i) => (ffi::TRTFARM_CALL_ADD_PROFILE, i as i64, 0),
            BuilderCall::SetFlag { flag, enabled } => {
                (ffi::TRTFARM_CALL_SET_FLAG, flag.raw(), i64::from(enabled))
            }
            BuilderCall::SetBuilderOptimizationLevel(level) => {
                (ffi::TRTFARM_CALL_SET_OPTIMIZATION_LEVEL, level.into(), 0)
            }
            BuilderCall::SetMemoryPoolLimit { pool, bytes } => (
                ffi::TRTFARM_CALL_SET_MEMORY_POOL_LIMIT,
                pool as i64,
                i64::try_from(bytes).unwrap_or(i64::MAX),
            ),
            BuilderCall::SetMaxAuxStreams(n) => {
                (ffi::TRTFARM_CALL_SET_MAX_AUX_STREAMS, n.into(), 0)
            }
            BuilderCall::SetAvgTimingIterations(n) => {
                (ffi::TRTFARM_CALL_SET_AVG_TIMING_ITERATIONS, n.into(), 0)
            }
            BuilderCall::SetTacticSources(mask) => {
                (ffi::TRTFARM_CALL_SET_TACTIC_SOURCES, mask.into(), 0)
            }
            BuilderCall::SetTilingOptimizationLevel(level) => {
                (ffi::TRTFARM_CALL_SET_TILING_LEVEL, level as i64, 0)
            }
            BuilderCall::SetHardwareCompatibilityLevel(level) => {
                (ffi::TRTFARM_CALL_SET_HARDWARE_COMPAT, level as i64, 0)
            }
            BuilderCall::SetNbComputeCapabilities(n) => {
                (ffi::TRTFARM_CALL_SET_NB_COMPUTE_CAPS, n.into(), 0)
            }
            BuilderCall::SetComputeCapability { capability, index } => (
                ffi::TRTFARM_CALL_SET_COMPUTE_CAP,
                tensorrt_compute_capability(capability)
                    .expect("plan_builder_calls refuses a target TensorRT-RTX does not name"),
                index.into(),
            ),
            BuilderCall::SetProfilingVerbosity(v) => {
                (ffi::TRTFARM_CALL_SET_PROFILING_VERBOSITY, v as i64, 0)
            }
            BuilderCall::SetTimingCache { ignore_mismatch } => (
                ffi::TRTFARM_CALL_SET_TIMING_CACHE,
                i64::from(ignore_mismatch),
                0,
            ),
        };
        ffi::trtfarm_builder_call {
            kind: kind as i32,
            a,
            b,
        }
    }
}

/// TensorRT-RTX's `nvinfer1::ComputeCapability` value for `cc` (`kSM86` = 86, the shim
/// asserts the numbering), if its headers name that target; one per
/// [`ComputeCapability::TENSORRT_RTX_TARGETS`].
pub(crate) fn tensorrt_compute_capability(cc: ComputeCapability) -> Option<i64> {
    match (cc.major, cc.minor) {
        (7, 5) => Some(75),
        (8, 0) => Some(80),
        (8, 6) => Some(86),
        (8, 9) => Some(89),
        (12, 0) => Some(120),
        (12, 1) => Some(121),
        _ => None,
    }
}

/// An option the chosen flavour cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} is not supported by {}: {reason}", .flavour.product_name())]
pub struct Unsupported {
    /// The `BuildConfig` field.
    pub option: &'static str,
    /// The flavour that refuses it.
    pub flavour: Flavour,
    /// Why, in TensorRT's terms.
    pub reason: &'static str,
}

/// Which options only one flavour has, and why the other refuses them.
fn check_supported(flavour: Flavour, config: &BuildConfig) -> Result<(), Unsupported> {
    let refuse = |option, reason| {
        Err(Unsupported {
            option,
            flavour,
            reason,
        })
    };
    match flavour {
        Flavour::TensorRtRtx => {
            let unknown_target = config
                .compute_capabilities
                .iter()
                .any(|&cc| tensorrt_compute_capability(cc).is_none());
            if unknown_target {
                return refuse(
                    "compute_capabilities",
                    "TensorRT-RTX 1.7 builds ahead of time only for 7.5, 8.0, 8.6, 8.9, 12.0 and 12.1",
                );
            }
            if config.hardware_compatibility_level.is_some() {
                return refuse(
                    "hardware_compatibility_level",
                    "TensorRT-RTX logs \"setHardwareCompatibilityLevel() is unsupported\" and ignores it",
                );
            }
            if config.version_compatible {
                return refuse(
                    "version_compatible",
                    "version-compatible plans are an Enterprise feature",
                );
            }
            if config.exclude_lean_runtime {
                return refuse(
                    "exclude_lean_runtime",
                    "the lean runtime is an Enterprise feature",
                );
            }
            if config.timing_cache.is_some() {
                return refuse(
                    "timing_cache",
                    "timing-cache operations are no-ops in TensorRT-RTX (deprecated since 1.2)",
                );
            }
            if config.avg_timing_iterations.is_some() {
                return refuse(
                    "avg_timing_iterations",
                    "TensorRT-RTX builds ahead of time without timing tactics; the setting has no effect",
                );
            }
        }
        Flavour::TensorRt => {
            if !config.compute_capabilities.is_empty() {
                return refuse(
                    "compute_capabilities",
                    "Enterprise builds for the GPU it runs on; use hardware_compatibility_level",
                );
            }
        }
    }
    Ok(())
}

/// The exact builder calls the shim will make for `config` on `flavour`, or the first option
/// the flavour does not support.
pub fn plan_builder_calls(
    flavour: Flavour,
    config: &BuildConfig,
) -> Result<Vec<BuilderCall>, Unsupported> {
    check_supported(flavour, config)?;
    let mut calls = Vec::new();
    calls.extend((0..config.profiles.len()).map(BuilderCall::AddOptimizationProfile));

    let flags = [
        (BuilderFlag::Refit, config.refit),
        (BuilderFlag::RefitIndividual, config.refit_individual),
        (BuilderFlag::RefitIdentical, config.refit_identical),
        (BuilderFlag::StripPlan, config.strip_plan),
        (BuilderFlag::VersionCompatible, config.version_compatible),
        (BuilderFlag::ExcludeLeanRuntime, config.exclude_lean_runtime),
    ];
    for (flag, enabled) in flags {
        if enabled {
            calls.push(BuilderCall::SetFlag { flag, enabled });
        }
    }
    if let Some(enabled) = config.tf32 {
        calls.push(BuilderCall::SetFlag {
            flag: BuilderFlag::Tf32,
            enabled,
        });
    }
    if let Some(level) = config.builder_optimization_level {
        calls.push(BuilderCall::SetBuilderOptimizationLevel(level));
    }
    let pools = [
        (MemoryPool::Workspace, config.memory_pools.workspace),
        (MemoryPool::TacticDram, config.memory_pools.tactic_dram),
        (
            MemoryPool::TacticSharedMemory,
            config.memory_pools.tactic_shared_memory,
        ),
    ];
    for (pool, limit) in pools {
        if let Some(bytes) = limit {
            calls.push(BuilderCall::SetMemoryPoolLimit { pool, bytes });
        }
    }
    if let Some(n) = config.max_aux_streams {
        calls.push(BuilderCall::SetMaxAuxStreams(n));
    }
    if let Some(n) = config.avg_timing_iterations {
        calls.push(BuilderCall::SetAvgTimingIterations(n));
    }
    if let Some(sources) = &config.tactic_sources {
        let mask = sources.iter().fold(0u32, |m, s| m | (1u32 << (*s as u32)));
        calls.push(BuilderCall::SetTacticSources(mask));
    }
    if let Some(level) = config.tiling_optimization_level {
        calls.push(BuilderCall::SetTilingOptimizationLevel(level));
    }
    if let Some(level) = config.hardware_compatibility_level {
        calls.push(BuilderCall::SetHardwareCompatibilityLevel(level));
    }
    if !config.compute_capabilities.is_empty() {
        let n = config.compute_capabilities.len() as i32;
        calls.push(BuilderCall::SetNbComputeCapabilities(n));
        calls.extend(
            config
                .compute_capabilities
                .iter()
                .enumerate()
                .map(|(index, &capability)| BuilderCall::SetComputeCapability {
                    capability,
                    index: index as i32,
                }),
        );
    }
    if let Some(v) = config.profiling_verbosity {
        calls.push(BuilderCall::SetProfilingVerbosity(v));
    }
    if let Some(cache) = &config.timing_cache {
        calls.push(BuilderCall::SetTimingCache {
            ignore_mismatch: cache.ignore_mismatch,
        });
        for (flag, enabled) in [
            (BuilderFlag::EditableTimingCache, cache.editable),
            (BuilderFlag::ErrorOnTimingCacheMiss, cache.error_on_miss),
        ] {
            if enabled {
                calls.push(BuilderCall::SetFlag { flag, enabled });
            }
        }
    }
    Ok(calls)
}

#[cfg(test)]
#[path = "calls_tests.rs"]
mod tests;
