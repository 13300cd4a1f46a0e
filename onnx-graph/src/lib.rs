//! ONNX models for trtfarm: the protobuf types generated from `onnx.proto` ([`proto`]), a small
//! writer of real networks for tests and examples ([`GraphBuilder`], [`ModelBuilder`]), and a
//! streaming reader of a model's graph inputs ([`read_graph_inputs`]) that never loads the
//! weights, and the check a model passes before TensorRT sees it ([`sanity::check_model`]).

#![warn(missing_docs)]

pub mod attr;
pub mod autocast;
mod builder;
pub mod deps;
mod error;
pub mod example_models;
pub mod external_data;
mod graph_inputs;
mod model_stream;
mod nodes;
pub mod proto;
pub mod quantization;
pub mod sanity;
mod weights;
mod wire;

pub use builder::{
    Conv2d, DEFAULT_IR_VERSION, DEFAULT_OPSET, GraphBuilder, ModelBuilder, Value, write_model,
};
pub use error::OnnxError;
pub use graph_inputs::{Dim, ElementType, GraphInput, InputKind, read_graph_inputs, read_graph_io};
pub use nodes::{NodeName, read_node_names};
pub use proto::tensor_proto::DataType;
pub use weights::SplitMix64;
