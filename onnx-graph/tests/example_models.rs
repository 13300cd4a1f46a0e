//! The example generator and the manifests in `examples/manifests/`: deterministic output,
//! models the ONNX checker accepts, and profiles that fit the models' inputs.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use onnx_graph::example_models::EXAMPLES;
use onnx_graph::{Dim, GraphInput, read_graph_inputs};

const GENERATOR: &str = env!("CARGO_BIN_EXE_trtfarm-example-models");

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests")
}

/// Runs the generator into `root` and returns its standard output.
fn generate(root: &Path) -> String {
    let output = Command::new(GENERATOR).arg(root).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn digests(root: &Path) -> BTreeMap<&'static str, String> {
    EXAMPLES
        .iter()
        .map(|example| {
            let bytes = fs::read(example.model_path(root)).unwrap();
            (example.dir, blake3::hash(&bytes).to_hex().to_string())
        })
        .collect()
}

#[test]
fn the_generator_writes_the_same_bytes_every_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = generate(a.path());
    generate(b.path());
    assert_eq!(first.matches("wrote").count(), EXAMPLES.len(), "{first}");
    assert_eq!(digests(a.path()), digests(b.path()));
    let again = generate(a.path());
    assert_eq!(
        again.matches("unchanged").count(),
        EXAMPLES.len(),
        "{again}"
    );
}

#[test]
fn the_generator_explains_its_usage() {
    let output = Command::new(GENERATOR).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage"));
    let output = Command::new(GENERATOR)
        .arg("/nonexistent/examples")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a directory"));
}

#[test]
fn the_onnx_checker_accepts_every_example_with_full_shape_inference() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let models: Vec<PathBuf> = EXAMPLES.iter().map(|e| e.model_path(dir.path())).collect();
    let args: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
    // full_check runs strict shape inference: declared output shapes must match inferred ones.
    let script = r#"
import sys, onnx
for path in sys.argv[1:]:
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17, model.opset_import
    print("ok", path)
"#;
    let out = common::run_python(script, &args);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        EXAMPLES.len(),
        "{out}"
    );
}

/// Every `engine.toml` whose directory has a generated model, parsed.
fn manifests() -> Vec<(PathBuf, String, toml::Table)> {
    EXAMPLES
        .iter()
        .map(|example| {
            let path = examples_dir().join(example.dir).join("engine.toml");
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let table = text
                .parse::<toml::Table>()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, text, table)
        })
        .collect()
}

#[test]
fn every_example_directory_has_a_generated_model_and_vice_versa() {
    let mut on_disk: Vec<String> = fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("engine.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut generated: Vec<&str> = EXAMPLES.iter().map(|e| e.dir).collect();
    generated.sort();
    assert_eq!(on_disk, generated);
}

#[test]
fn manifests_start_with_the_schema_line_and_name_their_model() {
    for ((path, text, table), example) in manifests().iter().zip(&EXAMPLES) {
        assert_eq!(
            text.lines().next(),
            Some("#:schema ../../../manifest-schema/engine.schema.json"),
            "{}",
            path.display()
        );
        assert_eq!(
            table["schema_version"].as_integer(),
            Some(1),
            "{}",
            path.display()
        );
        assert_eq!(
            table["model"]["path"].as_str(),
            Some(example.model_file),
            "{}",
            path.display()
        );
    }
}

/// The tables of an array-of-tables value (none when absent).
fn tables(value: Option<&toml::Value>) -> Vec<&toml::Table> {
    value
        .and_then(toml::Value::as_array)
        .map(|array| array.iter().filter_map(toml::Value::as_table).collect())
        .unwrap_or_default()
}

/// The profiles of a manifest: top-level `[[profile]]` and each `[[engine.profile]]`.
fn profiles(table: &toml::Table) -> Vec<&toml::Table> {
    let mut all = tables(table.get("profile"));
    for engine in tables(table.get("engine")) {
        all.extend(tables(engine.get("profile")));
    }
    all
}

fn shape(spec: &toml::Table, which: &str) -> Vec<u64> {
    spec[which]
        .as_array()
        .unwrap_or_else(|| panic!("{which} is not an array"))
        .iter()
        .map(|v| {
            v.as_integer()
                .and_then(|v| u64::try_from(v).ok())
                .expect("a non-negative integer")
        })
        .collect()
}

/// Checks one profile against the model's inputs the way TensorRT will: every dynamic input is
/// covered, ranks and fixed dims match, min <= opt <= max, and a symbolic name shared by several
/// dims gets one value in each of min, opt and max.
fn check_profile(context: &str, profile: &toml::Table, inputs: &[GraphInput]) {
    let specs = profile["inputs"].as_table().unwrap();
    for input in inputs {
        let dims = input.dims.as_ref().unwrap();
        let covered = specs.contains_key(&input.name);
        assert!(
            covered || !dims.iter().any(Dim::is_dynamic),
            "{context}: dynamic input {input} has no shapes"
        );
    }
    for which in ["min", "opt", "max"] {
        let mut symbols: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for (name, spec) in specs {
            let input = inputs.iter().find(|i| &i.name == name);
            let input =
                input.unwrap_or_else(|| panic!("{context}: the model has no input {name:?}"));
            let dims = input.dims.as_ref().unwrap();
            let values = shape(spec.as_table().unwrap(), which);
            assert_eq!(
                values.len(),
                dims.len(),
                "{context}: {which} of {name} has the wrong rank for {input}"
            );
            for (dim, value) in dims.iter().zip(&values) {
                match dim {
                    Dim::Fixed(size) => {
                        assert_eq!(size, value, "{context}: {which} of {name} vs {input}")
                    }
                    Dim::Symbolic(symbol) => {
                        let (first, owner) = *symbols.entry(symbol).or_insert((*value, name));
                        assert_eq!(
                            first, *value,
                            "{context}: {which} gives dim {symbol} {first} for {owner} but {value} for {name}"
                        );
                    }
                    Dim::Unknown => {}
                }
            }
        }
    }
    for (name, spec) in specs {
        let spec = spec.as_table().unwrap();
        let (min, opt, max) = (shape(spec, "min"), shape(spec, "opt"), shape(spec, "max"));
        for i in 0..min.len() {
            assert!(
                1 <= min[i] && min[i] <= opt[i] && opt[i] <= max[i],
                "{context}: {name} dim {i}: {} <= {} <= {} fails",
                min[i],
                opt[i],
                max[i]
            );
        }
    }
}

#[test]
fn manifest_profiles_fit_the_generated_models() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    for ((path, _, table), example) in manifests().iter().zip(&EXAMPLES) {
        let inputs = read_graph_inputs(&example.model_path(dir.path())).unwrap();
        let profiles = profiles(table);
        let dynamic = inputs.iter().any(|i| {
            i.dims
                .as_ref()
                .is_none_or(|d| d.iter().any(Dim::is_dynamic))
        });
        assert_eq!(
            !profiles.is_empty(),
            dynamic,
            "{}: profiles are needed exactly for dynamic inputs",
            path.display()
        );
        for (index, profile) in profiles.iter().enumerate() {
            check_profile(
                &format!("{} profile {index}", path.display()),
                profile,
                &inputs,
            );
        }
    }
}

#[test]
fn the_profile_check_catches_a_disagreeing_shared_dim() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let multi_input = EXAMPLES.iter().find(|e| e.dir == "multi-input").unwrap();
    let inputs = read_graph_inputs(&multi_input.model_path(dir.path())).unwrap();
    let bad: toml::Table = r#"
        inputs.features = { min = [1, 32], opt = [64, 32], max = [256, 32] }
        inputs.context = { min = [1, 16], opt = [32, 16], max = [256, 16] }
    "#
    .parse()
    .unwrap();
    let result = std::panic::catch_unwind(|| check_profile("bad", &bad, &inputs));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    // Table order decides which input is named first.
    let either = [
        "batch 32 for context but 64 for features",
        "batch 64 for features but 32 for context",
    ];
    assert!(
        either
            .iter()
            .any(|m| message.contains(&format!("opt gives dim {m}"))),
        "{message}"
    );
}
