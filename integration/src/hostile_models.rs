//! Malformed and hostile ONNX files, each a few hundred bytes, for tests that submit them
//! through the real daemon: every one must fail in the build worker with a message that says
//! what is wrong, and never take the daemon down.
//!
//! Each generator writes `dir/model.onnx` (and, where the case needs one, a data file beside
//! it) and returns the model's path. Every model that is a model at all has the input
//! `images [N, 3, 8, 8]` of [`crate::models::images_manifest`]`("model.onnx", 8, ...)`, so the
//! manifest itself is valid and only the model is at fault.

use std::path::{Path, PathBuf};

use onnx_graph::proto::attribute_proto::AttributeType;
use onnx_graph::proto::tensor_proto::DataLocation;
use onnx_graph::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto,
    TypeProto, ValueInfoProto, type_proto,
};
use onnx_graph::{Conv2d, DataType, GraphBuilder, ModelBuilder, SplitMix64, dims};

/// The file name every generator writes.
pub const MODEL_FILE: &str = "model.onnx";

/// The name of the data file the external-data cases write beside the model.
pub const DATA_FILE: &str = "weights.bin";

/// Bytes in [`DATA_FILE`].
pub const DATA_FILE_BYTES: usize = 16;

fn write_bytes(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join(MODEL_FILE);
    std::fs::write(&path, bytes).expect("write the hostile model");
    path
}

fn write(dir: &Path, model: &ModelProto) -> PathBuf {
    let path = dir.join(MODEL_FILE);
    onnx_graph::write_model(model, &path).expect("write the hostile model");
    path
}

/// `images [N, 3, 8, 8]` → a 3×3 convolution to 8 channels → ReLU: a real model with weights.
pub fn small_cnn() -> ModelProto {
    let mut g = GraphBuilder::new("small_cnn", 5);
    let x = g.input("images", DataType::Float, dims!["N", 3, 8, 8]);
    let y = g.conv2d(&x, Conv2d::new(3, 8, 3));
    let y = g.relu(&y);
    g.output_rank_unknown("features", &y, DataType::Float);
    ModelBuilder::new(g).build()
}

/// A good model, to show the daemon still builds after the hostile ones.
pub fn good(dir: &Path) -> PathBuf {
    write(dir, &small_cnn())
}

/// [`small_cnn`] cut in half, inside its convolution weights.
pub fn truncated(dir: &Path) -> PathBuf {
    use prost::Message;
    let bytes = small_cnn().encode_to_vec();
    write_bytes(dir, &bytes[..bytes.len() / 2])
}

/// 4 KiB of seeded pseudo-random bytes.
pub fn random_bytes(dir: &Path) -> PathBuf {
    let mut rng = SplitMix64::new(0x0bad_5eed);
    let bytes: Vec<u8> = (0..512)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    write_bytes(dir, &bytes)
}

/// A PNG signature and header: another file format entirely.
pub fn wrong_magic(dir: &Path) -> PathBuf {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x08\0\0\0\x08\x08\x02\0\0\0".to_vec();
    bytes.resize(256, 0);
    write_bytes(dir, &bytes)
}

/// A line of text, which is valid protobuf (unknown varint and length fields): TensorRT's
/// parser reads it as an empty model and fails only later, "Network must have at least one
/// output".
pub fn text_file(dir: &Path) -> PathBuf {
    write_bytes(dir, b"hello, this is not a model\n")
}

/// [`small_cnn`] with its graph outputs removed.
pub fn no_outputs(dir: &Path) -> PathBuf {
    let mut model = small_cnn();
    model.graph.as_mut().expect("a graph").output.clear();
    write(dir, &model)
}

/// `images` declared `[N, 3, 8, 2^40]` → ReLU: TensorRT's parser reads the last dimension as 0.
pub fn huge_dims(dir: &Path) -> PathBuf {
    let mut g = GraphBuilder::new("huge_dims", 6);
    let x = g.input("images", DataType::Float, dims!["N", 3, 8, 1u64 << 40]);
    let y = g.relu(&x);
    g.output("y", &y, DataType::Float, dims!["N", 3, 8, 1u64 << 40]);
    write(dir, &ModelBuilder::new(g).build())
}

/// `a = Add(images, b)`, `b = Relu(a)`, `y = Relu(a)`: node A's output feeds B and B's feeds A.
pub fn cyclic(dir: &Path) -> PathBuf {
    let mut g = GraphBuilder::new("cyclic", 7);
    let x = g.input("images", DataType::Float, dims!["N", 3, 8, 8]);
    let a = g.add(&x, &x);
    let b = g.relu(&a);
    let y = g.relu(&a);
    g.output("y", &y, DataType::Float, dims!["N", 3, 8, 8]);
    let mut model = ModelBuilder::new(g).build();
    let graph = model.graph.as_mut().expect("a graph");
    let add = graph
        .node
        .iter_mut()
        .find(|n| n.op_type() == "Add")
        .expect("the Add node");
    add.input[1] = b.name().to_owned();
    write(dir, &model)
}

/// `images` → `FrobnicateTensor`, an operator no ONNX opset or plugin has.
pub fn unknown_op(dir: &Path) -> PathBuf {
    let mut g = GraphBuilder::new("unknown_op", 8);
    let x = g.input("images", DataType::Float, dims!["N", 3, 8, 8]);
    let y = g.node("FrobnicateTensor", &[&x], []);
    g.output_rank_unknown("y", &y, DataType::Float);
    write(dir, &ModelBuilder::new(g).build())
}

/// `images + w` with the one-float initializer `w` stored externally at `location`, `offset`,
/// `length`; [`DATA_FILE`] ([`DATA_FILE_BYTES`] bytes) is written beside the model.
pub fn external_data(dir: &Path, location: &str, offset: u64, length: u64) -> PathBuf {
    let mut g = GraphBuilder::new("external", 9);
    let x = g.input("images", DataType::Float, dims!["N", 3, 8, 8]);
    let w = g.initializer_f32("w", &[1], &[1.0]);
    let y = g.add(&x, &w);
    g.output("y", &y, DataType::Float, dims!["N", 3, 8, 8]);
    let mut model = ModelBuilder::new(g).build();
    let tensor = model
        .graph
        .as_mut()
        .expect("a graph")
        .initializer
        .iter_mut()
        .find(|t| t.name() == "w")
        .expect("the initializer");
    let entry = |key: &str, value: String| StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value),
    };
    tensor.raw_data = None;
    tensor.data_location = Some(DataLocation::External as i32);
    tensor.external_data = vec![
        entry("location", location.into()),
        entry("offset", offset.to_string()),
        entry("length", length.to_string()),
    ];
    std::fs::write(dir.join(DATA_FILE), [0u8; DATA_FILE_BYTES]).expect("write the data file");
    write(dir, &model)
}

/// A float tensor value of unstated shape, as a subgraph output.
fn float_output(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: None,
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// A subgraph computing `Relu(images)` (from the enclosing scope) as `name`.
fn relu_branch(name: &str) -> GraphProto {
    GraphProto {
        name: Some(format!("{name}_graph")),
        node: vec![NodeProto {
            op_type: Some("Relu".into()),
            input: vec!["images".into()],
            output: vec![name.into()],
            ..NodeProto::default()
        }],
        output: vec![float_output(name)],
        ..GraphProto::default()
    }
}

fn graph_attribute(name: &str, graph: GraphProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(graph),
        ..AttributeProto::default()
    }
}

/// `If(cond)` nodes nested `depth` deep: each `then_branch` holds the next `If`, each
/// `else_branch` (and the innermost `then_branch`) computes `Relu(images)`. A valid model in
/// every other respect.
pub fn nested_subgraphs(dir: &Path, depth: usize) -> PathBuf {
    let mut inner = relu_branch(&format!("leaf{depth}"));
    for level in (1..depth).rev() {
        let out = format!("if{level}");
        inner = GraphProto {
            name: Some(format!("level{level}")),
            node: vec![NodeProto {
                op_type: Some("If".into()),
                input: vec!["cond".into()],
                output: vec![out.clone()],
                attribute: vec![
                    graph_attribute("then_branch", inner),
                    graph_attribute("else_branch", relu_branch(&format!("else{level}"))),
                ],
                ..NodeProto::default()
            }],
            output: vec![float_output(&out)],
            ..GraphProto::default()
        };
    }
    let mut g = GraphBuilder::new("nested", 10);
    let _images = g.input("images", DataType::Float, dims!["N", 3, 8, 8]);
    let mut model = ModelBuilder::new(g).build();
    let graph = model.graph.as_mut().expect("a graph");
    graph.initializer.push(TensorProto {
        name: Some("cond".into()),
        data_type: Some(DataType::Bool as i32),
        raw_data: Some(vec![1]),
        ..TensorProto::default()
    });
    graph.node.push(NodeProto {
        op_type: Some("If".into()),
        input: vec!["cond".into()],
        output: vec!["y".into()],
        attribute: vec![
            graph_attribute("then_branch", inner),
            graph_attribute("else_branch", relu_branch("else0")),
        ],
        ..NodeProto::default()
    });
    graph.output.push(float_output("y"));
    write(dir, &model)
}
