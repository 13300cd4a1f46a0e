//! Models and inspection helpers shared by the autocast and quantization tests.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use onnx_graph::proto::tensor_shape_proto::{Dimension, dimension};
use onnx_graph::proto::{
    GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    type_proto,
};
use onnx_graph::{Conv2d, DataType, GraphBuilder, ModelBuilder, attr, dims};

pub const FLOAT: i32 = DataType::Float as i32;
pub const FLOAT16: i32 = DataType::Float16 as i32;
pub const BFLOAT16: i32 = DataType::Bfloat16 as i32;

/// A tensor `ValueInfoProto` with fixed dims.
pub fn tensor_info(name: &str, elem: DataType, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Dimension::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// The declared element type of a value info.
pub fn elem_type(info: &ValueInfoProto) -> i32 {
    match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.elem_type(),
        other => panic!("{} is not a tensor: {other:?}", info.name()),
    }
}

pub fn graph(model: &ModelProto) -> &GraphProto {
    model.graph.as_ref().unwrap()
}

/// The node producing `output`.
pub fn producer<'a>(graph: &'a GraphProto, output: &str) -> &'a NodeProto {
    let found = graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == output));
    found.unwrap_or_else(|| panic!("nothing produces {output:?}"))
}

/// The nodes of operator `op`, in graph order.
pub fn nodes_of<'a>(graph: &'a GraphProto, op: &str) -> Vec<&'a NodeProto> {
    graph.node.iter().filter(|n| n.op_type() == op).collect()
}

pub fn initializer<'a>(graph: &'a GraphProto, name: &str) -> &'a TensorProto {
    let found = graph.initializer.iter().find(|t| t.name() == name);
    found.unwrap_or_else(|| panic!("no initializer {name:?}"))
}

/// The `to` of a `Cast` node.
pub fn cast_to(node: &NodeProto) -> i64 {
    assert_eq!(node.op_type(), "Cast", "{node:?}");
    node.attribute
        .iter()
        .find(|a| a.name() == "to")
        .unwrap()
        .i()
}

/// The values of a float16 tensor's `raw_data`.
pub fn f16_values(tensor: &TensorProto) -> Vec<f32> {
    assert_eq!(tensor.data_type(), FLOAT16, "{}", tensor.name());
    let raw = tensor.raw_data();
    raw.chunks_exact(2)
        .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
        .collect()
}

/// The values of a float32 tensor (`raw_data` or `float_data`).
pub fn f32_values(tensor: &TensorProto) -> Vec<f32> {
    assert_eq!(tensor.data_type(), FLOAT, "{}", tensor.name());
    if tensor.raw_data.is_none() {
        return tensor.float_data.clone();
    }
    let raw = tensor.raw_data();
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The float value of IEEE half-precision bits.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f32::from(bits & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        0x1f if mantissa == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

/// A small CNN classifier: conv, batch norm, ReLU, pooling, a linear head. A `value_info`
/// declares the ReLU output. Nothing in it needs float32.
pub fn cnn(seed: u64) -> ModelProto {
    let mut g = GraphBuilder::new("cnn", seed);
    let x = g.input("images", DataType::Float, dims!["N", 3, 16, 16]);
    let x = g.conv2d(&x, Conv2d::new(3, 8, 3).without_bias());
    let x = g.batch_norm(&x, 8);
    let relu = g.relu(&x);
    let x = g.global_average_pool(&relu);
    let x = g.flatten(&x);
    let x = g.linear(&x, 8, 4);
    g.output("logits", &x, DataType::Float, dims!["N", 4]);
    let mut model = ModelBuilder::new(g).build();
    let info = tensor_info(relu.name(), DataType::Float, &[]);
    model
        .graph
        .as_mut()
        .unwrap()
        .value_info
        .push(ValueInfoProto {
            r#type: info.r#type.map(|mut t| {
                if let Some(type_proto::Value::TensorType(tensor)) = t.value.as_mut() {
                    tensor.shape = None; // rank-free: the batch is symbolic
                }
                t
            }),
            ..info
        });
    model
}

/// A transformer-style block with every kind of kept operator: MatMul → LayerNormalization →
/// Softmax → MatMul, a ReduceMean and an Exp on the side; ends in Softmax.
pub fn attention_block(seed: u64) -> ModelProto {
    let mut g = GraphBuilder::new("attention", seed);
    let x = g.input("tokens", DataType::Float, dims!["N", 8]);
    let w1 = g.random_f32("w1", &[8, 8], 0.5);
    let h = g.matmul(&x, &w1);
    let scale = g.initializer_f32("ln.scale", &[8], &[1.0; 8]);
    let bias = g.initializer_f32("ln.bias", &[8], &[0.0; 8]);
    let h = g.node(
        "LayerNormalization",
        &[&h, &scale, &bias],
        [attr::int("axis", -1)],
    );
    let p = g.softmax(&h);
    let w2 = g.random_f32("w2", &[8, 8], 0.5);
    let y = g.matmul(&p, &w2);
    let axes = g.initializer_i64("axes", &[1], &[-1]);
    let mean = g.node("ReduceMean", &[&y, &axes], [attr::int("keepdims", 1)]);
    let e = g.node("Exp", &[&mean], []);
    let y = g.add(&y, &e);
    let y = g.softmax(&y);
    g.output("probs", &y, DataType::Float, dims!["N", 8]);
    ModelBuilder::new(g).opset(18).build()
}

/// A model whose shape is computed in float: `Reshape(relu, Cast(Mul(Cast(Shape(relu)), 1.0)))`,
/// a `Resize` with float32 `scales`, and a `ConstantOfShape` that makes data.
pub fn shape_arithmetic(seed: u64) -> ModelProto {
    let mut g = GraphBuilder::new("shapes", seed);
    let x = g.input("x", DataType::Float, dims![1, 2, 4, 4]);
    let relu = g.relu(&x);
    let shape = g.node("Shape", &[&relu], []);
    let shape_f = g.node("Cast", &[&shape], [attr::int("to", FLOAT as i64)]);
    let one = g.initializer_f32("one", &[], &[1.0]);
    let same = g.node("Mul", &[&shape_f, &one], []);
    let shape_i = g.node("Cast", &[&same], [attr::int("to", DataType::Int64 as i64)]);
    let reshaped = g.node("Reshape", &[&relu, &shape_i], []);
    let roi = g.initializer_f32("roi", &[0], &[]);
    let scales = g.initializer_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let up = g.node(
        "Resize",
        &[&reshaped, &roi, &scales],
        [attr::string("mode", "nearest")],
    );
    let up_shape = g.node("Shape", &[&up], []);
    let filler = g.node("ConstantOfShape", &[&up_shape], []);
    let y = g.add(&up, &filler);
    g.output("y", &y, DataType::Float, dims![1, 2, 8, 8]);
    ModelBuilder::new(g).build()
}

/// Writes `model` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let path = dir.join(name);
    onnx_graph::write_model(model, &path).unwrap();
    path
}

/// Runs the ONNX checker with full (strict) shape inference on every model; panics with
/// Python's error when one fails, returns how many passed.
pub fn check_with_onnx(models: &[PathBuf]) -> usize {
    let script = r#"
import sys, onnx
for path in sys.argv[1:]:
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    print("ok", path)
"#;
    let args: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
    let out = crate::common::run_python(script, &args);
    out.lines().filter(|l| l.starts_with("ok ")).count()
}
