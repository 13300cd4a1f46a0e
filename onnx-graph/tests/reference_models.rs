//! `read_graph_inputs` against the `onnx` Python package, on real models from the `onnx` wheel
//! and on the example models.

mod common;

use std::path::{Path, PathBuf};

use onnx_graph::example_models::write_examples;
use onnx_graph::{Dim, GraphInput, InputKind, OnnxError, read_graph_inputs};

/// Prints, per non-initializer graph input, `file<TAB>name<TAB>kind<TAB>elem_type<TAB>dims`, the
/// same way `describe` below does, from what `onnx.load` sees.
const DESCRIBE_INPUTS: &str = r#"
import os, sys, onnx
for path in sys.argv[1:]:
    graph = onnx.load(path, load_external_data=False).graph
    initializers = {t.name for t in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        kind = value.type.WhichOneof("value")
        elem, dims = 0, "-"
        if kind in ("tensor_type", "sparse_tensor_type"):
            tensor = getattr(value.type, kind)
            elem = tensor.elem_type
            if tensor.HasField("shape"):
                def show(d):
                    if d.HasField("dim_value") and d.dim_value >= 0:
                        return str(d.dim_value)
                    if d.HasField("dim_param") and d.dim_param:
                        return d.dim_param
                    return "?"
                dims = ",".join(show(d) for d in tensor.shape.dim)
        print("\t".join([os.path.basename(path), value.name, str(kind), str(elem), dims]))
"#;

fn describe(path: &Path, input: &GraphInput) -> String {
    let kind = match input.kind {
        InputKind::Tensor => "tensor_type",
        InputKind::SparseTensor => "sparse_tensor_type",
        InputKind::Sequence => "sequence_type",
        InputKind::Map => "map_type",
        InputKind::Optional => "optional_type",
        InputKind::Opaque => "opaque_type",
        InputKind::Untyped => "None",
    };
    let dims = input.dims.as_ref().map_or("-".into(), |dims| {
        dims.iter()
            .map(Dim::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    let file = path.file_name().unwrap().to_string_lossy();
    format!(
        "{file}\t{}\t{kind}\t{}\t{dims}",
        input.name,
        input.element_type.code()
    )
}

fn compare_with_onnx(models: &[PathBuf]) -> usize {
    let args: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
    let expected = common::run_python(DESCRIBE_INPUTS, &args);
    let mut ours = String::new();
    for model in models {
        let inputs = read_graph_inputs(model).unwrap_or_else(|err| panic!("{err}"));
        for input in &inputs {
            ours.push_str(&describe(model, input));
            ours.push('\n');
        }
    }
    assert_eq!(
        ours, expected,
        "read_graph_inputs disagrees with the onnx package"
    );
    expected.lines().count()
}

fn light_models_dir() -> PathBuf {
    let dir = onnx_graph::deps::onnx_test_models();
    match dir {
        Some(dir) if dir.is_dir() => dir,
        other => panic!(
            "no ONNX test models at {other:?}: run scripts/setup or set {}",
            onnx_graph::deps::ONNX_TEST_MODELS_ENV
        ),
    }
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn agrees_with_onnx_on_the_real_models_of_the_onnx_wheel() {
    let models = files_with_extension(&light_models_dir(), "onnx");
    assert!(
        models.len() >= 5,
        "expected the onnx wheel's light models, found {models:?}"
    );
    // Each lists its weights among its inputs (IR 3); exactly one real input must remain.
    for model in &models {
        let inputs = read_graph_inputs(model).unwrap();
        assert_eq!(inputs.len(), 1, "{}: {inputs:?}", model.display());
        assert_eq!(inputs[0].dims, Some(onnx_graph::dims![1, 3, 224, 224]));
    }
    assert_eq!(compare_with_onnx(&models), models.len());
}

#[test]
fn agrees_with_onnx_on_the_example_models() {
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<PathBuf> = write_examples(dir.path())
        .unwrap()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        compare_with_onnx(&models),
        6,
        "five examples, one with two inputs"
    );
}

#[test]
fn tensor_files_of_the_onnx_wheel_are_not_onnx_models() {
    // `*_output_0.pb` are serialized TensorProtos: valid protobuf, but no model.
    let tensors = files_with_extension(&light_models_dir(), "pb");
    assert!(!tensors.is_empty());
    for tensor in &tensors {
        let err = read_graph_inputs(tensor).unwrap_err();
        assert!(
            matches!(err, OnnxError::NotOnnx { .. }),
            "{}: {err}",
            tensor.display()
        );
    }
}

#[test]
fn a_truncated_real_model_says_truncated() {
    let model = &files_with_extension(&light_models_dir(), "onnx")[0];
    let bytes = std::fs::read(model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = read_graph_inputs(&cut).unwrap_err();
    assert!(matches!(err, OnnxError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("cut.onnx is truncated"), "{err}");
}

#[test]
fn real_models_and_the_examples_pass_the_pre_build_check_and_tensor_files_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut models = files_with_extension(&light_models_dir(), "onnx");
    models.extend(
        write_examples(dir.path())
            .unwrap()
            .into_iter()
            .map(|(path, _)| path),
    );
    for model in &models {
        if let Err(err) = onnx_graph::sanity::check_model(model) {
            panic!("{}: {err}", model.display());
        }
    }
    for tensor in files_with_extension(&light_models_dir(), "pb") {
        let err = onnx_graph::sanity::check_model(&tensor).unwrap_err();
        assert!(matches!(err, OnnxError::NotOnnx { .. }), "{err}");
    }
}
