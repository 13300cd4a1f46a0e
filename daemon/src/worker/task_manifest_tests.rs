//! The task manifest: same settings, same bytes; different settings, different bytes; and
//! always the same canonical encoding as the variant it came from.

use std::path::Path;

use super::*;

fn variant_of(toml: &str, name: &str) -> Variant {
    let manifest = manifest_schema::parse(toml, Path::new("engine.toml"))
        .unwrap_or_else(|errors| panic!("test manifest is invalid:\n{errors}"));
    manifest
        .variant(name)
        .unwrap_or_else(|| panic!("no engine {name}"))
        .clone()
}

fn task_of(toml: &str, name: &str) -> String {
    task_manifest(&variant_of(toml, name)).unwrap_or_else(|e| panic!("{e}"))
}

const RTX: &str = r#"schema_version = 1
# A comment the worker must never see.
[model]
path = "models/classifier.onnx"

[defaults]
toolchain = "tensorrt-rtx 1.7"
compatibility.compute_capabilities = ["8.6", "8.9"]

[[profile]]
name = "batch"
inputs.images = { min = [1, 3, 64, 64], opt = [8, 3, 64, 64], max = [32, 3, 64, 64] }

[[engine]]
name = "fp32"
output = "build/classifier.engine"
"#;

/// The same build as [`RTX`], written differently: other comments, key order, engine name,
/// output, build timeout, profile name, an extra engine, `=` for a bare version.
const RTX_REWRITTEN: &str = r#"schema_version = 1

[defaults.compatibility]
compute_capabilities = ["8.9", "8.6"]   # order does not matter: a set

[defaults]
toolchain = "tensorrt-rtx =1.7"
build_timeout = "5m"

[model]
path = "elsewhere/model-with-a-much-longer-name.onnx"

[[profile]]
inputs.images = { max = [32, 3, 64, 64], min = [1, 3, 64, 64], opt = [8, 3, 64, 64] }

[[engine]]
name = "a-much-longer-engine-name"

[[engine]]
name = "other"
optimization_level = 5
"#;

#[test]
fn same_settings_written_differently_give_identical_text() {
    let a = task_of(RTX, "fp32");
    let b = task_of(RTX_REWRITTEN, "a-much-longer-engine-name");
    assert_eq!(a, b);
    assert!(!a.contains('#') && !a.contains("classifier"), "{a}");
    assert_eq!(
        variant_of(&a, TASK_VARIANT).canonical_encoding(),
        variant_of(RTX, "fp32").canonical_encoding()
    );
}

#[test]
fn every_setting_that_changes_the_key_changes_the_text() {
    let base = task_of(RTX, "fp32");
    for extra in [
        "optimization_level = 5",
        "max_aux_streams = 2",
        "tactic_sources = [\"jit-convolutions\"]",
        "tiling_optimization_level = \"fast\"",
        "precision = \"tf32\"",
        "memory_pools.workspace = \"1GiB\"",
        "memory_pools.tactic_dram = 1048576",
        "memory_pools.tactic_shared_memory = \"48KiB\"",
        "weights.refit = \"all\"",
        "weights.refit = \"identical\"\nweights.strip = true",
        "toolchain = \"tensorrt-rtx >=1.7, <2\"",
        "compatibility.compute_capabilities = [\"12.0\"]",
    ] {
        let changed = RTX.replace(
            "[[engine]]\nname = \"fp32\"",
            &format!("[[engine]]\nname = \"fp32\"\n{extra}"),
        );
        let text = task_of(&changed, "fp32");
        assert_ne!(text, base, "{extra}");
    }
    let other_profile = RTX.replace("opt = [8,", "opt = [4,");
    assert_ne!(task_of(&other_profile, "fp32"), base);
}

#[test]
fn enterprise_settings_round_trip() {
    let toml = r#"schema_version = 1
[model]
path = "embedder.onnx"

[defaults]
toolchain = "tensorrt 11.4"
optimization_level = 4
avg_timing_iterations = 4
mps_percentage = 50
memory_pools.workspace = "2GiB"
compatibility.hardware = "ampere+"
compatibility.version_compatible = true
compatibility.exclude_lean_runtime = true
timing_cache.policy = "locked"

[[profile]]
name = "p"
inputs.frames = { min = [1, 3, 112, 112], opt = [4, 3, 112, 112], max = [16, 3, 112, 112] }

[[engine]]
name = "locked"
"#;
    let text = task_of(toml, "locked");
    for wanted in ["avg_timing_iterations = 4", "mps_percentage = 50", "locked"] {
        assert!(text.contains(wanted), "{wanted}:\n{text}");
    }
}

#[test]
fn every_example_variant_renders() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let mut rendered = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path().join("engine.toml");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let manifest = manifest_schema::parse(&text, &path).unwrap();
        for variant in manifest.variants() {
            task_manifest(variant).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            rendered += 1;
        }
    }
    assert!(rendered >= 8, "only {rendered} example engines");
}

#[test]
fn multiple_profiles_and_quoted_input_names_keep_their_order() {
    let toml = r#"schema_version = 1
[model]
path = "m.onnx"
[defaults]
toolchain = "tensorrt-rtx 1.7"
compatibility.compute_capabilities = ["8.6"]
[[profile]]
inputs."gpu_0/data_0" = { min = [1, 3, 8, 8], opt = [2, 3, 8, 8], max = [4, 3, 8, 8] }
[[profile]]
inputs."gpu_0/data_0" = { min = [4, 3, 8, 8], opt = [8, 3, 8, 8], max = [16, 3, 8, 8] }
"#;
    let variant = variant_of(toml, manifest_schema::IMPLICIT_VARIANT_NAME);
    let text = task_manifest(&variant).unwrap();
    let back = variant_of(&text, TASK_VARIANT);
    assert_eq!(back.profiles.len(), 2);
    assert_eq!(
        back.profiles[1].inputs["gpu_0/data_0"].max,
        vec![16, 3, 8, 8]
    );
}

#[test]
fn autocast_settings_travel_to_the_worker() {
    let fp16 = RTX.replace(
        "[[engine]]\nname = \"fp32\"",
        "[defaults.autocast]\nkeep_fp32 = [\"Sigmoid\"]\n[[engine]]\nname = \"fp32\"\nprecision = \"fp16\"",
    );
    let base = task_of(&fp16, "fp32");
    for extra in [
        "autocast.keep_fp32 = [\"Sigmoid\", \"Tanh\"]",
        "autocast.convert = [\"Softmax\"]",
        "autocast.keep_fp32_io = true",
    ] {
        let changed = fp16.replace(
            "precision = \"fp16\"",
            &format!("precision = \"fp16\"\n{extra}"),
        );
        let text = task_of(&changed, "fp32");
        assert_ne!(text, base, "{extra}");
        // What the worker parses is what the user's manifest resolved to.
        assert_eq!(
            variant_of(&text, TASK_VARIANT).settings.autocast,
            variant_of(&changed, "fp32").settings.autocast,
            "{extra}"
        );
    }
    let settings = variant_of(&base, TASK_VARIANT).settings.autocast;
    assert!(settings.keep_fp32.contains("Sigmoid") && settings.convert.is_empty());
    // Without autocast settings the task has no table at all.
    assert!(!task_of(RTX, "fp32").contains("autocast"));
}

#[test]
fn the_build_gpu_selector_stays_with_the_daemon() {
    let enterprise = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
                      toolchain = \"tensorrt 11.4\"\n";
    let with_gpu = format!("{enterprise}compatibility.gpu = \"H100\"\n");
    let name = manifest_schema::IMPLICIT_VARIANT_NAME;
    assert_eq!(task_of(&with_gpu, name), task_of(enterprise, name));
}
