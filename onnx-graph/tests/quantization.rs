//! Explicit quantization checks: Q/DQ nodes counted by element type, and the error for a
//! quantized precision on a model without them.

mod common;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use onnx_graph::autocast::{AutocastOptions, AutocastTarget, autocast_file};
use onnx_graph::external_data::write_with_external_data;
use onnx_graph::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use onnx_graph::quantization::{
    QdqCounts, QdqSummary, quantization_summary, require_explicit_quantization, summarize_model,
};
use onnx_graph::{DEFAULT_IR_VERSION, DataType};
use support::*;

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{op}:{}", outputs[0])),
        op_type: Some(op.to_owned()),
        ..NodeProto::default()
    }
}

fn tensor(name: &str, data_type: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.to_owned()),
        data_type: Some(data_type as i32),
        dims: dims.to_vec(),
        raw_data: Some(raw),
        ..TensorProto::default()
    }
}

/// `y = MatMul(DQ(Q(x)), DQ(w))` with activations and weights quantized to `elem` (one byte
/// per element, or two per byte for 4-bit types).
fn qdq_model(elem: DataType, opset: i64) -> ModelProto {
    let packed = matches!(elem, DataType::Int4 | DataType::Float4e2m1);
    let graph = GraphProto {
        name: Some("qdq".into()),
        node: vec![
            node("QuantizeLinear", &["x", "scale", "zero"], &["x_q"]),
            node("DequantizeLinear", &["x_q", "scale", "zero"], &["x_dq"]),
            node("DequantizeLinear", &["w_q", "scale", "zero"], &["w"]),
            node("MatMul", &["x_dq", "w"], &["y"]),
        ],
        initializer: vec![
            tensor(
                "scale",
                DataType::Float,
                &[],
                0.05f32.to_le_bytes().to_vec(),
            ),
            tensor("zero", elem, &[], vec![0]),
            tensor(
                "w_q",
                elem,
                &[4, 4],
                vec![0x11; if packed { 8 } else { 16 }],
            ),
        ],
        input: vec![tensor_info("x", DataType::Float, &[1, 4])],
        output: vec![tensor_info("y", DataType::Float, &[1, 4])],
        ..GraphProto::default()
    };
    ModelProto {
        ir_version: Some(match opset {
            ..=17 => DEFAULT_IR_VERSION,
            18..=20 => 9,
            21 | 22 => 10,
            _ => 11,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(graph),
        ..ModelProto::default()
    }
}

fn counts(quantize: usize, dequantize: usize, pairs: usize) -> QdqCounts {
    QdqCounts {
        quantize,
        dequantize,
        pairs,
    }
}

#[test]
fn counts_int8_qdq_pairs_and_weight_dequantization() {
    let summary = summarize_model(&qdq_model(DataType::Int8, 13));
    assert_eq!(summary.total, counts(1, 2, 1));
    assert_eq!(
        summary.by_type,
        BTreeMap::from([(DataType::Int8, counts(1, 2, 1))])
    );
    assert!(summary.tensorrt_ops.is_empty());
    assert_eq!(require_explicit_quantization(&summary, "int8"), Ok(()));

    let error = require_explicit_quantization(&summary, "fp8").unwrap_err();
    assert!(error.contains("FLOAT8E4M3FN"), "{error}");
    assert!(error.contains("other types (INT8 1 Q + 2 DQ)"), "{error}");
    assert!(
        error.contains("python -m modelopt.onnx.quantization"),
        "{error}"
    );
    assert!(error.contains("--quantize_mode fp8"), "{error}");
}

#[test]
fn a_model_without_qdq_fails_with_what_is_missing_and_how_to_make_it() {
    let summary = summarize_model(&cnn(1));
    assert_eq!(summary, QdqSummary::default());
    for precision in ["int8", "fp8", "fp4"] {
        let error = require_explicit_quantization(&summary, precision).unwrap_err();
        assert!(
            error.contains(&format!("precision = \"{precision}\"")),
            "{error}"
        );
        assert!(
            error.contains("the model has no QuantizeLinear/DequantizeLinear nodes"),
            "{error}"
        );
        assert!(error.contains("TensorRT Model Optimizer"), "{error}");
        assert!(error.contains("does not calibrate"), "{error}");
    }
    let error = require_explicit_quantization(&summary, "int8").unwrap_err();
    assert!(
        error.contains("--quantize_mode int8 --calibration_data"),
        "{error}"
    );
    let error = require_explicit_quantization(&summary, "fp4").unwrap_err();
    assert!(error.contains("modelopt.torch.quantization"), "{error}");
    let error = require_explicit_quantization(&summary, "fp16").unwrap_err();
    assert!(
        error.contains("not an explicitly quantized precision"),
        "{error}"
    );
}

#[test]
fn fp8_int4_and_unsupported_flavours_are_told_apart() {
    let fp8 = summarize_model(&qdq_model(DataType::Float8e4m3fn, 19));
    assert_eq!(fp8.by_type[&DataType::Float8e4m3fn], counts(1, 2, 1));
    assert_eq!(require_explicit_quantization(&fp8, "fp8"), Ok(()));
    assert!(require_explicit_quantization(&fp8, "int8").is_err());

    let e5m2 = summarize_model(&qdq_model(DataType::Float8e5m2, 19));
    let error = require_explicit_quantization(&e5m2, "fp8").unwrap_err();
    assert!(error.contains("TensorRT's FP8 is E4M3"), "{error}");

    let uint8 = summarize_model(&qdq_model(DataType::Uint8, 13));
    let error = require_explicit_quantization(&uint8, "int8").unwrap_err();
    assert!(error.contains("signed, symmetric INT8"), "{error}");

    let int4 = summarize_model(&qdq_model(DataType::Int4, 21));
    assert_eq!(int4.by_type[&DataType::Int4], counts(1, 2, 1));
    assert!(require_explicit_quantization(&int4, "int8").is_err());
}

#[test]
fn the_nvfp4_export_pattern_counts_as_fp4() {
    // What ModelOpt exports for NVFP4: FP4 weights behind DequantizeLinear, activations through
    // TensorRT's TRT_FP4DynamicQuantize (FP4 data + FP8 block scales) and two DQs.
    let mut model = qdq_model(DataType::Float4e2m1, 23);
    let graph = model.graph.as_mut().unwrap();
    let mut dynamic = node(
        "TRT_FP4DynamicQuantize",
        &["x", "scale"],
        &["x_fp4", "x_scales"],
    );
    dynamic.domain = Some("trt".into());
    graph.node.splice(
        0..2,
        [
            dynamic,
            node(
                "DequantizeLinear",
                &["x_scales", "scale"],
                &["x_block_scale"],
            ),
            node("DequantizeLinear", &["x_fp4", "x_block_scale"], &["x_dq"]),
        ],
    );
    let summary = summarize_model(&model);
    assert_eq!(
        summary.tensorrt_ops,
        BTreeMap::from([("TRT_FP4DynamicQuantize".into(), 1)])
    );
    assert_eq!(summary.by_type[&DataType::Float4e2m1], counts(1, 2, 1));
    assert_eq!(summary.by_type[&DataType::Float8e4m3fn], counts(0, 1, 1));
    assert_eq!(require_explicit_quantization(&summary, "fp4"), Ok(()));
}

#[test]
fn the_file_summary_skips_weights_and_matches_the_model_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    for (name, model) in [
        ("int8", qdq_model(DataType::Int8, 13)),
        ("fp8", qdq_model(DataType::Float8e4m3fn, 19)),
        ("plain", cnn(2)),
    ] {
        let inline = write(dir.path(), &format!("{name}.onnx"), &model);
        assert_eq!(
            quantization_summary(&inline).unwrap(),
            summarize_model(&model),
            "{name}"
        );
        let external = dir.path().join(format!("{name}.ext.onnx"));
        write_with_external_data(&model, &external, &format!("{name}.bin")).unwrap();
        assert_eq!(
            quantization_summary(&external).unwrap(),
            summarize_model(&model),
            "{name}"
        );
    }
    let missing = dir.path().join("missing.onnx");
    assert!(quantization_summary(&missing).is_err());
}

#[test]
fn autocast_keeps_qdq_in_float32_and_the_result_checks() {
    let dir = tempfile::tempdir().unwrap();
    let model = qdq_model(DataType::Int8, 13);
    let input = write(dir.path(), "int8.onnx", &model);
    let output = dir.path().join("int8.fp16.onnx");
    let report =
        autocast_file(&input, &output, &AutocastOptions::new(AutocastTarget::Half)).unwrap();
    let kept: Vec<&str> = report
        .kept_fp32_nodes
        .iter()
        .map(|(_, op)| op.as_str())
        .collect();
    assert_eq!(
        kept,
        ["QuantizeLinear", "DequantizeLinear", "DequantizeLinear"]
    );
    assert_eq!(
        report.inserted_casts, 3,
        "x into Q, both DQ outputs into MatMul"
    );
    assert_eq!(
        quantization_summary(&output).unwrap(),
        summarize_model(&model)
    );
    assert_eq!(check_with_onnx(&[PathBuf::from(&output)]), 1);
}
