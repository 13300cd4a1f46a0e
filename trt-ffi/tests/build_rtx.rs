//! Real TensorRT-RTX builds through the shim. Needs scripts/setup; fails (never skips) without it.

mod common;

use std::path::Path;

use common::{Recorder, file_digest, light_model, rtx};
use trt_ffi::{
    BuildConfig, BuildError, BuildOutput, BuildRequest, ComputeCapability, Flavour,
    HardwareCompatibilityLevel, IgnoreProgress, LayerPrecisionReport, OnnxSource,
    OptimizationProfile, ProfileInput, ProfilingVerbosity, Severity, Toolchain,
};

fn batch_profile(input: &str, min: i64, opt: i64, max: i64) -> OptimizationProfile {
    let shape = |n| [n, 3, 224, 224];
    OptimizationProfile {
        inputs: vec![ProfileInput::new(
            input,
            &shape(min),
            &shape(opt),
            &shape(max),
        )],
    }
}

fn inspected(config: BuildConfig) -> BuildConfig {
    BuildConfig {
        profiling_verbosity: Some(ProfilingVerbosity::Detailed),
        layer_info: true,
        ..config
    }
}

/// The checks every successful build must pass.
fn check_output(output: &BuildOutput, plan: &Path) {
    assert_eq!(output.plan_path, plan);
    assert!(output.plan_size > 0, "empty plan");
    assert_eq!(std::fs::metadata(plan).unwrap().len(), output.plan_size);
    assert_eq!(
        output.plan_digest,
        file_digest(plan),
        "digest differs from the file's"
    );
    // No temporary files left beside the plan.
    let leftovers: Vec<_> = std::fs::read_dir(plan.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".plan-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Either the inspector ran (GPU host) and lists layers, or TensorRT said why it could not.
    match (&output.layer_info_json, &output.layer_info_error) {
        (Some(json), None) => {
            let value: serde_json::Value = serde_json::from_str(json).expect("inspector JSON");
            let layers = value["Layers"].as_array().expect("Layers array");
            assert!(!layers.is_empty(), "{json}");
        }
        (None, Some(why)) => {
            assert!(!why.is_empty());
            eprintln!("layer info unavailable here: {why}");
        }
        other => panic!("inconsistent layer info {other:?}"),
    }
    // With detailed verbosity the builder itself lists the layers, GPU or not.
    let listing = trt_ffi::builder_layer_listing(&output.log).expect("the builder's listing");
    let report = LayerPrecisionReport::from_layer_listing(listing).expect("a layer listing");
    assert!(report.layers > 0, "{listing}");
    assert!(
        report.by_precision.get("fp32").copied().unwrap_or(0) > 0,
        "an fp32 model has fp32 layers: {report}\n{listing}"
    );
    assert!(!report.by_precision.contains_key("fp16"), "{report}");
}

#[test]
fn toolchain_reports_version_paths_and_digest() {
    let toolchain = rtx();
    assert_eq!(toolchain.flavour(), Flavour::TensorRtRtx);
    let version = toolchain.version();
    assert_eq!((version.major, version.minor), (1, 7), "{version}");
    assert!(version.build > 0, "{version}");
    assert_eq!(toolchain.headers_version(), "1.7.1.116");
    assert!(toolchain.library_path().ends_with("libtensorrt_rtx.so.1"));
    let digest = toolchain.library_digest().unwrap();
    assert_eq!(digest, file_digest(toolchain.library_path()));
    assert_eq!(toolchain.library_digest().unwrap(), digest);
}

#[test]
fn squeezenet_dynamic_batch_for_two_targets() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::dynamic_light_model("squeezenet", dir.path());
    let plan = dir.path().join("plans/squeezenet.plan");
    let mut recorder = Recorder::default();
    let request = BuildRequest {
        onnx: OnnxSource::File(model),
        config: inspected(BuildConfig {
            profiles: vec![batch_profile("data_0", 1, 2, 4)],
            compute_capabilities: vec![ComputeCapability::new(8, 6), ComputeCapability::new(12, 0)],
            ..Default::default()
        }),
        plan_path: plan.clone(),
    };
    let output = rtx().build(&request, &mut recorder).expect("build");
    check_output(&output, &plan);
    assert!(!recorder.phases.is_empty(), "no progress phases reported");
    assert!(recorder.steps > 0, "no progress steps reported");
    assert_eq!(
        recorder.log, output.log,
        "observer and output saw different logs"
    );
    eprintln!(
        "squeezenet: {} bytes, {} phases, {} steps, {} log lines",
        output.plan_size,
        recorder.phases.len(),
        recorder.steps,
        output.log.len()
    );
}

#[test]
fn shufflenet_dynamic_batch_with_two_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::dynamic_light_model("shufflenet", dir.path());
    let plan = dir.path().join("shufflenet.plan");
    let request = BuildRequest {
        // From bytes: the parser path without a file name.
        onnx: OnnxSource::Bytes(std::fs::read(&model).unwrap()),
        config: inspected(BuildConfig {
            profiles: vec![
                batch_profile("gpu_0/data_0", 1, 1, 2),
                batch_profile("gpu_0/data_0", 2, 4, 8),
            ],
            compute_capabilities: vec![ComputeCapability::new(8, 0), ComputeCapability::new(8, 9)],
            ..Default::default()
        }),
        plan_path: plan.clone(),
    };
    let output = rtx().build(&request, &mut IgnoreProgress).expect("build");
    check_output(&output, &plan);
}

#[test]
fn inception_and_resnet_with_fixed_shapes() {
    // Their Reshape nodes hard-code batch 1 ("reshape would change volume"), so the batch
    // dimension cannot be made dynamic: they are built with their fixed 1x3x224x224 input.
    let dir = tempfile::tempdir().unwrap();
    let toolchain = rtx();
    for (model, targets) in [
        ("inception_v1", vec![ComputeCapability::new(8, 9)]),
        (
            "resnet50",
            vec![ComputeCapability::new(8, 0), ComputeCapability::new(12, 0)],
        ),
    ] {
        let plan = dir.path().join(format!("{model}.plan"));
        let request = BuildRequest {
            onnx: OnnxSource::File(light_model(model)),
            config: inspected(BuildConfig {
                compute_capabilities: targets,
                ..Default::default()
            }),
            plan_path: plan.clone(),
        };
        let output = toolchain.build(&request, &mut IgnoreProgress).expect(model);
        check_output(&output, &plan);
        eprintln!("{model}: {} bytes", output.plan_size);
    }
}

#[test]
fn same_request_twice_in_one_process_gives_same_plan_size() {
    // Byte identity across builds is not guaranteed (the heap layout moves them); size is.
    let dir = tempfile::tempdir().unwrap();
    let model = common::twin_model(dir.path());
    let toolchain = rtx();
    let mut digests = Vec::new();
    let mut sizes = Vec::new();
    for i in 0..2 {
        let request = BuildRequest {
            onnx: OnnxSource::File(model.clone()),
            config: BuildConfig {
                profiles: vec![twin_profile([1, 2, 4], [1, 2, 4])],
                compute_capabilities: vec![ComputeCapability::new(8, 6)],
                ..Default::default()
            },
            plan_path: dir.path().join(format!("twin{i}.plan")),
        };
        let output = toolchain.build(&request, &mut IgnoreProgress).unwrap();
        digests.push(output.plan_digest);
        sizes.push(output.plan_size);
    }
    assert_eq!(sizes[0], sizes[1]);
    eprintln!(
        "two builds in one process identical: {}",
        digests[0] == digests[1]
    );
}

#[test]
fn concurrent_builds_on_two_toolchains_are_serialised_and_keep_their_logs() {
    // Regression: two toolchains each registering a logger made TensorRT drop the second one,
    // and concurrent builds for different targets failed inside TensorRT-RTX.
    let dir = tempfile::tempdir().unwrap();
    let outputs: Vec<BuildOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = [ComputeCapability::new(8, 6), ComputeCapability::new(8, 9)]
            .into_iter()
            .map(|cc| {
                let plan = dir.path().join(format!("sq{}.plan", cc.sm()));
                scope.spawn(move || {
                    let request = BuildRequest {
                        onnx: OnnxSource::File(light_model("squeezenet")),
                        config: BuildConfig {
                            compute_capabilities: vec![cc],
                            ..Default::default()
                        },
                        plan_path: plan,
                    };
                    rtx().build(&request, &mut IgnoreProgress).expect("build")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for output in &outputs {
        assert!(output.plan_size > 0);
        assert!(!output.log.is_empty(), "a build lost its log");
        assert!(
            !output
                .log
                .iter()
                .any(|m| m.text.contains("logger passed into")),
            "TensorRT saw two loggers"
        );
    }
}

fn twin_profile(a: [i64; 3], b: [i64; 3]) -> OptimizationProfile {
    let shape = |n| [n, 3, 32, 32];
    OptimizationProfile {
        inputs: vec![
            ProfileInput::new("a", &shape(a[0]), &shape(a[1]), &shape(a[2])),
            ProfileInput::new("b", &shape(b[0]), &shape(b[1]), &shape(b[2])),
        ],
    }
}

#[test]
fn cancelling_from_the_progress_callback_stops_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("cancelled.plan");
    let mut recorder = Recorder {
        cancel_after_steps: Some(0),
        ..Default::default()
    };
    let request = BuildRequest {
        onnx: OnnxSource::File(light_model("squeezenet")),
        config: BuildConfig {
            compute_capabilities: vec![ComputeCapability::new(8, 6)],
            ..Default::default()
        },
        plan_path: plan.clone(),
    };
    let err = rtx().build(&request, &mut recorder).unwrap_err();
    assert!(matches!(err, BuildError::Cancelled), "{err}");
    assert!(recorder.cancelled);
    assert!(!plan.exists(), "a cancelled build left a plan");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(entries.is_empty(), "temporary files left: {entries:?}");
}

#[test]
fn truncated_onnx_reports_the_parser_message() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("invalid.plan");
    let model = std::fs::read(light_model("squeezenet")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &model[..model.len() / 2]).unwrap();
    let request = BuildRequest {
        onnx: OnnxSource::File(truncated),
        config: BuildConfig::default(),
        plan_path: plan.clone(),
    };
    let err = rtx().build(&request, &mut IgnoreProgress).unwrap_err();
    let BuildError::Parse { errors } = &err else {
        panic!("expected a parse error, got {err}");
    };
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| !e.message.is_empty()), "{errors:?}");
    eprintln!("{err}");
    assert!(!plan.exists());
}

#[test]
fn unknown_operator_names_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::unknown_op_model(dir.path());
    let request = BuildRequest {
        onnx: OnnxSource::Bytes(std::fs::read(model).unwrap()),
        config: BuildConfig::default(),
        plan_path: dir.path().join("unknown.plan"),
    };
    let err = rtx().build(&request, &mut IgnoreProgress).unwrap_err();
    eprintln!("{err}");
    let BuildError::Parse { errors } = &err else {
        panic!("expected a parse error, got {err}");
    };
    let error = errors
        .iter()
        .find(|e| e.node_name == "mystery")
        .unwrap_or_else(|| panic!("no error names node 'mystery': {errors:?}"));
    assert_eq!(error.op, "NoSuchOp");
    assert_eq!(error.node_index, 1);
    assert!(!error.message.is_empty(), "{error:?}");
}

#[test]
fn shared_symbolic_dimension_with_different_values_is_the_builders_error() {
    let dir = tempfile::tempdir().unwrap();
    let request = BuildRequest {
        onnx: OnnxSource::File(common::twin_model(dir.path())),
        // a and b share "N"; giving them different ranges contradicts the graph.
        config: BuildConfig {
            profiles: vec![twin_profile([1, 2, 4], [2, 4, 8])],
            ..Default::default()
        },
        plan_path: dir.path().join("twin.plan"),
    };
    let err = rtx().build(&request, &mut IgnoreProgress).unwrap_err();
    let BuildError::Builder { message, log_tail } = &err else {
        panic!("expected a builder error, got {err}");
    };
    eprintln!("{err}");
    // TensorRT-RTX 1.7 words it "Profile kOPT values are not self-consistent. Dimensions with
    // name N must be equal" (other versions say "contradictory").
    assert!(
        message.contains("Dimensions with name N must be equal")
            || message.contains("contradictory"),
        "{message}"
    );
    assert!(log_tail.iter().any(|m| m.severity <= Severity::Error));
}

#[test]
fn min_above_max_is_the_builders_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::dynamic_light_model("squeezenet", dir.path());
    let request = BuildRequest {
        onnx: OnnxSource::File(model),
        config: BuildConfig {
            profiles: vec![batch_profile("data_0", 8, 2, 1)],
            ..Default::default()
        },
        plan_path: dir.path().join("bad.plan"),
    };
    let err = rtx().build(&request, &mut IgnoreProgress).unwrap_err();
    assert!(matches!(err, BuildError::Builder { .. }), "{err}");
    eprintln!("{err}");
    assert!(!dir.path().join("bad.plan").exists());
}

#[test]
fn unsupported_option_is_refused_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("never.plan");
    let mut recorder = Recorder::default();
    let request = BuildRequest {
        onnx: OnnxSource::File(light_model("squeezenet")),
        config: BuildConfig {
            hardware_compatibility_level: Some(HardwareCompatibilityLevel::AmperePlus),
            ..Default::default()
        },
        plan_path: plan.clone(),
    };
    let err = rtx().build(&request, &mut recorder).unwrap_err();
    let BuildError::Unsupported(unsupported) = &err else {
        panic!("expected Unsupported, got {err}");
    };
    assert_eq!(unsupported.option, "hardware_compatibility_level");
    assert!(recorder.log.is_empty(), "TensorRT ran: {:?}", recorder.log);
    assert!(!plan.exists());
}

#[test]
fn bogus_lib_dir_names_the_libraries_and_directory() {
    let err =
        Toolchain::load(Flavour::TensorRtRtx, Some(Path::new("/nonexistent/trt"))).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("libtensorrt_rtx.so.1"), "{text}");
    assert!(text.contains("/nonexistent/trt"), "{text}");
}
