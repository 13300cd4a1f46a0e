//! The ONNX protobuf messages (`ModelProto`, `GraphProto`, `TensorProto`, ...), generated at build
//! time by prost from the `onnx.proto` of the pinned `onnx` wheel (see `build.rs`).

#![allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
