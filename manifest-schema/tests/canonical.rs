//! The canonical encoding changes exactly when the engine can change.

use std::path::Path;

use manifest_schema::{CANONICAL_ENCODING_VERSION, parse};

/// A manifest exercising every setting; `{}` marks where a test splices in overrides.
const BASE: &str = r#"schema_version = 1
[model]
path = "m.onnx"
[defaults]
toolchain = "tensorrt >=10.8, <11"
precision = "fp16"
optimization_level = 3
max_aux_streams = 2
avg_timing_iterations = 4
tactic_sources = ["cudnn", "cublas"]
tiling_optimization_level = "fast"
mps_percentage = 50
build_timeout = "20m"
memory_pools = { workspace = "1GiB", tactic_dram = "512MiB", tactic_shared_memory = "48KiB" }
compatibility = { hardware = "ampere+", version_compatible = true, exclude_lean_runtime = false }
timing_cache = { policy = "record" }
weights = { refit = "all", strip = false }
[[profile]]
name = "p0"
inputs.a = { min = [1, 3], opt = [2, 3], max = [4, 3] }
inputs.b = { min = [1], opt = [1], max = [1] }
[[profile]]
inputs.a = { min = [4, 3], opt = [8, 3], max = [16, 3] }
inputs.b = { min = [1], opt = [1], max = [1] }
[[engine]]
name = "e"
output = "build/e.engine"
"#;

fn encode_at(toml: &str, path: &str) -> Vec<u8> {
    match parse(toml, Path::new(path)) {
        Ok(m) => m.variants()[0].canonical_encoding(),
        Err(e) => panic!("{e}\n{toml}"),
    }
}

fn encode(toml: &str) -> Vec<u8> {
    encode_at(toml, "engine.toml")
}

/// BASE with the engine's own settings appended.
fn with_engine(extra: &str) -> String {
    format!("{BASE}{extra}\n")
}

/// BASE with one line of it replaced.
fn replacing(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old}");
    BASE.replacen(old, new, 1)
}

#[test]
fn encoding_starts_with_its_version() {
    let bytes = encode(BASE);
    let magic = b"trtfarm.variant\0";
    assert_eq!(&bytes[..magic.len()], magic);
    assert_eq!(
        bytes[magic.len()..magic.len() + 2],
        CANONICAL_ENCODING_VERSION.to_le_bytes()
    );
}

#[test]
fn every_semantic_field_changes_the_encoding() {
    let base = encode(BASE);
    let changes = [
        (
            "toolchain flavour/version",
            with_engine("toolchain = \"tensorrt 11.4\""),
        ),
        (
            "toolchain comparator",
            with_engine("toolchain = \"tensorrt >=10.8, <=11\""),
        ),
        ("precision", with_engine("precision = \"bf16\"")),
        ("optimization_level", with_engine("optimization_level = 5")),
        ("max_aux_streams", with_engine("max_aux_streams = 3")),
        (
            "max_aux_streams unset",
            replacing("max_aux_streams = 2\n", ""),
        ),
        (
            "avg_timing_iterations",
            with_engine("avg_timing_iterations = 5"),
        ),
        (
            "tactic_sources",
            with_engine("tactic_sources = [\"cudnn\"]"),
        ),
        (
            "tactic_sources unset",
            replacing("tactic_sources = [\"cudnn\", \"cublas\"]\n", ""),
        ),
        ("tactic_sources empty", with_engine("tactic_sources = []")),
        (
            "tiling",
            with_engine("tiling_optimization_level = \"full\""),
        ),
        ("mps_percentage", with_engine("mps_percentage = 51")),
        (
            "mps_percentage unset",
            replacing("mps_percentage = 50\n", ""),
        ),
        (
            "workspace",
            with_engine("memory_pools.workspace = \"2GiB\""),
        ),
        (
            "tactic_dram",
            with_engine("memory_pools.tactic_dram = \"1GiB\""),
        ),
        (
            "tactic_shared_memory",
            with_engine("memory_pools.tactic_shared_memory = 1"),
        ),
        (
            "hardware",
            with_engine("compatibility.hardware = \"same-compute-capability\""),
        ),
        (
            "version_compatible",
            with_engine("compatibility.version_compatible = false"),
        ),
        (
            "exclude_lean_runtime",
            with_engine("compatibility.exclude_lean_runtime = true"),
        ),
        ("timing_cache", with_engine("timing_cache.policy = \"off\"")),
        ("refit", with_engine("weights.refit = \"individual\"")),
        ("strip", with_engine("weights.strip = true")),
        (
            "profile dimension",
            replacing("max = [16, 3]", "max = [17, 3]"),
        ),
        (
            "profile input name",
            replacing(
                "inputs.b = { min = [1], opt = [1], max = [1] }\n[[profile]]",
                "inputs.c = { min = [1], opt = [1], max = [1] }\n[[profile]]",
            ),
        ),
        (
            "profile count",
            replacing(
                "[[profile]]\ninputs.a = { min = [4, 3]",
                "[[profile]]\nname = \"x\"\ninputs.a = { min = [4, 3], opt = [8, 3], max = [16, 3] }\ninputs.b = { min = [1], opt = [1], max = [1] }\n[[profile]]\ninputs.a = { min = [4, 3]",
            ),
        ),
        (
            "engine's own profiles",
            with_engine(
                "[[engine.profile]]\ninputs.a = { min = [1, 3], opt = [2, 3], max = [4, 3] }",
            ),
        ),
    ];
    let mut seen = vec![base.clone()];
    for (what, toml) in changes {
        let changed = encode(&toml);
        assert_ne!(changed, base, "changing {what} did not change the encoding");
        assert!(
            !seen.contains(&changed),
            "changing {what} collides with another change"
        );
        seen.push(changed);
    }
}

#[test]
fn compute_capabilities_change_the_encoding_but_not_their_order() {
    let rtx = |caps: &str| {
        format!(
            "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = {caps}\n"
        )
    };
    let base = encode(&rtx("[\"8.6\", \"12.0\"]"));
    assert_eq!(encode(&rtx("[\"12.0\", \"8.6\", \"8.6\"]")), base);
    assert_ne!(encode(&rtx("[\"8.6\"]")), base);
    assert_ne!(encode(&rtx("[\"8.6\", \"12.1\"]")), base);
}

#[test]
fn irrelevant_changes_keep_the_encoding() {
    let base = encode(BASE);
    let same = [
        ("engine name", replacing("name = \"e\"", "name = \"other\"")),
        (
            "output",
            replacing(
                "output = \"build/e.engine\"",
                "output = \"elsewhere/x.engine\"",
            ),
        ),
        ("no output", replacing("output = \"build/e.engine\"\n", "")),
        (
            "build_timeout",
            replacing("build_timeout = \"20m\"", "build_timeout = \"3h\""),
        ),
        (
            "profile label",
            replacing("name = \"p0\"", "name = \"renamed\""),
        ),
        (
            "tactic source order",
            replacing(
                "[\"cudnn\", \"cublas\"]",
                "[\"cublas\", \"cudnn\", \"cublas\"]",
            ),
        ),
        (
            "input order",
            replacing(
                "inputs.a = { min = [1, 3], opt = [2, 3], max = [4, 3] }\ninputs.b = { min = [1], opt = [1], max = [1] }",
                "inputs.b = { min = [1], opt = [1], max = [1] }\ninputs.a = { max = [4, 3], min = [1, 3], opt = [2, 3] }",
            ),
        ),
        (
            "key order",
            replacing(
                "precision = \"fp16\"\noptimization_level = 3",
                "optimization_level = 3\nprecision = \"fp16\"",
            ),
        ),
        (
            "comments and whitespace",
            BASE.replace(" = ", "   =   ")
                .replace("\n[", "\n# a comment\n\n["),
        ),
        (
            "inline vs standard table",
            replacing(
                "memory_pools = { workspace = \"1GiB\", tactic_dram = \"512MiB\", tactic_shared_memory = \"48KiB\" }\n",
                "memory_pools.workspace = 1073741824\nmemory_pools.tactic_dram = \"512 MiB\"\nmemory_pools.tactic_shared_memory = 49152\n",
            ),
        ),
        (
            "toolchain spelling",
            replacing("\"tensorrt >=10.8, <11\"", "\"tensorrt  <11,>=10.8\""),
        ),
        (
            "defaults vs engine",
            replacing("precision = \"fp16\"\n", "") + "precision = \"fp16\"\n",
        ),
        (
            "explicit defaults",
            with_engine("tiling_optimization_level = \"fast\"\nweights.strip = false"),
        ),
    ];
    for (what, toml) in same {
        assert_eq!(encode(&toml), base, "changing {what} changed the encoding");
    }
    assert_eq!(
        encode_at(BASE, "/somewhere/else/engine.toml"),
        base,
        "manifest location changed the encoding"
    );
}

/// blake3 of encodings written by the code before `autocast` and `compatibility.gpu` existed:
/// variants that do not use them must keep their action keys.
#[test]
fn encodings_without_autocast_settings_are_unchanged() {
    let hash = |toml: &str| blake3::hash(&encode(toml)).to_hex().to_string();
    assert_eq!(
        hash(BASE),
        "a2dd8090439d536e6f4c0e5d55ad4bdf81fb57373e1ee088d6614b13892c1447"
    );
    let rtx_bf16 = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\nprecision = \"bf16\"\ncompatibility.compute_capabilities = [\"8.9\", \"12.0\"]\n";
    let golden = "57cd5b28483a913a45994294252d274e50a19875ef4728fc3a59f02585c94110";
    assert_eq!(hash(rtx_bf16), golden);
    // Written at their defaults, the autocast settings change nothing either.
    assert_eq!(
        hash(&format!(
            "{rtx_bf16}autocast = {{ keep_fp32 = [], convert = [], keep_fp32_io = false }}\n"
        )),
        golden
    );
}

#[test]
fn every_autocast_setting_changes_the_encoding() {
    let base = encode(BASE);
    let changes = [
        (
            "keep_fp32",
            with_engine("autocast.keep_fp32 = [\"Sigmoid\"]"),
        ),
        (
            "another keep_fp32",
            with_engine("autocast.keep_fp32 = [\"Sigmoid\", \"Tanh\"]"),
        ),
        ("convert", with_engine("autocast.convert = [\"Sigmoid\"]")),
        (
            "another convert",
            with_engine("autocast.convert = [\"Softmax\"]"),
        ),
        ("keep_fp32_io", with_engine("autocast.keep_fp32_io = true")),
        (
            "all three",
            with_engine(
                "autocast = { keep_fp32 = [\"Sigmoid\"], convert = [\"Softmax\"], keep_fp32_io = true }",
            ),
        ),
        (
            "the precision with the same settings",
            with_engine("precision = \"bf16\"\nautocast.keep_fp32_io = true"),
        ),
    ];
    let mut seen = vec![base.clone()];
    for (what, toml) in changes {
        let changed = encode(&toml);
        assert_ne!(changed, base, "changing {what} did not change the encoding");
        assert!(
            !seen.contains(&changed),
            "changing {what} collides with another change"
        );
        seen.push(changed);
    }
}

#[test]
fn autocast_lists_are_sets_and_inherited_settings_skip_other_precisions() {
    let keep = encode(&with_engine("autocast.keep_fp32 = [\"Tanh\", \"Sigmoid\"]"));
    assert_eq!(
        encode(&with_engine(
            "autocast.keep_fp32 = [\"Sigmoid\", \"Tanh\", \"Sigmoid\"]"
        )),
        keep
    );
    // From [defaults] or the engine: the same settings.
    assert_eq!(
        encode(&replacing(
            "precision = \"fp16\"\n",
            "precision = \"fp16\"\nautocast.keep_fp32 = [\"Sigmoid\", \"Tanh\"]\n",
        )),
        keep
    );
    // An fp32 engine is not autocast: what [defaults.autocast] says does not change it.
    let fp32 = with_engine("precision = \"fp32\"");
    let inherited = fp32.replacen(
        "precision = \"fp16\"\n",
        "precision = \"fp16\"\nautocast.keep_fp32 = [\"Sigmoid\"]\n",
        1,
    ) + "[[engine]]\nname = \"half\"\n";
    assert_eq!(encode(&inherited), encode(&fp32));
}

#[test]
fn the_build_gpu_selector_is_not_part_of_the_encoding() {
    let base = encode(BASE);
    for gpu in ["\"H100\"", "\"9.0\"", "\"nvidia h200\""] {
        assert_eq!(
            encode(&with_engine(&format!("compatibility.gpu = {gpu}"))),
            base,
            "compatibility.gpu = {gpu} changed the encoding"
        );
    }
}

#[test]
fn profile_order_matters() {
    let swapped = replacing(
        "[[profile]]\nname = \"p0\"\ninputs.a = { min = [1, 3], opt = [2, 3], max = [4, 3] }",
        "[[profile]]\nname = \"p0\"\ninputs.a = { min = [4, 3], opt = [8, 3], max = [16, 3] }",
    )
    .replacen(
        "[[profile]]\ninputs.a = { min = [4, 3], opt = [8, 3], max = [16, 3] }",
        "[[profile]]\ninputs.a = { min = [1, 3], opt = [2, 3], max = [4, 3] }",
        1,
    );
    assert_ne!(encode(&swapped), encode(BASE));
}

#[test]
fn implicit_and_explicit_defaults_encode_the_same() {
    let minimal = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt 10.8\"\n";
    let explicit = format!(
        "{minimal}precision = \"fp32\"\noptimization_level = 3\navg_timing_iterations = 1\ntiling_optimization_level = \"none\"\ncompatibility.hardware = \"none\"\ntiming_cache.policy = \"off\"\nweights.refit = \"none\"\n"
    );
    assert_eq!(encode(minimal), encode(&explicit));
}
