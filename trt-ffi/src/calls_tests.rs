//! How each `BuildConfig` option maps to builder calls, for both flavours.

use super::*;
use crate::config::{
    MemoryPoolLimits, OptimizationProfile, ProfileInput, TacticSource, TimingCacheConfig,
};

const RTX: Flavour = Flavour::TensorRtRtx;
const TRT: Flavour = Flavour::TensorRt;

fn calls(flavour: Flavour, config: &BuildConfig) -> Vec<BuilderCall> {
    plan_builder_calls(flavour, config).expect("supported")
}

fn refused(flavour: Flavour, config: &BuildConfig) -> &'static str {
    plan_builder_calls(flavour, config)
        .expect_err("must be refused")
        .option
}

/// Options both flavours accept, each with the single call it must produce.
fn shared_options() -> Vec<(BuildConfig, Vec<BuilderCall>)> {
    let flag = |flag, enabled| BuilderCall::SetFlag { flag, enabled };
    vec![
        (
            BuildConfig {
                builder_optimization_level: Some(5),
                ..Default::default()
            },
            vec![BuilderCall::SetBuilderOptimizationLevel(5)],
        ),
        (
            BuildConfig {
                memory_pools: MemoryPoolLimits {
                    workspace: Some(1 << 30),
                    tactic_dram: Some(2 << 30),
                    tactic_shared_memory: Some(48 << 10),
                },
                ..Default::default()
            },
            vec![
                BuilderCall::SetMemoryPoolLimit {
                    pool: MemoryPool::Workspace,
                    bytes: 1 << 30,
                },
                BuilderCall::SetMemoryPoolLimit {
                    pool: MemoryPool::TacticDram,
                    bytes: 2 << 30,
                },
                BuilderCall::SetMemoryPoolLimit {
                    pool: MemoryPool::TacticSharedMemory,
                    bytes: 48 << 10,
                },
            ],
        ),
        (
            BuildConfig {
                max_aux_streams: Some(2),
                ..Default::default()
            },
            vec![BuilderCall::SetMaxAuxStreams(2)],
        ),
        (
            BuildConfig {
                tactic_sources: Some(vec![
                    TacticSource::JitConvolutions,
                    TacticSource::EdgeMaskConvolutions,
                ]),
                ..Default::default()
            },
            vec![BuilderCall::SetTacticSources(0b11)],
        ),
        (
            BuildConfig {
                tactic_sources: Some(vec![]),
                ..Default::default()
            },
            vec![BuilderCall::SetTacticSources(0)],
        ),
        (
            BuildConfig {
                tiling_optimization_level: Some(TilingOptimizationLevel::Full),
                ..Default::default()
            },
            vec![BuilderCall::SetTilingOptimizationLevel(
                TilingOptimizationLevel::Full,
            )],
        ),
        (
            BuildConfig {
                refit: true,
                ..Default::default()
            },
            vec![flag(BuilderFlag::Refit, true)],
        ),
        (
            BuildConfig {
                refit_individual: true,
                ..Default::default()
            },
            vec![flag(BuilderFlag::RefitIndividual, true)],
        ),
        (
            BuildConfig {
                refit_identical: true,
                strip_plan: true,
                ..Default::default()
            },
            vec![
                flag(BuilderFlag::RefitIdentical, true),
                flag(BuilderFlag::StripPlan, true),
            ],
        ),
        (
            BuildConfig {
                tf32: Some(false),
                ..Default::default()
            },
            vec![flag(BuilderFlag::Tf32, false)],
        ),
        (
            BuildConfig {
                tf32: Some(true),
                ..Default::default()
            },
            vec![flag(BuilderFlag::Tf32, true)],
        ),
        (
            BuildConfig {
                profiling_verbosity: Some(ProfilingVerbosity::Detailed),
                ..Default::default()
            },
            vec![BuilderCall::SetProfilingVerbosity(
                ProfilingVerbosity::Detailed,
            )],
        ),
        (
            BuildConfig {
                // layer_info is a post-build step, not a builder call.
                layer_info: true,
                ..Default::default()
            },
            vec![],
        ),
    ]
}

#[test]
fn default_config_makes_no_calls_on_either_flavour() {
    for flavour in [RTX, TRT] {
        assert_eq!(calls(flavour, &BuildConfig::default()), vec![]);
    }
}

#[test]
fn shared_options_map_to_the_same_calls_on_both_flavours() {
    for (config, expected) in shared_options() {
        for flavour in [RTX, TRT] {
            assert_eq!(calls(flavour, &config), expected, "{flavour} {config:?}");
        }
    }
}

#[test]
fn profiles_come_first_in_order() {
    let profile = |n| OptimizationProfile {
        inputs: vec![ProfileInput::new("x", &[1, n], &[2, n], &[4, n])],
    };
    let config = BuildConfig {
        profiles: vec![profile(3), profile(5)],
        builder_optimization_level: Some(2),
        ..Default::default()
    };
    for flavour in [RTX, TRT] {
        assert_eq!(
            calls(flavour, &config),
            vec![
                BuilderCall::AddOptimizationProfile(0),
                BuilderCall::AddOptimizationProfile(1),
                BuilderCall::SetBuilderOptimizationLevel(2),
            ]
        );
    }
}

const SM86: ComputeCapability = ComputeCapability::new(8, 6);
const SM120: ComputeCapability = ComputeCapability::new(12, 0);

#[test]
fn compute_capabilities_are_rtx_only() {
    let config = BuildConfig {
        compute_capabilities: vec![SM86, SM120],
        ..Default::default()
    };
    assert_eq!(
        calls(RTX, &config),
        vec![
            BuilderCall::SetNbComputeCapabilities(2),
            BuilderCall::SetComputeCapability {
                capability: SM86,
                index: 0
            },
            BuilderCall::SetComputeCapability {
                capability: SM120,
                index: 1
            },
        ]
    );
    assert_eq!(refused(TRT, &config), "compute_capabilities");
}

#[test]
fn every_tensorrt_rtx_target_maps_to_tensorrts_enum_and_no_other() {
    for cc in ComputeCapability::TENSORRT_RTX_TARGETS {
        assert_eq!(tensorrt_compute_capability(cc), Some(i64::from(cc.sm())));
    }
    assert_eq!(
        tensorrt_compute_capability(ComputeCapability::new(9, 0)),
        None
    );
    let hopper = BuildConfig {
        compute_capabilities: vec![SM86, ComputeCapability::new(9, 0)],
        ..Default::default()
    };
    let err = plan_builder_calls(RTX, &hopper).unwrap_err();
    assert_eq!(err.option, "compute_capabilities");
    assert!(err.to_string().contains("8.6, 8.9, 12.0"), "{err}");
}

#[test]
fn hardware_compatibility_is_enterprise_only() {
    let config = BuildConfig {
        hardware_compatibility_level: Some(HardwareCompatibilityLevel::AmperePlus),
        ..Default::default()
    };
    assert_eq!(
        calls(TRT, &config),
        vec![BuilderCall::SetHardwareCompatibilityLevel(
            HardwareCompatibilityLevel::AmperePlus
        )]
    );
    assert_eq!(refused(RTX, &config), "hardware_compatibility_level");
}

#[test]
fn version_compatibility_and_lean_runtime_are_enterprise_only() {
    let config = BuildConfig {
        version_compatible: true,
        exclude_lean_runtime: true,
        ..Default::default()
    };
    assert_eq!(
        calls(TRT, &config),
        vec![
            BuilderCall::SetFlag {
                flag: BuilderFlag::VersionCompatible,
                enabled: true
            },
            BuilderCall::SetFlag {
                flag: BuilderFlag::ExcludeLeanRuntime,
                enabled: true
            },
        ]
    );
    assert_eq!(refused(RTX, &config), "version_compatible");
    let lean_only = BuildConfig {
        exclude_lean_runtime: true,
        ..Default::default()
    };
    assert_eq!(refused(RTX, &lean_only), "exclude_lean_runtime");
}

#[test]
fn avg_timing_iterations_are_enterprise_only() {
    let config = BuildConfig {
        avg_timing_iterations: Some(4),
        ..Default::default()
    };
    assert_eq!(
        calls(TRT, &config),
        vec![BuilderCall::SetAvgTimingIterations(4)]
    );
    assert_eq!(refused(RTX, &config), "avg_timing_iterations");
}

#[test]
fn timing_cache_sets_the_cache_then_its_flags_on_enterprise_only() {
    let config = BuildConfig {
        timing_cache: Some(TimingCacheConfig {
            input: Some(vec![1, 2, 3]),
            write_output: true,
            editable: true,
            error_on_miss: true,
            ignore_mismatch: false,
        }),
        ..Default::default()
    };
    assert_eq!(
        calls(TRT, &config),
        vec![
            BuilderCall::SetTimingCache {
                ignore_mismatch: false
            },
            BuilderCall::SetFlag {
                flag: BuilderFlag::EditableTimingCache,
                enabled: true
            },
            BuilderCall::SetFlag {
                flag: BuilderFlag::ErrorOnTimingCacheMiss,
                enabled: true
            },
        ]
    );
    assert_eq!(refused(RTX, &config), "timing_cache");
    // Even an "empty" timing-cache request is refused rather than ignored.
    let empty = BuildConfig {
        timing_cache: Some(TimingCacheConfig::default()),
        ..Default::default()
    };
    assert_eq!(refused(RTX, &empty), "timing_cache");
}

#[test]
fn refusal_names_flavour_and_reason() {
    let config = BuildConfig {
        hardware_compatibility_level: Some(HardwareCompatibilityLevel::SameComputeCapability),
        ..Default::default()
    };
    let err = plan_builder_calls(RTX, &config).unwrap_err();
    assert_eq!(err.flavour, RTX);
    let text = err.to_string();
    assert!(text.contains("hardware_compatibility_level"), "{text}");
    assert!(text.contains("TensorRT-RTX"), "{text}");
}

#[test]
fn ffi_encoding_uses_tensorrt_enum_values() {
    let encoded = BuilderCall::SetComputeCapability {
        capability: ComputeCapability::new(8, 9),
        index: 3,
    }
    .to_ffi();
    assert_eq!(encoded.kind, ffi::TRTFARM_CALL_SET_COMPUTE_CAP as i32);
    assert_eq!((encoded.a, encoded.b), (89, 3));
    let flag = BuilderCall::SetFlag {
        flag: BuilderFlag::Tf32,
        enabled: false,
    }
    .to_ffi();
    assert_eq!(
        (flag.kind, flag.a, flag.b),
        (ffi::TRTFARM_CALL_SET_FLAG as i32, 6, 0)
    );
    let pool = BuilderCall::SetMemoryPoolLimit {
        pool: MemoryPool::TacticSharedMemory,
        bytes: u64::MAX,
    }
    .to_ffi();
    assert_eq!((pool.a, pool.b), (5, i64::MAX));
}
