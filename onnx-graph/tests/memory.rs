//! `read_graph_inputs` keeps memory flat however large the weights: a model with a 200 MB
//! initializer is read while the heap never grows by more than a fixed cap.
//!
//! The only test in this binary, because it measures the whole process's heap through a counting
//! global allocator.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use onnx_graph::proto::tensor_proto::DataType;
use onnx_graph::proto::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use onnx_graph::{GraphBuilder, ModelBuilder, dims, read_graph_inputs};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

mod heap;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

const WEIGHT_BYTES: u64 = 200 * 1000 * 1000;
/// Read buffer (64 KiB) plus the small decoded inputs and names, with room to spare.
const HEAP_CAP: usize = 512 * 1024;

fn length_delimited(field: u32, len: u64, out: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(len, out);
}

/// Writes `ModelProto { ir_version, opset, graph { node, initializer (200 MB), input, output },
/// metadata_props }` field by field, the initializer's data as a sparse hole, so the test neither
/// holds nor writes 200 MB. The input comes after the big initializer and a model field after
/// the graph, so the reader must really get past the data.
fn write_model_with_huge_initializer(path: &std::path::Path) {
    let elements = WEIGHT_BYTES / 4;
    let mut g = GraphBuilder::new("huge", 0);
    let x = g.input("x", DataType::Float, dims!["batch", elements]);
    let w = g.input("w", DataType::Float, dims![elements]);
    let y = g.mul(&x, &w);
    g.output("y", &y, DataType::Float, dims!["batch", elements]);
    let mut model = ModelBuilder::new(g).build();
    let mut graph = model.graph.take().unwrap();
    let inputs = std::mem::take(&mut graph.input);

    let tensor_head = TensorProto {
        dims: vec![elements as i64],
        data_type: Some(DataType::Float as i32),
        name: Some("w".into()),
        ..TensorProto::default()
    }
    .encode_to_vec();
    let mut raw_head = Vec::new();
    length_delimited(9, WEIGHT_BYTES, &mut raw_head); // TensorProto.raw_data
    let tensor_len = (tensor_head.len() + raw_head.len()) as u64 + WEIGHT_BYTES;

    let graph_head = graph.encode_to_vec();
    let mut initializer_head = Vec::new();
    length_delimited(5, tensor_len, &mut initializer_head); // GraphProto.initializer
    let graph_tail = GraphProto {
        input: inputs,
        ..GraphProto::default()
    }
    .encode_to_vec();
    let graph_len = (graph_head.len() + initializer_head.len() + tensor_head.len() + raw_head.len())
        as u64
        + WEIGHT_BYTES
        + graph_tail.len() as u64;

    let mut head = model.encode_to_vec();
    length_delimited(7, graph_len, &mut head); // ModelProto.graph
    for part in [&graph_head, &initializer_head, &tensor_head, &raw_head] {
        head.extend_from_slice(part);
    }
    let tail_model = ModelProto {
        metadata_props: vec![StringStringEntryProto {
            key: Some("after".into()),
            value: Some("the graph".into()),
        }],
        ..ModelProto::default()
    };

    let mut file = File::create(path).unwrap();
    file.write_all(&head).unwrap();
    file.seek(SeekFrom::Current(WEIGHT_BYTES as i64)).unwrap(); // a hole of zero bytes
    file.write_all(&graph_tail).unwrap();
    file.write_all(&tail_model.encode_to_vec()).unwrap();
}

#[test]
fn reading_inputs_of_a_200_mb_model_allocates_under_a_fixed_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.onnx");
    write_model_with_huge_initializer(&path);
    assert!(std::fs::metadata(&path).unwrap().len() > WEIGHT_BYTES);

    let (inputs, grew) = heap::peak_growth(|| read_graph_inputs(&path).unwrap());

    let shown: Vec<String> = inputs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["x: FLOAT [batch, 50000000]"],
        "`w` is an initializer, not an input"
    );
    assert!(
        grew < HEAP_CAP,
        "reading grew the heap by {grew} bytes (cap {HEAP_CAP})"
    );
}
