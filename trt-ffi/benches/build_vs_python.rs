//! Build time of the same model and settings through trt-ffi and through NVIDIA's TensorRT-RTX
//! Python bindings, measured in the same run. Prints both and the ratio; asserts nothing.
//!
//! `cargo bench -p trt-ffi --bench build_vs_python` (needs scripts/setup). Environment:
//! TRTFARM_BENCH_MODEL (light model name, default squeezenet), TRTFARM_BENCH_ITERATIONS (5).
//! Both sides time parse + configure + build + write of the plan. Python builds run one per
//! interpreter (like trt-ffi's one build per worker process) but are timed inside the script,
//! so interpreter start-up and imports are not counted.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use trt_ffi::{
    BuildConfig, BuildRequest, ComputeCapability, Flavour, IgnoreProgress, OnnxSource, Toolchain,
};

// The tests' helpers locate the set-up models, venv and libraries the same way.
#[path = "../tests/common/mod.rs"]
mod common;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let iterations: usize = std::env::var("TRTFARM_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let model_name = std::env::var("TRTFARM_BENCH_MODEL").unwrap_or_else(|_| "squeezenet".into());
    let model = common::light_model(&model_name);
    let python = common::python();
    let lib_dir = common::rtx_lib_dir();
    let dir = tempfile::tempdir().expect("temp dir");

    let load_start = Instant::now();
    let toolchain = Toolchain::load(Flavour::TensorRtRtx, Some(&lib_dir))
        .unwrap_or_else(|e| panic!("{e}\n(run scripts/setup)"));
    let load_seconds = load_start.elapsed().as_secs_f64();

    // Same settings on both sides: one target, everything else TensorRT's default.
    let request = BuildRequest {
        onnx: OnnxSource::File(model.clone()),
        config: BuildConfig {
            compute_capabilities: vec![ComputeCapability::new(8, 6)],
            ..Default::default()
        },
        plan_path: dir.path().join("trt-ffi.plan"),
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/build_with_python.py");
    let python_plan = dir.path().join("python.plan");
    let python_build = || -> (f64, u64) {
        let output = Command::new(&python)
            .arg(&script)
            .arg("--onnx")
            .arg(&model)
            .arg("--plan")
            .arg(&python_plan)
            .args(["--cc", "86"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup)", python.display()));
        assert!(
            output.status.success(),
            "python build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("python prints JSON");
        let seconds = report["seconds"][0].as_f64().expect("seconds");
        (seconds, report["size"].as_u64().unwrap_or(0))
    };

    // Interleaved, so that load from other processes on a shared machine hits both sides alike.
    // Python's interpreter start and imports are outside its timed region.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut plan_size, mut python_size) = (0, 0);
    for _ in 0..iterations {
        let start = Instant::now();
        let output = toolchain
            .build(&request, &mut IgnoreProgress)
            .unwrap_or_else(|e| panic!("trt-ffi build failed: {e}"));
        ours.push(start.elapsed().as_secs_f64());
        plan_size = output.plan_size;
        let (seconds, size) = python_build();
        theirs.push(seconds);
        python_size = size;
    }

    let same_bytes = std::fs::read(&request.plan_path).ok() == std::fs::read(&python_plan).ok();
    let (ours_median, theirs_median) = (median(&mut ours), median(&mut theirs));
    println!(
        "model light_{model_name}.onnx, target sm_86, {iterations} builds each, TensorRT-RTX {}",
        toolchain.version()
    );
    println!("toolchain load (dlopen): {load_seconds:.3} s");
    println!("trt-ffi: median {ours_median:.3} s  all {ours:.3?}");
    println!("python : median {theirs_median:.3} s  all {theirs:.3?}");
    println!(
        "ratio trt-ffi / python (median): {:.3}",
        ours_median / theirs_median
    );
    println!(
        "plan: {plan_size} bytes (python {python_size}), last plans byte-identical: {same_bytes}"
    );
}
