//! Writing small ONNX models in code, for tests and examples.
//!
//! ```no_run
//! use onnx_graph::{dims, Conv2d, DataType, GraphBuilder, ModelBuilder};
//!
//! let mut g = GraphBuilder::new("tiny", 7);
//! let x = g.input("images", DataType::Float, dims!["N", 3, 32, 32]);
//! let x = g.conv2d(&x, Conv2d::new(3, 8, 3));
//! let x = g.relu(&x);
//! let x = g.global_average_pool(&x);
//! let x = g.flatten(&x);
//! let x = g.linear(&x, 8, 4);
//! g.output("logits", &x, DataType::Float, dims!["N", 4]);
//! ModelBuilder::new(g).write("tiny.onnx".as_ref())?;
//! # Ok::<(), onnx_graph::OnnxError>(())
//! ```
//!
//! Builders panic on programming mistakes (a duplicate name, a value from another graph, data
//! that does not fit its dimensions): their inputs are code, not user data.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use prost::Message;

use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::{Dimension, dimension};
use crate::proto::type_proto;
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::{Dim, OnnxError, SplitMix64};

mod layers;

pub use layers::Conv2d;

/// The operator set models are written against unless [`ModelBuilder::opset`] says otherwise.
pub const DEFAULT_OPSET: i64 = 17;

/// The IR version that goes with [`DEFAULT_OPSET`] (ONNX 1.12 introduced both).
pub const DEFAULT_IR_VERSION: i64 = 8;

/// Builds a `Vec<Dim>` from sizes and names: `dims!["N", 3, 224, 224]`.
#[macro_export]
macro_rules! dims {
    ($($dim:expr),* $(,)?) => {
        ::std::vec![$($crate::Dim::from($dim)),*]
    };
}

/// A named value of a graph being built: an input, an initializer or a node's output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value {
    name: String,
}

impl Value {
    /// The value's name in the graph.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Builds a `GraphProto`: inputs, initializers, nodes and outputs, with unique generated names and
/// weights drawn from a seeded generator.
#[derive(Debug)]
pub struct GraphBuilder {
    graph: GraphProto,
    names: HashSet<String>,
    op_counts: BTreeMap<String, usize>,
    rng: SplitMix64,
}

impl GraphBuilder {
    /// An empty graph named `name`; `seed` fixes every random weight added later.
    pub fn new(name: &str, seed: u64) -> Self {
        Self {
            graph: GraphProto {
                name: Some(name.to_owned()),
                ..GraphProto::default()
            },
            names: HashSet::new(),
            op_counts: BTreeMap::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// Adds a graph input; dimensions may be fixed (`3`), symbolic (`"N"`) or [`Dim::Unknown`].
    pub fn input(
        &mut self,
        name: &str,
        element_type: DataType,
        dims: impl IntoIterator<Item = Dim>,
    ) -> Value {
        let value = self.claim(name);
        let info = value_info(name, element_type, Some(dims.into_iter().collect()));
        self.graph.input.push(info);
        value
    }

    /// Declares `value` a graph output named `name` with the given type and dimensions, renaming
    /// the node output (use the returned handle from here on).
    pub fn output(
        &mut self,
        name: &str,
        value: &Value,
        element_type: DataType,
        dims: impl IntoIterator<Item = Dim>,
    ) -> Value {
        let value = self.expose(name, value);
        let info = value_info(name, element_type, Some(dims.into_iter().collect()));
        self.graph.output.push(info);
        value
    }

    /// Like [`output`](Self::output), for an output whose rank the model does not state.
    pub fn output_rank_unknown(
        &mut self,
        name: &str,
        value: &Value,
        element_type: DataType,
    ) -> Value {
        let value = self.expose(name, value);
        self.graph.output.push(value_info(name, element_type, None));
        value
    }

    /// Adds a float initializer (stored as little-endian `raw_data`).
    ///
    /// # Panics
    /// If `data` does not have the number of elements `dims` implies, or the name is taken.
    pub fn initializer_f32(&mut self, name: &str, dims: &[u64], data: &[f32]) -> Value {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data.len(), DataType::Float, raw)
    }

    /// Adds an int64 initializer, e.g. a shape for `Reshape`.
    ///
    /// # Panics
    /// If `data` does not have the number of elements `dims` implies, or the name is taken.
    pub fn initializer_i64(&mut self, name: &str, dims: &[u64], data: &[i64]) -> Value {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data.len(), DataType::Int64, raw)
    }

    /// Adds a float initializer of shape `dims` filled uniformly from `[-bound, bound)` by the
    /// graph's seeded generator.
    pub fn random_f32(&mut self, name: &str, dims: &[u64], bound: f32) -> Value {
        let count = dims.iter().product::<u64>() as usize;
        let data = self.rng.uniform(count, bound);
        self.initializer_f32(name, dims, &data)
    }

    /// Adds a node of `op_type` (default ONNX domain) with one output, named after the operator
    /// (`conv_0`, `relu_3`, ...).
    ///
    /// # Panics
    /// If an input is not a value of this graph.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&Value],
        attributes: impl IntoIterator<Item = AttributeProto>,
    ) -> Value {
        let name = self.fresh_name(op_type);
        self.named_node(name, op_type, inputs, attributes)
    }

    /// The seeded generator behind [`random_f32`](Self::random_f32), for custom initial values.
    pub fn rng(&mut self) -> &mut SplitMix64 {
        &mut self.rng
    }

    /// The finished `GraphProto`.
    pub fn finish(self) -> GraphProto {
        self.graph
    }

    /// Adds a node named `name` whose single output is also called `name`.
    fn named_node(
        &mut self,
        name: String,
        op_type: &str,
        inputs: &[&Value],
        attributes: impl IntoIterator<Item = AttributeProto>,
    ) -> Value {
        for input in inputs {
            assert!(
                self.names.contains(input.name()),
                "{op_type} node {name}: input {:?} is not a value of graph {:?} (renamed by output()?)",
                input.name(),
                self.graph.name()
            );
        }
        let output = self.claim(&name);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|v| v.name.clone()).collect(),
            output: vec![name.clone()],
            name: Some(name),
            op_type: Some(op_type.to_owned()),
            attribute: attributes.into_iter().collect(),
            ..NodeProto::default()
        });
        output
    }

    /// A name not used yet in this graph: `conv_0`, `conv_1`, `global_average_pool_0`, ...
    fn fresh_name(&mut self, op_type: &str) -> String {
        let prefix = snake_case(op_type);
        loop {
            let count = self.op_counts.entry(prefix.clone()).or_insert(0);
            let name = format!("{prefix}_{count}");
            *count += 1;
            if !self.names.contains(&name) {
                return name;
            }
        }
    }

    /// Reserves `name`, panicking when it is taken.
    fn claim(&mut self, name: &str) -> Value {
        assert!(
            self.names.insert(name.to_owned()),
            "the name {name:?} is used twice in graph {:?}",
            self.graph.name()
        );
        Value {
            name: name.to_owned(),
        }
    }

    fn initializer(
        &mut self,
        name: &str,
        dims: &[u64],
        count: usize,
        data_type: DataType,
        raw: Vec<u8>,
    ) -> Value {
        let expected: u64 = dims.iter().product();
        assert_eq!(
            expected, count as u64,
            "initializer {name:?} of dims {dims:?} needs {expected} values, got {count}"
        );
        let value = self.claim(name);
        self.graph.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type as i32),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..TensorProto::default()
        });
        value
    }

    /// Makes `value` available under `name`: renames the node output that produces it, or adds an
    /// `Identity` node when it is an input or initializer.
    fn expose(&mut self, name: &str, value: &Value) -> Value {
        if value.name == name {
            return value.clone();
        }
        let producer = self
            .graph
            .node
            .iter()
            .position(|node| node.output.contains(&value.name));
        let Some(producer) = producer else {
            return self.named_node(name.to_owned(), "Identity", &[value], []);
        };
        let renamed = self.claim(name);
        self.names.remove(&value.name);
        for node in &mut self.graph.node[producer..] {
            for slot in node.output.iter_mut().chain(node.input.iter_mut()) {
                if *slot == value.name {
                    slot.clone_from(&renamed.name);
                }
            }
        }
        for output in &mut self.graph.output {
            if output.name() == value.name {
                output.name = Some(renamed.name.clone());
            }
        }
        renamed
    }
}

/// `GlobalAveragePool` → `global_average_pool`.
fn snake_case(op_type: &str) -> String {
    let mut out = String::with_capacity(op_type.len() + 4);
    for (i, c) in op_type.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A tensor `ValueInfoProto`; `dims` of `None` leaves the shape (and rank) out.
fn value_info(name: &str, element_type: DataType, dims: Option<Vec<Dim>>) -> ValueInfoProto {
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|dim| Dimension {
                value: match dim {
                    Dim::Fixed(size) => Some(dimension::Value::DimValue(size as i64)),
                    Dim::Symbolic(name) => Some(dimension::Value::DimParam(name)),
                    Dim::Unknown => None,
                },
                ..Dimension::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(element_type as i32),
                shape,
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// Wraps a finished graph into a `ModelProto` with an opset import and writes it.
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    model: ModelProto,
}

impl ModelBuilder {
    /// A model of `graph` against [`DEFAULT_OPSET`] and [`DEFAULT_IR_VERSION`], produced by
    /// "trtfarm onnx-graph".
    pub fn new(graph: GraphBuilder) -> Self {
        Self {
            model: ModelProto {
                ir_version: Some(DEFAULT_IR_VERSION),
                producer_name: Some("trtfarm onnx-graph".to_owned()),
                graph: Some(graph.finish()),
                ..ModelProto::default()
            },
        }
        .opset(DEFAULT_OPSET)
    }

    /// Sets the default-domain operator set version.
    pub fn opset(mut self, version: i64) -> Self {
        self.model.opset_import = vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(version),
        }];
        self
    }

    /// Sets the IR version (it must be new enough for the opset).
    pub fn ir_version(mut self, version: i64) -> Self {
        self.model.ir_version = Some(version);
        self
    }

    /// Sets the model's documentation string.
    pub fn doc_string(mut self, text: &str) -> Self {
        self.model.doc_string = Some(text.to_owned());
        self
    }

    /// The finished `ModelProto`.
    pub fn build(self) -> ModelProto {
        self.model
    }

    /// Writes the model to `path` (see [`write_model`]).
    pub fn write(self, path: &Path) -> Result<(), OnnxError> {
        write_model(&self.model, path)
    }
}

/// Encodes `model` and writes it to `path` through a temporary file in the same directory, so a
/// reader never sees half a model.
pub fn write_model(model: &ModelProto, path: &Path) -> Result<(), OnnxError> {
    let write_error = |source| OnnxError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    fs::write(&temporary, model.encode_to_vec()).map_err(write_error)?;
    fs::rename(&temporary, path).map_err(|source| {
        let _ = fs::remove_file(&temporary);
        write_error(source)
    })
}

#[cfg(test)]
mod tests;
