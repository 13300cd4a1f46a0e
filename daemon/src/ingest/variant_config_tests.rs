//! How manifest settings become builder options, and which are refused.

use std::path::Path;

use super::*;

/// The build config of the single engine of an RTX manifest with `extra` added to [defaults].
fn rtx_config(extra: &str) -> Result<BuildConfig, ConfigError> {
    config_of(&format!(
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
         toolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.6\", \"12.0\"]\n{extra}"
    ))
}

fn config_of(toml: &str) -> Result<BuildConfig, ConfigError> {
    let manifest = manifest_schema::parse(toml, Path::new("engine.toml"))
        .unwrap_or_else(|errors| panic!("test manifest is invalid:\n{errors}"));
    build_config_for_prepared_model(&manifest.variants()[0])
}

#[test]
fn fp32_forbids_tf32_and_tf32_allows_it() {
    assert_eq!(rtx_config("").unwrap().tf32, Some(false));
    assert_eq!(rtx_config("precision = \"tf32\"").unwrap().tf32, Some(true));
}

#[test]
fn reduced_precisions_are_a_model_transform_or_a_check_never_a_flag() {
    use crate::build::prepare::Preparation;
    use onnx_graph::autocast::{AutocastOptions, AutocastTarget};
    let variant = |precision: &str| {
        let toml = format!(
            "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\nprecision = \"{precision}\"\n[defaults.compatibility]\ncompute_capabilities = [\"8.6\"]\n"
        );
        manifest_schema::parse(&toml, Path::new("engine.toml"))
            .unwrap()
            .variants()[0]
            .clone()
    };
    let expected = [
        ("fp32", Preparation::CheckOnly),
        ("tf32", Preparation::CheckOnly),
        (
            "fp16",
            Preparation::Autocast(AutocastOptions::new(AutocastTarget::Half)),
        ),
        (
            "bf16",
            Preparation::Autocast(AutocastOptions::new(AutocastTarget::BFloat16)),
        ),
        ("int8", Preparation::ExplicitQuantization("int8")),
        ("fp8", Preparation::ExplicitQuantization("fp8")),
        ("fp4", Preparation::ExplicitQuantization("fp4")),
    ];
    for (precision, handling) in expected {
        let v = variant(precision);
        assert_eq!(Preparation::for_variant(&v), handling, "{precision}");
        // The prepared model carries the precision; only tf32 is a builder flag.
        let config = build_config_for_prepared_model(&v).unwrap();
        assert_eq!(config.tf32, Some(precision == "tf32"), "{precision}");
    }
}

#[test]
fn compute_capabilities_map_to_rtx_targets_in_order() {
    let config = rtx_config("").unwrap();
    assert_eq!(
        config.compute_capabilities,
        vec![ComputeCapability::new(8, 6), ComputeCapability::new(12, 0)]
    );
}

#[test]
fn an_unknown_compute_capability_is_refused_with_the_known_ones() {
    let error = config_of(
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
         toolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"9.0\"]\n",
    )
    .unwrap_err();
    assert_eq!(error.setting, "compatibility.compute_capabilities");
    assert!(error.reason.contains("8.6"), "{error}");
}

#[test]
fn profiles_keep_order_and_shapes() {
    let config = rtx_config(
        "[[profile]]\ninputs.x = { min = [1, 3], opt = [4, 3], max = [8, 3] }\n\
         [[profile]]\ninputs.x = { min = [8, 3], opt = [16, 3], max = [32, 3] }\n",
    )
    .unwrap();
    assert_eq!(config.profiles.len(), 2);
    assert_eq!(
        config.profiles[1].inputs,
        vec![ProfileInput::new("x", &[8, 3], &[16, 3], &[32, 3])]
    );
}

#[test]
fn builder_knobs_pass_through() {
    let config = rtx_config(
        "optimization_level = 5\nmax_aux_streams = 2\ntiling_optimization_level = \"moderate\"\n\
         tactic_sources = [\"jit-convolutions\"]\nmemory_pools.workspace = \"1GiB\"\n\
         weights.refit = \"identical\"\nweights.strip = true\n",
    )
    .unwrap();
    assert_eq!(config.builder_optimization_level, Some(5));
    assert_eq!(config.max_aux_streams, Some(2));
    assert_eq!(
        config.tiling_optimization_level,
        Some(TilingOptimizationLevel::Moderate)
    );
    assert_eq!(
        config.tactic_sources,
        Some(vec![trt_ffi::TacticSource::JitConvolutions])
    );
    assert_eq!(config.memory_pools.workspace, Some(1 << 30));
    assert!(config.refit_identical && config.strip_plan);
    assert!(!config.refit && !config.refit_individual);
    // RTX does not time tactics: no averaging call is made.
    assert_eq!(config.avg_timing_iterations, None);
    assert_eq!(
        config.profiling_verbosity,
        Some(ProfilingVerbosity::Detailed)
    );
}

#[test]
fn removed_tactic_sources_are_refused() {
    let error = rtx_config("tactic_sources = [\"cublas\"]").unwrap_err();
    assert_eq!(error.setting, "tactic_sources");
}

const ENTERPRISE: &str = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
                          toolchain = \"tensorrt 11.4\"\navg_timing_iterations = 4\n";

#[test]
fn enterprise_record_builds_with_an_editable_cache_it_returns() {
    let config = config_of(&format!(
        "{ENTERPRISE}timing_cache.policy = \"record\"\ncompatibility.hardware = \"ampere+\"\n"
    ))
    .unwrap();
    let cache = config.timing_cache.expect("record uses a timing cache");
    assert!(cache.editable && cache.write_output && !cache.error_on_miss);
    assert_eq!(config.avg_timing_iterations, Some(4));
    assert_eq!(
        config.hardware_compatibility_level,
        Some(HardwareCompatibilityLevel::AmperePlus)
    );
}

#[test]
fn enterprise_locked_fails_on_a_miss_and_writes_nothing_back() {
    let config = config_of(&format!("{ENTERPRISE}timing_cache.policy = \"locked\"\n")).unwrap();
    let cache = config.timing_cache.expect("locked uses a timing cache");
    assert!(cache.error_on_miss && !cache.editable && !cache.write_output);
    // The bytes come from the registry at build time, never from the configuration.
    assert_eq!(cache.input, None);
}

/// An fp16 RTX manifest with `autocast` settings in [defaults] and `engine` overrides.
fn autocast_variant(engine: &str) -> manifest_schema::Variant {
    let toml = format!(
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\
         precision = \"fp16\"\ncompatibility.compute_capabilities = [\"8.6\"]\n\
         [defaults.autocast]\nkeep_fp32 = [\"Sigmoid\"]\n[[engine]]\nname = \"e\"\n{engine}"
    );
    manifest_schema::parse(&toml, Path::new("engine.toml"))
        .unwrap_or_else(|errors| panic!("test manifest is invalid:\n{errors}"))
        .variants()[0]
        .clone()
}

/// The options the prepare step autocasts `variant` with.
fn prepare_options(variant: &manifest_schema::Variant) -> onnx_graph::autocast::AutocastOptions {
    match crate::build::prepare::Preparation::for_variant(variant) {
        crate::build::prepare::Preparation::Autocast(options) => options,
        other => panic!("fp16 is autocast, not {other:?}"),
    }
}

#[test]
fn autocast_settings_reach_the_prepare_options() {
    use onnx_graph::autocast::{AutocastOptions, AutocastTarget, DEFAULT_INLINE_LIMIT};
    let ops = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    let options = prepare_options(&autocast_variant(
        "precision = \"bf16\"\nautocast.convert = [\"Softmax\"]\nautocast.keep_fp32_io = true\n",
    ));
    assert_eq!(
        options,
        AutocastOptions {
            target: AutocastTarget::BFloat16,
            keep_fp32_ops: ops(&["Sigmoid"]),
            force_convert_ops: ops(&["Softmax"]),
            keep_fp32_io: true,
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    );
    // Without an `autocast` table the options are autocast's own defaults.
    let plain = autocast_variant("autocast.keep_fp32 = []\n");
    assert_eq!(
        prepare_options(&plain),
        AutocastOptions::new(AutocastTarget::Half)
    );
}

#[test]
fn the_options_change_what_autocast_keeps_in_fp32() {
    use onnx_graph::DataType;
    // The precision-fanout example: conv-BN-SiLU (Sigmoid) stages and a final Softmax.
    let kept_ops = |engine: &str| {
        let options = prepare_options(&autocast_variant(engine));
        let mut model = onnx_graph::example_models::backbone();
        let report = onnx_graph::autocast::autocast_model(&mut model, &options);
        let mut ops: Vec<String> = report
            .kept_fp32_nodes
            .into_iter()
            .map(|(_, op)| op)
            .collect();
        ops.sort();
        ops.dedup();
        let graph = model.graph.expect("a graph");
        let input_type = graph.input[0]
            .r#type
            .as_ref()
            .and_then(|t| t.value.as_ref())
            .and_then(|v| match v {
                onnx_graph::proto::type_proto::Value::TensorType(t) => t.elem_type,
                _ => None,
            });
        (ops, input_type)
    };
    let float = Some(DataType::Float as i32);
    let half = Some(DataType::Float16 as i32);
    assert_eq!(
        kept_ops(""),
        (vec!["Sigmoid".to_string(), "Softmax".to_string()], half)
    );
    assert_eq!(
        kept_ops("autocast.convert = [\"Softmax\"]\nautocast.keep_fp32 = []\n"),
        (vec![], half)
    );
    assert_eq!(
        kept_ops("autocast.keep_fp32_io = true\n"),
        (vec!["Sigmoid".to_string(), "Softmax".to_string()], float)
    );
}
