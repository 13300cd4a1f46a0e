//! Valid manifests: defaults, overrides, implicit variant, profiles, filesystem checks.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use manifest_schema::{
    Autocast, ComputeCapability, Flavour, GpuSelector, HardwareCompatibility, Manifest, Precision,
    RefitMode, TacticSource, TilingLevel, TimingCachePolicy, Version, parse,
};

fn ok(toml: &str) -> Manifest {
    match parse(toml, Path::new("models/resnet/engine.toml")) {
        Ok(manifest) => manifest,
        Err(errors) => panic!("{}", errors.render_plain()),
    }
}

fn cc(major: u32, minor: u32) -> ComputeCapability {
    ComputeCapability::new(major, minor)
}

/// The example at the top of the manifest reference in README.md, so the documentation cannot
/// drift from what the parser accepts.
fn doc_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap_or_else(|e| panic!("read README.md: {e}"));
    let reference = readme
        .split_once("## Manifest reference")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("README.md has a manifest reference section"));
    let (_, block) = reference
        .split_once("```toml\n")
        .unwrap_or_else(|| panic!("the manifest reference has a TOML example"));
    let (example, _) = block
        .split_once("```")
        .unwrap_or_else(|| panic!("the TOML example is closed"));
    example.to_string()
}

#[test]
fn the_reference_example_parses() {
    let m = ok(&doc_example());
    assert_eq!(m.schema_version, 1);
    assert_eq!(m.dir(), Path::new("models/resnet"));
    assert_eq!(m.model.path, "resnet50.onnx");
    assert_eq!(
        m.model.resolved_path,
        Path::new("models/resnet/resnet50.onnx")
    );
    assert_eq!(
        m.model.plugins[0].resolved_path,
        Path::new("models/resnet/plugins/libroi_align.so")
    );
    assert_eq!(m.model.digest, None);
    let names: Vec<&str> = m.variants().iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["fp16", "fp32-ada"]);

    let fp16 = &m.variants()[0];
    assert_eq!(
        fp16.output.as_deref(),
        Some(Path::new("models/resnet/build/resnet50.fp16.engine"))
    );
    let s = &fp16.settings;
    assert_eq!(s.toolchain.flavour, Flavour::TensorRtRtx);
    assert!(
        s.toolchain.matches(
            &"1.7.1.116"
                .parse::<Version>()
                .unwrap_or_else(|e| panic!("{e}"))
        )
    );
    assert_eq!(s.precision, Precision::Fp16);
    assert_eq!(s.optimization_level, 3);
    assert_eq!(s.build_timeout, Duration::from_secs(20 * 60));
    assert_eq!(
        s.compatibility.compute_capabilities,
        BTreeSet::from([cc(8, 6), cc(8, 9), cc(12, 0)])
    );
    assert_eq!(fp16.profiles.len(), 1);
    assert_eq!(fp16.profiles[0].name, "profile0");
    let images = &fp16.profiles[0].inputs["images"];
    assert_eq!(
        (images.min.clone(), images.opt[0], images.max[0]),
        (vec![1, 3, 224, 224], 8, 32)
    );

    let ada = &m.variants()[1];
    assert_eq!(ada.settings.precision, Precision::Fp32);
    assert_eq!(
        ada.settings.compatibility.compute_capabilities,
        BTreeSet::from([cc(8, 9)])
    );
    assert_eq!(ada.settings.build_timeout, Duration::from_secs(20 * 60));
    assert_eq!(ada.output, None);
    assert_eq!(ada.profiles, fp16.profiles);
}

#[test]
fn unset_settings_take_documented_defaults() {
    let m = ok(
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n",
    );
    assert_eq!(m.variants().len(), 1);
    let v = &m.variants()[0];
    assert_eq!(v.name, "default");
    assert!(v.profiles.is_empty());
    let s = &v.settings;
    assert_eq!(s.precision, Precision::Fp32);
    assert_eq!(s.optimization_level, 3);
    assert_eq!(s.max_aux_streams, None);
    assert_eq!(s.avg_timing_iterations, 1);
    assert_eq!(s.tactic_sources, None);
    assert_eq!(s.tiling, TilingLevel::None);
    assert_eq!(s.mps_percentage, None);
    assert_eq!(s.build_timeout, Duration::from_secs(3600));
    assert_eq!(s.memory_pools, Default::default());
    assert_eq!(s.compatibility.hardware, HardwareCompatibility::None);
    assert!(!s.compatibility.version_compatible && !s.compatibility.exclude_lean_runtime);
    assert!(s.compatibility.compute_capabilities.is_empty());
    assert_eq!(s.compatibility.gpu, None);
    assert_eq!(s.timing_cache, TimingCachePolicy::Off);
    assert_eq!((s.weights.refit, s.weights.strip), (RefitMode::None, false));
    assert!(s.autocast.is_default());
}

fn ops(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn autocast_settings_merge_key_by_key_and_apply_to_autocast_engines_only() {
    let m = ok(r#"schema_version = 1
[model]
path = "m.onnx"
[defaults]
toolchain = "tensorrt-rtx 1.7"
precision = "fp16"
compatibility.compute_capabilities = ["8.6"]
[defaults.autocast]
keep_fp32 = ["Sigmoid", "Tanh", "Sigmoid"]
keep_fp32_io = true
[[engine]]
name = "inherits"
[[engine]]
name = "own"
precision = "bf16"
autocast.keep_fp32 = ["Erf"]
autocast.convert = ["Softmax", "ReduceMean"]
[[engine]]
name = "reverts"
autocast = { keep_fp32 = [], keep_fp32_io = false }
[[engine]]
name = "baseline"
precision = "fp32"
"#);
    let autocast = |name: &str| {
        m.variant(name)
            .map(|v| v.settings.autocast.clone())
            .unwrap_or_else(|| panic!("no engine {name}"))
    };
    assert_eq!(
        autocast("inherits"),
        Autocast {
            keep_fp32: ops(&["Sigmoid", "Tanh"]),
            convert: BTreeSet::new(),
            keep_fp32_io: true,
        }
    );
    // The engine's list replaces the default's; keys it leaves out are inherited.
    assert_eq!(
        autocast("own"),
        Autocast {
            keep_fp32: ops(&["Erf"]),
            convert: ops(&["ReduceMean", "Softmax"]),
            keep_fp32_io: true,
        }
    );
    assert!(autocast("reverts").is_default());
    // [defaults.autocast] configures the autocast engines; the fp32 one is built as it is.
    assert!(autocast("baseline").is_default());
}

#[test]
fn the_build_gpu_is_a_compute_capability_or_a_name_fragment() {
    let m = ok(r#"schema_version = 1
[model]
path = "m.onnx"
[defaults]
toolchain = "tensorrt 11.4"
compatibility.gpu = "H100"
compatibility.hardware = "same-compute-capability"
[[engine]]
name = "h100"
[[engine]]
name = "hopper"
compatibility.gpu = " 9.0 "
[[engine]]
name = "l40s"
compatibility = { gpu = "NVIDIA L40S" }
"#);
    let gpu = |name: &str| {
        m.variant(name)
            .and_then(|v| v.settings.compatibility.gpu.clone())
    };
    assert_eq!(gpu("h100"), Some(GpuSelector::Name("H100".into())));
    assert_eq!(
        gpu("hopper"),
        Some(GpuSelector::ComputeCapability(cc(9, 0)))
    );
    assert_eq!(gpu("l40s"), Some(GpuSelector::Name("NVIDIA L40S".into())));
    // Tables merge key by key: `hardware` comes from [defaults].
    assert_eq!(
        m.variant("hopper")
            .map(|v| v.settings.compatibility.hardware),
        Some(HardwareCompatibility::SameComputeCapability)
    );
}

#[test]
fn engines_override_defaults_and_tables_merge_key_by_key() {
    let m = ok(r#"schema_version = 1
[model]
path = "m.onnx"
[defaults]
toolchain = "tensorrt >=10.8, <11"
optimization_level = 4
tactic_sources = ["cudnn", "cublas"]
memory_pools = { workspace = "2GiB", tactic_dram = 1024 }
compatibility = { hardware = "ampere+", version_compatible = true }
weights.refit = "all"
timing_cache.policy = "record"
[[engine]]
name = "a"
[[engine]]
name = "b"
toolchain = "tensorrt 11.4"
mps_percentage = 25
avg_timing_iterations = 8
max_aux_streams = 2
tiling_optimization_level = "full"
tactic_sources = ["jit-convolutions"]
memory_pools.tactic_dram = "64KiB"
compatibility.exclude_lean_runtime = true
weights.strip = true
timing_cache = { policy = "locked" }
"#);
    let a = &m.variants()[0].settings;
    let b = &m.variants()[1].settings;
    assert_eq!(a.optimization_level, 4);
    assert_eq!(
        a.tactic_sources,
        Some(BTreeSet::from([TacticSource::Cudnn, TacticSource::Cublas]))
    );
    assert_eq!(
        (a.memory_pools.workspace, a.memory_pools.tactic_dram),
        (Some(2 << 30), Some(1024))
    );
    assert_eq!(a.timing_cache, TimingCachePolicy::Record);
    assert_eq!(a.toolchain.to_string(), "tensorrt >=10.8, <11");

    assert_eq!(b.toolchain.to_string(), "tensorrt 11.4");
    assert_eq!(b.optimization_level, 4);
    assert_eq!(
        (b.mps_percentage, b.avg_timing_iterations, b.max_aux_streams),
        (Some(25), 8, Some(2))
    );
    assert_eq!(b.tiling, TilingLevel::Full);
    assert_eq!(
        b.tactic_sources,
        Some(BTreeSet::from([TacticSource::JitConvolutions]))
    );
    // Tables merge key by key: workspace from [defaults], tactic_dram from the engine.
    assert_eq!(
        (b.memory_pools.workspace, b.memory_pools.tactic_dram),
        (Some(2 << 30), Some(64 << 10))
    );
    assert_eq!(b.compatibility.hardware, HardwareCompatibility::AmperePlus);
    assert!(b.compatibility.version_compatible && b.compatibility.exclude_lean_runtime);
    assert_eq!((b.weights.refit, b.weights.strip), (RefitMode::All, true));
    assert_eq!(b.timing_cache, TimingCachePolicy::Locked);
}

#[test]
fn engines_with_own_profiles_replace_the_shared_ones() {
    let m = ok(r#"schema_version = 1
[model]
path = "m.onnx"
[defaults]
toolchain = "tensorrt 10.8"
[[profile]]
name = "small"
inputs.x = { min = [1, 4], opt = [2, 4], max = [4, 4] }
[[profile]]
inputs.x = { min = [4, 4], opt = [8, 4], max = [16, 4] }
[[engine]]
name = "shared"
[[engine]]
name = "own"
[[engine.profile]]
name = "only"
inputs.y = { min = [1], opt = [1], max = [1] }
inputs.x = { min = [1], opt = [1], max = [1] }
"#);
    let shared = &m.variants()[0];
    let names: Vec<&str> = shared.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["small", "profile1"]);
    let own = m
        .variant("own")
        .map(|v| v.profiles.clone())
        .unwrap_or_default();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].name, "only");
    assert_eq!(own[0].inputs.keys().collect::<Vec<_>>(), ["x", "y"]);
}

#[test]
fn check_inputs_finds_missing_files_and_digest_mismatches() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("tempdir")
    };
    let model = dir.path().join("m.onnx");
    if let Err(e) = std::fs::write(&model, b"not really onnx") {
        panic!("{e}");
    }
    let good = blake3::hash(b"not really onnx").to_hex().to_string();
    let text = |digest: &str| {
        format!(
            "schema_version = 1\n[model]\npath = \"m.onnx\"\ndigest = \"blake3:{digest}\"\nplugins = [\"p.so\"]\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n"
        )
    };
    let manifest_path = dir.path().join("engine.toml");
    let load = |toml: String| match parse(&toml, &manifest_path) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let m = load(text(&good));
    let found = m.check_inputs();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("plugin") && found[0].message.contains("does not exist"));
    assert_eq!((found[0].line, found[0].column), (5, 12));

    if let Err(e) = std::fs::write(dir.path().join("p.so"), b"") {
        panic!("{e}");
    }
    assert!(load(text(&good)).check_inputs().is_empty());

    let found = load(text(&"0".repeat(64))).check_inputs();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("does not match its pinned digest")
    );
    assert!(found[0].message.contains(&good));
    assert_eq!((found[0].line, found[0].column), (4, 10));

    if let Err(e) = std::fs::remove_file(&model).and_then(|()| std::fs::create_dir(&model)) {
        panic!("{e}");
    }
    let found = load(text(&good)).check_inputs();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("is a directory"));
    assert_eq!((found[0].line, found[0].column), (3, 8));
}

#[test]
fn load_reads_from_disk() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("tempdir")
    };
    let path = dir.path().join("engine.toml");
    if let Err(e) = std::fs::write(&path, doc_example()) {
        panic!("{e}");
    }
    match manifest_schema::load(&path) {
        Ok(m) => {
            assert_eq!(m.path, path);
            assert_eq!(m.dir(), dir.path());
        }
        Err(e) => panic!("{e}"),
    }
}
