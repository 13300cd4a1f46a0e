//! What the pre-build check refuses, and what it leaves to TensorRT's parser.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

use super::*;
use crate::external_data::write_with_external_data;
use crate::proto::tensor_proto::DataLocation;
use crate::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto};
use crate::{DataType, GraphBuilder, ModelBuilder, dims};

fn relu(input_dims: Vec<crate::Dim>) -> ModelProto {
    let mut g = GraphBuilder::new("g", 1);
    let x = g.input("x", DataType::Float, input_dims);
    let y = g.node("Relu", &[&x], []);
    g.output_rank_unknown("y", &y, DataType::Float);
    ModelBuilder::new(g).build()
}

fn linear() -> ModelProto {
    let mut g = GraphBuilder::new("g", 2);
    let x = g.input("x", DataType::Float, dims!["N", 4]);
    let y = g.linear(&x, 4, 2);
    g.output("y", &y, DataType::Float, dims!["N", 2]);
    ModelBuilder::new(g).build()
}

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("model.onnx");
    fs::write(&path, bytes).unwrap();
    path
}

fn check(model: &ModelProto) -> Result<(), OnnxError> {
    let dir = tempfile::tempdir().unwrap();
    check_model(&write(dir.path(), &model.encode_to_vec()))
}

#[track_caller]
fn refused(result: Result<(), OnnxError>, needle: &str) -> OnnxError {
    let error = result.expect_err("the model is refused");
    assert!(error.to_string().contains(needle), "{error}");
    error
}

#[test]
fn a_real_model_passes_inline_or_with_external_data() {
    check(&linear()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    write_with_external_data(&linear(), &path, "model.onnx.data").unwrap();
    check_model(&path).unwrap();
}

#[test]
fn files_that_are_not_models_are_not_onnx() {
    let dir = tempfile::tempdir().unwrap();
    for (bytes, reason) in [
        (&b""[..], "the file is empty"),
        (b"\x08\x07", "it has no graph"),
        (b"hello, this is not a model\n", "not an ONNX model"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "not an ONNX model"),
    ] {
        let error = refused(check_model(&write(dir.path(), bytes)), reason);
        assert!(matches!(error, OnnxError::NotOnnx { .. }), "{error:?}");
    }
}

#[test]
fn a_graph_without_outputs_is_not_onnx() {
    let mut model = linear();
    model.graph.as_mut().unwrap().output.clear();
    let error = refused(check(&model), "its graph declares no outputs");
    assert!(matches!(error, OnnxError::NotOnnx { .. }), "{error:?}");
}

#[test]
fn declared_dimensions_past_tensorrts_limits_are_refused() {
    refused(
        check(&relu(dims!["N", 3, 8, 1u64 << 40])),
        "graph input `x` declares dimension 3 as 1099511627776, over TensorRT's limit of 2147483647",
    );
    refused(
        check(&relu(dims![1, 1, 1, 1, 1, 1, 1, 1, 1])),
        "graph input `x` has rank 9, over TensorRT's limit of 8",
    );
    let mut model = relu(dims!["N", 4]);
    let info = relu(dims!["N", 3_000_000_000u64])
        .graph
        .unwrap()
        .input
        .remove(0);
    let graph = model.graph.as_mut().unwrap();
    graph.output[0].r#type = info.r#type;
    refused(
        check(&model),
        "graph output `y` declares dimension 1 as 3000000000",
    );
    // The largest dimension TensorRT keeps passes.
    check(&relu(dims!["N", 2147483647u64])).unwrap();
}

/// `linear()` with its weight stored externally at `location`, `offset`, `length`, and a data
/// file `w.bin` of 32 bytes beside it.
fn external(location: &str, offset: &str, length: Option<&str>) -> Result<(), OnnxError> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("w.bin"), [0u8; 32]).unwrap();
    let mut model = linear();
    let tensor = &mut model.graph.as_mut().unwrap().initializer[0];
    tensor.raw_data = None;
    tensor.data_location = Some(DataLocation::External as i32);
    let entry = |key: &str, value: &str| StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value.into()),
    };
    tensor.external_data = vec![entry("location", location), entry("offset", offset)];
    if let Some(length) = length {
        tensor.external_data.push(entry("length", length));
    }
    check_model(&write(dir.path(), &model.encode_to_vec()))
}

#[test]
fn external_data_must_be_a_file_beside_the_model() {
    external("w.bin", "0", Some("32")).unwrap();
    external("./w.bin", "16", None).unwrap();
    for location in [
        "../secret.bin",
        "/etc/passwd",
        "a/../../secret.bin",
        "a\\b.bin",
    ] {
        refused(
            external(location, "0", Some("4")),
            "which is not a relative path inside the model's directory",
        );
    }
    refused(
        external("other.bin", "0", Some("4")),
        "keeps its data in `other.bin`, which is not beside the model",
    );
    refused(external(".", "0", Some("4")), "which is not a regular file");
}

#[test]
fn external_data_must_lie_within_its_file() {
    let error = refused(
        external("w.bin", "1000000", Some("4")),
        "reads bytes 1000000..1000004 of `w.bin`, which has 32 bytes",
    );
    assert!(matches!(error, OnnxError::Unbuildable { .. }), "{error:?}");
    refused(external("w.bin", "30", Some("4")), "reads bytes 30..34");
    refused(external("w.bin", "33", None), "reads bytes 33..the end");
    refused(
        external("w.bin", "18446744073709551615", Some("2")),
        "reads bytes 18446744073709551615..18446744073709551615",
    );
    refused(
        external("w.bin", "-4", Some("4")),
        "has external-data offset `-4`, which is not a byte count",
    );
}

/// A graph whose one node is an `If` whose branch holds an `If` ... `depth` deep.
fn nested(depth: usize) -> ModelProto {
    let mut model = linear();
    let mut branch = GraphProto::default();
    for _ in 0..depth {
        branch = GraphProto {
            node: vec![NodeProto {
                op_type: Some("If".into()),
                attribute: vec![AttributeProto {
                    name: Some("then_branch".into()),
                    g: Some(branch),
                    ..AttributeProto::default()
                }],
                ..NodeProto::default()
            }],
            ..GraphProto::default()
        };
    }
    model.graph.as_mut().unwrap().node.extend(branch.node);
    model
}

#[test]
fn subgraphs_nested_past_the_limit_are_refused() {
    check(&nested(10)).unwrap();
    refused(check(&nested(100)), "subgraphs nest deeper than 64 levels");
}

#[test]
fn operators_and_cycles_are_left_to_the_parser() {
    // TensorRT's parser names the unknown operator and the cycle itself.
    let mut model = linear();
    let graph = model.graph.as_mut().unwrap();
    graph.node[0].op_type = Some("FrobnicateTensor".into());
    check(&model).unwrap();
    let mut model = linear();
    let graph = model.graph.as_mut().unwrap();
    let first_input = graph.node[0].input[0].clone();
    let last_output = graph.node.last().unwrap().output[0].clone();
    graph.node[0].input[0] = last_output;
    assert_ne!(first_input, graph.node[0].input[0]);
    check(&model).unwrap();
}

#[test]
fn a_truncated_model_is_reported_as_truncated() {
    let bytes = linear().encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let error = check_model(&write(dir.path(), &bytes[..bytes.len() - 7])).unwrap_err();
    assert!(
        matches!(
            error,
            OnnxError::Truncated { .. } | OnnxError::NotOnnx { .. }
        ),
        "{error}"
    );
}
