//! Explicit quantization: int8, fp8 and fp4 engines take their scales from
//! QuantizeLinear/DequantizeLinear (Q/DQ) nodes in the model. TensorRT 11 and TensorRT-RTX have
//! no calibrator, and trtfarm does not calibrate, so a model without them cannot be built at those
//! precisions; [`require_explicit_quantization`] says so, and how such models are usually made.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::OnnxError;
use crate::autocast::types::{Types, infer_types};
use crate::model_stream::{Payloads, read_model};
use crate::proto::tensor_proto::DataType;
use crate::proto::{GraphProto, ModelProto};

/// Q/DQ nodes of one element type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QdqCounts {
    /// Quantizing nodes (`QuantizeLinear` and TensorRT's own quantize operators).
    pub quantize: usize,
    /// Dequantizing nodes.
    pub dequantize: usize,
    /// Dequantizing nodes that read a quantizing node's output directly.
    pub pairs: usize,
}

/// The Q/DQ nodes of a model (main graph, subgraphs and local functions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QdqSummary {
    /// All Q/DQ nodes together.
    pub total: QdqCounts,
    /// By quantized element type (`INT8`, `FLOAT8E4M3FN`, `INT4`, `FLOAT4E2M1`, ...);
    /// `Undefined` where the model does not say.
    pub by_type: BTreeMap<DataType, QdqCounts>,
    /// TensorRT's own quantization operators (`TRT_FP4DynamicQuantize`, `TRT_FP8QuantizeLinear`,
    /// ...), by operator; they are also counted above under the type they produce.
    pub tensorrt_ops: BTreeMap<String, usize>,
}

/// Counts the Q/DQ nodes of the model at `path`. Tensor data is skipped, never loaded.
pub fn quantization_summary(path: &Path) -> Result<QdqSummary, OnnxError> {
    Ok(summarize_model(&read_model(path, Payloads::Skip)?))
}

/// Counts the Q/DQ nodes of a model in memory.
pub fn summarize_model(model: &ModelProto) -> QdqSummary {
    let mut summary = QdqSummary::default();
    if let Some(graph) = &model.graph {
        summarize_graph(graph, &Types::new(), &mut summary);
    }
    for function in &model.functions {
        let graph = GraphProto {
            node: function.node.clone(),
            ..GraphProto::default()
        };
        summarize_graph(&graph, &Types::new(), &mut summary);
    }
    summary
}

/// TensorRT's quantization operators: whether they quantize, and the type of each output.
fn tensorrt_op(op: &str) -> Option<(bool, &'static [DataType])> {
    use DataType::{Float4e2m1, Float8e4m3fn, Int4};
    Some(match op {
        "TRT_FP8QuantizeLinear" | "TRT_MXFP8QuantizeLinear" => (true, &[Float8e4m3fn]),
        "TRT_MXFP8DynamicQuantize" => (true, &[Float8e4m3fn]),
        "TRT_FP8DequantizeLinear" | "TRT_MXFP8DequantizeLinear" => (false, &[Float8e4m3fn]),
        "TRT_INT4QuantizeLinear" => (true, &[Int4]),
        "TRT_INT4DequantizeLinear" => (false, &[Int4]),
        // The FP4 data, then its per-block FP8 scales.
        "TRT_FP4DynamicQuantize" => (true, &[Float4e2m1, Float8e4m3fn]),
        _ => return None,
    })
}

fn summarize_graph(graph: &GraphProto, outer: &Types, summary: &mut QdqSummary) {
    let mut types = outer.clone();
    types.extend(infer_types(graph));
    let as_type = |code: Option<&i32>| {
        code.and_then(|&c| DataType::try_from(c).ok())
            .unwrap_or(DataType::Undefined)
    };
    // The quantized type of every quantizing node's outputs, so a DQ reading one is a pair.
    let mut quantized: HashMap<&str, DataType> = HashMap::new();
    for node in &graph.node {
        let op = node.op_type();
        let quantize = match (op, tensorrt_op(op)) {
            ("QuantizeLinear", _) => Some(vec![as_type(
                node.output.first().and_then(|o| types.get(o)),
            )]),
            (_, Some((true, outputs))) => Some(outputs.to_vec()),
            _ => None,
        };
        if let Some(outputs) = quantize {
            for (output, data_type) in node.output.iter().zip(&outputs) {
                quantized.insert(output, *data_type);
            }
            count(summary, outputs[0], |c| c.quantize += 1);
        }
        if tensorrt_op(op).is_some() {
            *summary.tensorrt_ops.entry(op.to_owned()).or_default() += 1;
        }
    }
    for node in &graph.node {
        let op = node.op_type();
        let dequantize_type = match (op, tensorrt_op(op)) {
            ("DequantizeLinear", _) => {
                let input = node.input.first().map_or("", String::as_str);
                Some(
                    quantized
                        .get(input)
                        .copied()
                        .unwrap_or_else(|| as_type(types.get(input))),
                )
            }
            (_, Some((false, outputs))) => Some(outputs[0]),
            _ => None,
        };
        if let Some(data_type) = dequantize_type {
            let paired = node
                .input
                .first()
                .is_some_and(|i| quantized.contains_key(i.as_str()));
            count(summary, data_type, |c| {
                c.dequantize += 1;
                c.pairs += usize::from(paired);
            });
        }
        for attribute in &node.attribute {
            for subgraph in attribute.g.iter().chain(&attribute.graphs) {
                summarize_graph(subgraph, &types, summary);
            }
        }
    }
}

fn count(summary: &mut QdqSummary, data_type: DataType, add: impl Fn(&mut QdqCounts)) {
    add(&mut summary.total);
    add(summary.by_type.entry(data_type).or_default());
}

/// Checks that a model summarized as `summary` can be built at `precision` (`int8`, `fp8` or
/// `fp4`): it needs Q/DQ nodes of that type (`INT8`, `FLOAT8E4M3FN`, `FLOAT4E2M1`). The error
/// says what is missing and how such models are usually produced.
pub fn require_explicit_quantization(summary: &QdqSummary, precision: &str) -> Result<(), String> {
    let (needed, mode) = match precision {
        "int8" => (DataType::Int8, "int8"),
        "fp8" => (DataType::Float8e4m3fn, "fp8"),
        "fp4" => (DataType::Float4e2m1, "nvfp4"),
        other => {
            return Err(format!(
                "precision {other:?} is not an explicitly quantized precision (int8, fp8 or fp4)"
            ));
        }
    };
    let present = summary.by_type.get(&needed);
    if present.is_some_and(|c| c.quantize + c.dequantize > 0) {
        return Ok(());
    }
    let found = if summary.total.quantize + summary.total.dequantize == 0 {
        "the model has no QuantizeLinear/DequantizeLinear nodes".to_owned()
    } else {
        let types: Vec<String> = (summary.by_type.iter())
            .map(|(t, c)| format!("{} {} Q + {} DQ", t.as_str_name(), c.quantize, c.dequantize))
            .collect();
        format!(
            "the model's Q/DQ nodes are of other types ({})",
            types.join(", ")
        )
    };
    let has = |t: DataType| summary.by_type.contains_key(&t);
    let note = match precision {
        "int8" if has(DataType::Uint8) => {
            " TensorRT takes only signed, symmetric INT8 quantization (zero point 0); UINT8 \
             Q/DQ, as ONNX Runtime's quantizer writes by default, is not used."
        }
        "fp8" if has(DataType::Float8e5m2) || has(DataType::Float8e4m3fnuz) => {
            " TensorRT's FP8 is E4M3 (FLOAT8E4M3FN)."
        }
        _ => "",
    };
    let how = if precision == "fp4" {
        "quantize the PyTorch model with `modelopt.torch.quantization` (`mtq.NVFP4_DEFAULT_CFG`) \
         and export it to ONNX, which writes TRT_FP4DynamicQuantize and FLOAT4E2M1 \
         DequantizeLinear nodes"
            .to_owned()
    } else {
        format!(
            "`pip install \"nvidia-modelopt[onnx]\"`, then `python -m modelopt.onnx.quantization \
             --onnx_path model.onnx --quantize_mode {mode} --calibration_data calib.npz \
             --output_path model.{mode}.onnx` (or quantize the PyTorch model with \
             `modelopt.torch.quantization` before exporting it)"
        )
    };
    Err(format!(
        "precision = \"{precision}\" needs an explicitly quantized model, with {} \
         QuantizeLinear/DequantizeLinear (Q/DQ) nodes carrying the scales TensorRT uses, but \
         {found}.{note} trtfarm does not calibrate models. Quantize it first with NVIDIA \
         TensorRT Model Optimizer (ModelOpt): {how}; then point the manifest at the quantized \
         model.",
        needed.as_str_name()
    ))
}
