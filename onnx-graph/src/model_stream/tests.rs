//! Reading and writing models against prost's own encoding.

use std::fs;

use prost::Message;

use super::*;
use crate::proto::tensor_proto::DataType;
use crate::{GraphBuilder, ModelBuilder, dims};

fn model() -> ModelProto {
    let mut g = GraphBuilder::new("g", 5);
    let x = g.input("x", DataType::Float, dims!["N", 8]);
    let y = g.linear(&x, 8, 4);
    let y = g.softmax(&y);
    g.output("y", &y, DataType::Float, dims!["N", 4]);
    let mut model = ModelBuilder::new(g).doc_string("doc").build();
    let graph = model.graph.as_mut().unwrap();
    graph.initializer[0].float_data = vec![1.0, 2.0];
    graph.initializer[0].external_data.push(Default::default());
    model
}

#[test]
fn reads_what_prost_decodes_and_writes_what_prost_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let mut original = model();
    fs::write(&path, original.encode_to_vec()).unwrap();
    assert_eq!(read_model(&path, Payloads::Load).unwrap(), original);

    let written = dir.path().join("w.onnx");
    write_model(&mut original, &written).unwrap();
    let bytes = fs::read(&written).unwrap();
    assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), original);
    assert_eq!(read_model(&written, Payloads::Load).unwrap(), original);
}

#[test]
fn skipping_payloads_keeps_everything_but_tensor_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let mut expected = model();
    fs::write(&path, expected.encode_to_vec()).unwrap();
    for tensor in &mut expected.graph.as_mut().unwrap().initializer {
        tensor.raw_data = None;
        tensor.float_data.clear();
    }
    assert_eq!(read_model(&path, Payloads::Skip).unwrap(), expected);
}

#[test]
fn a_truncated_file_says_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let bytes = model().encode_to_vec();
    fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let error = read_model(&path, Payloads::Load).unwrap_err();
    assert!(matches!(error, OnnxError::Truncated { .. }), "{error}");
}
