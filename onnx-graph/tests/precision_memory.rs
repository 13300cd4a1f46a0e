//! Autocast streams external weights and the Q/DQ summary skips weights: the heap stays far
//! below the weights' size. The only test in this binary, because it measures the whole
//! process's heap through a counting global allocator.

use std::fs::{self, File};

use onnx_graph::autocast::{AutocastOptions, AutocastTarget, autocast_file};
use onnx_graph::proto::tensor_proto::DataLocation;
use onnx_graph::proto::{StringStringEntryProto, TensorProto};
use onnx_graph::quantization::quantization_summary;
use onnx_graph::{DataType, GraphBuilder, ModelBuilder, dims, write_model};

mod heap;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

const ELEMENTS: u64 = 16 * 1024 * 1024;
const WEIGHT_BYTES: u64 = ELEMENTS * 4;
/// Read buffers, one chunk and its conversion, the small model: nowhere near the 64 MiB.
const HEAP_CAP: usize = 8 * 1024 * 1024;

/// `y = x * w`, `w` a float32 vector of `ELEMENTS`.
fn graph(name: &str) -> GraphBuilder {
    let mut g = GraphBuilder::new(name, 0);
    let x = g.input("x", DataType::Float, dims!["batch", ELEMENTS]);
    let w = g.input("w", DataType::Float, dims![ELEMENTS]);
    let y = g.mul(&x, &w);
    g.output("y", &y, DataType::Float, dims!["batch", ELEMENTS]);
    g
}

fn weight(raw_data: Option<Vec<u8>>) -> TensorProto {
    TensorProto {
        dims: vec![ELEMENTS as i64],
        data_type: Some(DataType::Float as i32),
        name: Some("w".into()),
        raw_data,
        ..TensorProto::default()
    }
}

#[test]
fn external_weights_are_converted_streamed_and_summaries_skip_weights() {
    let dir = tempfile::tempdir().unwrap();

    // 64 MiB of external float32 weights (a sparse file of zeros), converted into 32 MiB.
    let mut model = ModelBuilder::new(graph("external")).build();
    let graph_proto = model.graph.as_mut().unwrap();
    graph_proto.input.retain(|i| i.name() != "w");
    let entry = |key: &str, value: String| StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value),
    };
    graph_proto.initializer.push(TensorProto {
        external_data: vec![
            entry("location", "w.bin".into()),
            entry("length", WEIGHT_BYTES.to_string()),
        ],
        data_location: Some(DataLocation::External as i32),
        ..weight(None)
    });
    let input = dir.path().join("model.onnx");
    write_model(&model, &input).unwrap();
    File::create(dir.path().join("w.bin"))
        .unwrap()
        .set_len(WEIGHT_BYTES)
        .unwrap();
    let output = dir.path().join("model.fp16.onnx");
    let mut options = AutocastOptions::new(AutocastTarget::Half);
    options.inline_limit = WEIGHT_BYTES / 4; // the 32 MiB result goes beside the model
    let (report, growth) = heap::peak_growth(|| autocast_file(&input, &output, &options).unwrap());
    let data = report.external_data.expect("written as external data");
    assert_eq!(fs::metadata(data).unwrap().len(), WEIGHT_BYTES / 2);
    assert!(
        growth < HEAP_CAP,
        "autocast grew the heap by {growth} bytes"
    );

    // A 64 MiB inline weight: the Q/DQ summary never reads it.
    let mut model = ModelBuilder::new(graph("inline")).build();
    let raw = vec![0u8; WEIGHT_BYTES as usize];
    model
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .push(weight(Some(raw)));
    let inline = dir.path().join("inline.onnx");
    write_model(&model, &inline).unwrap();
    drop(model);
    let (summary, growth) = heap::peak_growth(|| quantization_summary(&inline).unwrap());
    assert_eq!(summary.total.quantize + summary.total.dequantize, 0);
    assert!(
        growth < HEAP_CAP,
        "the summary grew the heap by {growth} bytes"
    );
}
