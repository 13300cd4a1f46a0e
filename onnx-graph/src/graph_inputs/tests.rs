use std::io::Cursor;

use prost::encoding::{WireType as ProstWireType, encode_key, encode_varint};

use super::*;
use crate::proto::{GraphProto, ModelProto, SparseTensorProto, TensorProto, TypeProto};
use crate::{GraphBuilder, ModelBuilder, dims};

fn scan_bytes(bytes: Vec<u8>) -> (Result<Vec<GraphInput>, OnnxError>, usize) {
    let len = bytes.len() as u64;
    let mut reader = WireReader::new(Cursor::new(bytes), len, Path::new("model.onnx"));
    let result = scan_model(&mut reader).map(GraphScan::into_inputs);
    (result, reader.largest_payload())
}

fn inputs_of(model: &ModelProto) -> Vec<GraphInput> {
    scan_bytes(model.encode_to_vec()).0.unwrap()
}

fn tensor_input(name: &str, element_type: DataType, dims: Vec<Dim>) -> GraphInput {
    GraphInput {
        name: name.into(),
        kind: InputKind::Tensor,
        element_type: ElementType::Known(element_type),
        dims: Some(dims),
    }
}

/// A model whose graph lists a weight among its inputs, as IR < 4 exporters did.
fn model_with_weight_as_input() -> ModelProto {
    let mut g = GraphBuilder::new("g", 1);
    let x = g.input("x", DataType::Float, dims!["N", 4]);
    g.input("mask", DataType::Bool, dims![Dim::Unknown, 4]);
    let w = g.input("w", DataType::Float, dims![4, 4]);
    g.matmul(&x, &w);
    let mut graph = g.finish();
    graph.initializer.push(TensorProto {
        dims: vec![4, 4],
        data_type: Some(DataType::Float as i32),
        name: Some("w".into()),
        float_data: vec![0.5; 16],
        ..TensorProto::default()
    });
    ModelProto {
        ir_version: Some(3),
        graph: Some(graph),
        ..ModelProto::default()
    }
}

#[test]
fn reads_fixed_symbolic_and_unknown_dims_in_order() {
    let mut g = GraphBuilder::new("g", 1);
    let a = g.input("images", DataType::Float, dims!["N", 3, "height", "width"]);
    let b = g.input("ids", DataType::Int64, dims![Dim::Unknown, 0]);
    g.output("a", &a, DataType::Float, dims!["N", 3, "height", "width"]);
    g.output("b", &b, DataType::Int64, dims![Dim::Unknown, 0]);
    let inputs = inputs_of(&ModelBuilder::new(g).build());
    assert_eq!(
        inputs,
        [
            tensor_input("images", DataType::Float, dims!["N", 3, "height", "width"]),
            tensor_input("ids", DataType::Int64, vec![Dim::Unknown, Dim::Fixed(0)]),
        ]
    );
    assert_eq!(inputs[0].to_string(), "images: FLOAT [N, 3, height, width]");
}

#[test]
fn leaves_out_inputs_that_are_initializers() {
    let inputs = inputs_of(&model_with_weight_as_input());
    let names: Vec<_> = inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["x", "mask"]);
    assert_eq!(inputs[1].to_string(), "mask: BOOL [?, 4]");
}

#[test]
fn leaves_out_inputs_that_are_sparse_initializers() {
    let mut model = model_with_weight_as_input();
    let graph = model.graph.as_mut().unwrap();
    graph.sparse_initializer.push(SparseTensorProto {
        values: Some(TensorProto {
            name: Some("x".into()),
            ..TensorProto::default()
        }),
        dims: vec![4],
        ..SparseTensorProto::default()
    });
    let names: Vec<_> = inputs_of(&model).into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["mask"]);
}

#[test]
fn reports_missing_shapes_and_non_tensor_inputs() {
    let mut model = model_with_weight_as_input();
    let graph = model.graph.as_mut().unwrap();
    let info = |name: &str, value: Option<type_proto::Value>| ValueInfoProto {
        name: Some(name.into()),
        r#type: value.map(|value| TypeProto {
            value: Some(value),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    };
    graph.input = vec![
        info(
            "no_shape",
            Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float16 as i32),
                shape: None,
            })),
        ),
        info(
            "future",
            Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(9999),
                shape: Some(TensorShapeProto::default()),
            })),
        ),
        info("seq", Some(type_proto::Value::SequenceType(Box::default()))),
        info("untyped", None),
    ];
    let inputs = inputs_of(&model);
    let shown: Vec<_> = inputs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "no_shape: FLOAT16 (rank unknown)",
            "future: element type 9999 []",
            "seq: Sequence",
            "untyped: Untyped",
        ]
    );
    assert_eq!(inputs[1].element_type.code(), 9999);
}

#[test]
fn ignores_inputs_of_subgraphs_and_reads_odd_dims_as_unknown() {
    let mut branch = GraphBuilder::new("then", 0);
    let inner = branch.input("inner", DataType::Float, dims![2]);
    branch.output("inner_out", &inner, DataType::Float, dims![2]);
    let mut g = GraphBuilder::new("g", 0);
    let cond = g.input("cond", DataType::Bool, dims![]);
    g.node(
        "If",
        &[&cond],
        [crate::proto::AttributeProto {
            name: Some("then_branch".into()),
            g: Some(branch.finish()),
            ..crate::proto::AttributeProto::default()
        }],
    );
    let mut model = ModelBuilder::new(g).build();
    let graph = model.graph.as_mut().unwrap();
    let odd = [
        dimension::Value::DimValue(-1),
        dimension::Value::DimParam(String::new()),
    ];
    let Some(type_proto::Value::TensorType(tensor)) =
        graph.input[0].r#type.as_mut().unwrap().value.as_mut()
    else {
        unreachable!("the builder writes tensor inputs")
    };
    tensor.shape.as_mut().unwrap().dim = odd
        .into_iter()
        .map(|value| crate::proto::tensor_shape_proto::Dimension {
            value: Some(value),
            ..Default::default()
        })
        .collect();
    let inputs = inputs_of(&model);
    assert_eq!(
        inputs,
        [tensor_input(
            "cond",
            DataType::Bool,
            vec![Dim::Unknown, Dim::Unknown]
        )]
    );
}

#[test]
fn repeated_graph_fields_merge() {
    let mut first = GraphBuilder::new("g", 1);
    first.input("a", DataType::Float, dims![1]);
    let mut second = GraphBuilder::new("g", 1);
    second.input("b", DataType::Float, dims![2]);
    let mut bytes = ModelBuilder::new(first).build().encode_to_vec();
    // Appending a second encoded ModelProto is protobuf's way of merging: `graph` merges too.
    bytes.extend(ModelBuilder::new(second).build().encode_to_vec());
    let names: Vec<_> = scan_bytes(bytes)
        .0
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn seeks_over_tensor_data_without_buffering_it() {
    let mut g = GraphBuilder::new("g", 1);
    let x = g.input("x", DataType::Float, dims!["N", 1 << 20]);
    let w = g.initializer_f32("w", &[1 << 20], &vec![0.25; 1 << 20]);
    g.mul(&x, &w);
    let bytes = ModelBuilder::new(g).build().encode_to_vec();
    assert!(bytes.len() > 4 << 20);
    let (inputs, largest) = scan_bytes(bytes);
    assert_eq!(inputs.unwrap().len(), 1);
    assert!(
        largest < 1024,
        "the reader buffered {largest} bytes at once"
    );
}

#[test]
fn empty_and_text_files_are_not_onnx() {
    let (err, _) = scan_bytes(Vec::new());
    assert!(
        matches!(err, Err(OnnxError::NotOnnx { offset: 0, .. })),
        "{err:?}"
    );
    for text in [
        "hello world, this is not a model",
        "#!/bin/sh\necho hi\n",
        "{\"json\": true}",
    ] {
        let err = scan_bytes(text.as_bytes().to_vec()).0.unwrap_err();
        assert!(
            err.to_string().contains("not an ONNX model"),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn a_protobuf_without_graph_is_not_onnx() {
    let model = ModelProto {
        ir_version: Some(8),
        producer_name: Some("x".into()),
        ..ModelProto::default()
    };
    let bytes = model.encode_to_vec();
    let len = bytes.len() as u64;
    match scan_bytes(bytes).0 {
        Err(OnnxError::NotOnnx { offset, reason, .. }) => {
            assert_eq!(offset, len);
            assert!(reason.contains("no graph"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncation_inside_the_graph_reports_the_offset() {
    let bytes = model_with_weight_as_input().encode_to_vec();
    for cut in [bytes.len() - 1, bytes.len() / 2, 8] {
        let err = scan_bytes(bytes[..cut].to_vec()).0.unwrap_err();
        match err {
            OnnxError::Truncated {
                offset,
                needed,
                available,
                ..
            } => {
                assert!(
                    offset < cut as u64 && needed > available,
                    "{offset} {needed} {available}"
                );
                assert_eq!(offset + available, cut as u64);
            }
            other => panic!("cut at {cut}: expected truncation, got {other}"),
        }
    }
}

#[test]
fn wrong_wire_types_name_the_field_and_offset() {
    // ir_version, then `graph` encoded as a varint: no graph was ever seen, so not ONNX.
    let mut bytes = Vec::new();
    encode_key(1, ProstWireType::Varint, &mut bytes);
    encode_varint(8, &mut bytes);
    encode_key(7, ProstWireType::Varint, &mut bytes);
    encode_varint(1, &mut bytes);
    let err = scan_bytes(bytes).0.unwrap_err();
    assert!(
        matches!(err, OnnxError::NotOnnx { offset: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "model.onnx: not an ONNX model: ModelProto.graph is encoded as a varint, not length-delimited (at byte 2)"
    );

    // After a graph, the same mistake is corruption of a model.
    let model = ModelProto {
        ir_version: Some(8),
        graph: Some(GraphProto::default()),
        ..ModelProto::default()
    };
    let mut bytes = model.encode_to_vec();
    let offset = bytes.len() as u64;
    encode_key(8, ProstWireType::SixtyFourBit, &mut bytes);
    bytes.extend([0; 8]);
    let err = scan_bytes(bytes).0.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "model.onnx: ModelProto.opset_import at byte {offset} is encoded as a 64-bit fixed value, \
             but onnx.proto declares it length-delimited"
        )
    );

    // GraphProto.input encoded as a 32-bit value inside a well-formed graph.
    let mut graph = Vec::new();
    encode_key(11, ProstWireType::ThirtyTwoBit, &mut graph);
    graph.extend([0; 4]);
    let mut bytes = Vec::new();
    encode_key(1, ProstWireType::Varint, &mut bytes);
    encode_varint(8, &mut bytes);
    encode_key(7, ProstWireType::LengthDelimited, &mut bytes);
    encode_varint(graph.len() as u64, &mut bytes);
    let graph_start = bytes.len() as u64;
    bytes.extend(graph);
    let err = scan_bytes(bytes).0.unwrap_err();
    match err {
        OnnxError::WireType { offset, what, .. } => {
            assert_eq!((offset, what.as_str()), (graph_start, "GraphProto.input"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_undecodable_input_is_malformed() {
    let mut graph = Vec::new();
    encode_key(11, ProstWireType::LengthDelimited, &mut graph);
    encode_varint(2, &mut graph);
    graph.extend([0x0a, 0x05]); // ValueInfoProto.name claiming 5 bytes of 0
    let model = ModelProto {
        ir_version: Some(8),
        graph: Some(GraphProto::default()),
        ..ModelProto::default()
    };
    let mut bytes = model.encode_to_vec();
    encode_key(7, ProstWireType::LengthDelimited, &mut bytes);
    encode_varint(graph.len() as u64, &mut bytes);
    bytes.extend(graph);
    let err = scan_bytes(bytes).0.unwrap_err();
    assert!(
        matches!(err, OnnxError::Malformed { ref what, .. } if what == "GraphProto.input"),
        "{err:?}"
    );
}

#[test]
fn read_graph_inputs_reads_files_and_names_them_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    crate::write_model(&model_with_weight_as_input(), &path).unwrap();
    assert_eq!(read_graph_inputs(&path).unwrap().len(), 2);

    let missing = dir.path().join("missing.onnx");
    let err = read_graph_inputs(&missing).unwrap_err();
    assert!(
        matches!(err, OnnxError::Open { .. }) && err.to_string().contains("missing.onnx"),
        "{err}"
    );

    std::fs::write(&path, b"\x89PNG\r\n\x1a\n not a model").unwrap();
    let err = read_graph_inputs(&path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: not an ONNX model:", path.display())),
        "{err}"
    );
}

#[test]
fn outputs_are_read_with_their_types_and_dims() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ranker.onnx");
    crate::write_model(&crate::example_models::ranker(), &path).unwrap();
    let (inputs, outputs) = read_graph_io(&path).unwrap();
    assert_eq!(inputs, read_graph_inputs(&path).unwrap());
    assert_eq!(
        outputs,
        vec![tensor_input("score", DataType::Float, dims!["batch", 1])]
    );
}
