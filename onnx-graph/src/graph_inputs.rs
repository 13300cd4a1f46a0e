//! Reading a model's graph inputs (names, element types, shapes) without loading the model.
//!
//! Models carry their weights inline, often gigabytes of them, and the build farm only needs the
//! inputs to check optimization profiles. So the file is streamed: the reader walks
//! `ModelProto.graph` (field 7), decodes each small `GraphProto.input` (field 11) with prost, and
//! from each `GraphProto.initializer` (field 5) keeps only `TensorProto.name` (field 8), seeking
//! over everything else. Inputs that are also initializers are weights with defaults, not inputs
//! a profile has to cover, and are left out.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Seek};
use std::path::Path;

use prost::Message;

use crate::OnnxError;
use crate::proto::tensor_proto::DataType;
use crate::proto::tensor_shape_proto::dimension;
use crate::proto::{TensorShapeProto, ValueInfoProto, type_proto};
use crate::wire::{FieldTag, WireReader, WireType};

/// One dimension of a graph input's shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Fixed(u64),
    /// A named size chosen at run time (`dim_param`); inputs sharing a name share the size.
    Symbolic(String),
    /// Neither: any size (also how a negative `dim_value` or an empty `dim_param` reads).
    Unknown,
}

impl Dim {
    /// A symbolic dimension named `name`.
    pub fn symbolic(name: impl Into<String>) -> Self {
        Self::Symbolic(name.into())
    }

    /// Whether the size is only known at run time.
    pub fn is_dynamic(&self) -> bool {
        !matches!(self, Self::Fixed(_))
    }

    fn from_proto(dim: &crate::proto::tensor_shape_proto::Dimension) -> Self {
        match &dim.value {
            Some(dimension::Value::DimValue(value)) if *value >= 0 => Self::Fixed(*value as u64),
            Some(dimension::Value::DimParam(name)) if !name.is_empty() => {
                Self::Symbolic(name.clone())
            }
            _ => Self::Unknown,
        }
    }
}

impl From<u64> for Dim {
    fn from(size: u64) -> Self {
        Self::Fixed(size)
    }
}

impl From<&str> for Dim {
    fn from(name: &str) -> Self {
        Self::Symbolic(name.to_owned())
    }
}

impl From<String> for Dim {
    fn from(name: String) -> Self {
        Self::Symbolic(name)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(size) => write!(f, "{size}"),
            Self::Symbolic(name) => f.write_str(name),
            Self::Unknown => f.write_str("?"),
        }
    }
}

/// The element type of a graph input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// A type this build's onnx.proto lists (`Undefined` when the model leaves it out).
    Known(DataType),
    /// A code this build's onnx.proto does not know (a newer ONNX).
    Unrecognized(i32),
}

impl ElementType {
    /// The element type for an ONNX `TensorProto.DataType` code.
    pub fn from_code(code: i32) -> Self {
        DataType::try_from(code).map_or(Self::Unrecognized(code), Self::Known)
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        match self {
            Self::Known(data_type) => data_type as i32,
            Self::Unrecognized(code) => code,
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(data_type) => f.write_str(data_type.as_str_name()),
            Self::Unrecognized(code) => write!(f, "element type {code}"),
        }
    }
}

/// What kind of value a graph input is; TensorRT takes only dense tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// A dense tensor.
    Tensor,
    /// A sparse tensor.
    SparseTensor,
    /// A sequence of values.
    Sequence,
    /// A map.
    Map,
    /// An optional value.
    Optional,
    /// An opaque value.
    Opaque,
    /// The input declares no type.
    Untyped,
}

/// A graph input that is not an initializer: what an optimization profile must describe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GraphInput {
    /// The input's name.
    pub name: String,
    /// Tensor, sparse tensor, or something TensorRT cannot take.
    pub kind: InputKind,
    /// The element type (`Known(Undefined)` for non-tensor kinds).
    pub element_type: ElementType,
    /// The dimensions, or `None` when the model does not give the rank.
    pub dims: Option<Vec<Dim>>,
}

impl GraphInput {
    fn from_value_info(info: ValueInfoProto) -> Self {
        let undefined = ElementType::Known(DataType::Undefined);
        let shape = |elem_type: Option<i32>, shape: Option<TensorShapeProto>| {
            let element_type = elem_type.map_or(undefined, ElementType::from_code);
            let dims = shape.map(|shape| shape.dim.iter().map(Dim::from_proto).collect());
            (element_type, dims)
        };
        let (kind, (element_type, dims)) = match info.r#type.and_then(|ty| ty.value) {
            Some(type_proto::Value::TensorType(t)) => {
                (InputKind::Tensor, shape(t.elem_type, t.shape))
            }
            Some(type_proto::Value::SparseTensorType(t)) => {
                (InputKind::SparseTensor, shape(t.elem_type, t.shape))
            }
            Some(type_proto::Value::SequenceType(_)) => (InputKind::Sequence, (undefined, None)),
            Some(type_proto::Value::MapType(_)) => (InputKind::Map, (undefined, None)),
            Some(type_proto::Value::OptionalType(_)) => (InputKind::Optional, (undefined, None)),
            Some(type_proto::Value::OpaqueType(_)) => (InputKind::Opaque, (undefined, None)),
            None => (InputKind::Untyped, (undefined, None)),
        };
        Self {
            name: info.name.unwrap_or_default(),
            kind,
            element_type,
            dims,
        }
    }
}

impl fmt::Display for GraphInput {
    /// `images: FLOAT [N, 3, 224, 224]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        match self.kind {
            InputKind::Tensor => write!(f, "{}", self.element_type)?,
            InputKind::SparseTensor => write!(f, "sparse {}", self.element_type)?,
            other => return write!(f, "{other:?}"),
        }
        match &self.dims {
            None => f.write_str(" (rank unknown)"),
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
                write!(f, " [{}]", dims.join(", "))
            }
        }
    }
}

/// Returns the inputs of the model's main graph that are not initializers, in graph order,
/// streaming the file: memory use does not depend on the size of the weights.
pub fn read_graph_inputs(path: &Path) -> Result<Vec<GraphInput>, OnnxError> {
    Ok(scan_file(path)?.into_inputs())
}

/// Returns the inputs (as [`read_graph_inputs`] does) and the outputs of the model's main
/// graph, in graph order, from one streaming read (weights skipped). An output has the same
/// form as an input: name, element type and dimensions as the model declares them.
pub fn read_graph_io(path: &Path) -> Result<(Vec<GraphInput>, Vec<GraphInput>), OnnxError> {
    let mut scan = scan_file(path)?;
    let outputs = std::mem::take(&mut scan.outputs)
        .into_iter()
        .map(GraphInput::from_value_info)
        .collect();
    Ok((scan.into_inputs(), outputs))
}

/// Opens `path` and runs [`scan_model`] over it.
pub(crate) fn scan_file(path: &Path) -> Result<GraphScan, OnnxError> {
    let mut reader = WireReader::open(path)?;
    scan_model(&mut reader)
}

/// What the scan of a model collects.
#[derive(Default)]
pub(crate) struct GraphScan {
    inputs: Vec<ValueInfoProto>,
    /// The main graph's outputs (read for [`crate::sanity`]; small like the inputs).
    pub(crate) outputs: Vec<ValueInfoProto>,
    initializer_names: HashSet<String>,
    /// `graph` fields seen (protobuf merges repeated ones).
    graphs: usize,
}

impl GraphScan {
    /// The main graph's inputs that are not initializers, as declared.
    pub(crate) fn input_infos(&self) -> impl Iterator<Item = &ValueInfoProto> {
        self.inputs
            .iter()
            .filter(|info| !self.initializer_names.contains(info.name()))
    }

    fn into_inputs(self) -> Vec<GraphInput> {
        let initializers = self.initializer_names;
        self.inputs
            .into_iter()
            .filter(|info| !initializers.contains(info.name()))
            .map(GraphInput::from_value_info)
            .collect()
    }
}

// Field numbers from onnx.proto.
const MODEL_IR_VERSION: u32 = 1;
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;
const TENSOR_NAME: u32 = 8;
const SPARSE_TENSOR_VALUES: u32 = 1;

/// The wire type onnx.proto implies for a `ModelProto` field, where the field is known.
fn model_field(number: u32) -> Option<(&'static str, WireType)> {
    Some(match number {
        1 => ("ModelProto.ir_version", WireType::Varint),
        2 => ("ModelProto.producer_name", WireType::Len),
        3 => ("ModelProto.producer_version", WireType::Len),
        4 => ("ModelProto.domain", WireType::Len),
        5 => ("ModelProto.model_version", WireType::Varint),
        6 => ("ModelProto.doc_string", WireType::Len),
        7 => ("ModelProto.graph", WireType::Len),
        8 => ("ModelProto.opset_import", WireType::Len),
        14 => ("ModelProto.metadata_props", WireType::Len),
        20 => ("ModelProto.training_info", WireType::Len),
        25 => ("ModelProto.functions", WireType::Len),
        26 => ("ModelProto.configuration", WireType::Len),
        _ => return None,
    })
}

/// Scans a whole `ModelProto`.
///
/// Until a `graph` field (7, length-delimited) turns up, a decoding error is reported as "not an
/// ONNX model": other protobuf files (a serialized `TensorProto`, say) start with fields that
/// also fit `ModelProto`, but no real model is damaged in those first few bytes, while a cut-off
/// or corrupt model fails inside or after its graph.
pub(crate) fn scan_model<R: Read + Seek>(
    reader: &mut WireReader<R>,
) -> Result<GraphScan, OnnxError> {
    let end = reader.len();
    if end == 0 {
        return Err(OnnxError::NotOnnx {
            path: reader.path().to_owned(),
            offset: 0,
            reason: "the file is empty".into(),
        });
    }
    let mut scan = GraphScan::default();
    let mut saw_ir_version = false;
    while reader.position() < end {
        let field = scan_model_field(reader, end, &mut scan).map_err(|err| {
            if scan.graphs > 0 {
                err
            } else {
                err.into_not_onnx()
            }
        })?;
        saw_ir_version |= field == MODEL_IR_VERSION;
    }
    let missing = match (saw_ir_version, scan.graphs > 0) {
        (_, false) => "it has no graph (ModelProto field 7)",
        (false, true) => "it has no ir_version (ModelProto field 1)",
        (true, true) => return Ok(scan),
    };
    Err(OnnxError::NotOnnx {
        path: reader.path().to_owned(),
        offset: end,
        reason: missing.into(),
    })
}

/// Reads one field of `ModelProto` and returns its number.
fn scan_model_field<R: Read + Seek>(
    reader: &mut WireReader<R>,
    end: u64,
    scan: &mut GraphScan,
) -> Result<u32, OnnxError> {
    let tag = reader.read_tag(end, "ModelProto")?;
    let Some((what, expected)) = model_field(tag.number) else {
        reader.skip(tag, end, "an unknown ModelProto field")?;
        return Ok(tag.number);
    };
    if tag.wire_type != expected {
        return Err(reader.wrong_wire_type(tag, what, expected));
    }
    if tag.number == MODEL_GRAPH {
        scan.graphs += 1;
        // A repeated `graph` field merges, as protobuf specifies.
        let graph_end = reader.read_len(end, what)?;
        scan_graph(reader, graph_end, scan)?;
    } else {
        reader.skip(tag, end, what)?;
    }
    Ok(tag.number)
}

/// Scans a `GraphProto` payload ending at `end`.
fn scan_graph<R: Read + Seek>(
    reader: &mut WireReader<R>,
    end: u64,
    scan: &mut GraphScan,
) -> Result<(), OnnxError> {
    while reader.position() < end {
        let tag = reader.read_tag(end, "GraphProto")?;
        let what = match tag.number {
            GRAPH_INPUT => "GraphProto.input",
            GRAPH_OUTPUT => "GraphProto.output",
            GRAPH_INITIALIZER => "GraphProto.initializer",
            GRAPH_SPARSE_INITIALIZER => "GraphProto.sparse_initializer",
            _ => {
                reader.skip(tag, end, "GraphProto")?;
                continue;
            }
        };
        let entry_end = expect_len(reader, tag, end, what)?;
        match tag.number {
            GRAPH_INPUT | GRAPH_OUTPUT => {
                let offset = reader.position();
                let bytes = reader.read_payload(entry_end, what)?;
                let info = ValueInfoProto::decode(bytes.as_slice())
                    .map_err(|err| reader.malformed(offset, what, err.to_string()))?;
                if tag.number == GRAPH_INPUT {
                    scan.inputs.push(info);
                } else {
                    scan.outputs.push(info);
                }
            }
            GRAPH_INITIALIZER => {
                if let Some(name) = scan_tensor_name(reader, entry_end)? {
                    scan.initializer_names.insert(name);
                }
            }
            _ => {
                if let Some(name) = scan_sparse_tensor_name(reader, entry_end)? {
                    scan.initializer_names.insert(name);
                }
            }
        }
    }
    Ok(())
}

/// Checks that `tag` is length-delimited and returns where its payload ends.
fn expect_len<R: Read + Seek>(
    reader: &mut WireReader<R>,
    tag: FieldTag,
    end: u64,
    what: &str,
) -> Result<u64, OnnxError> {
    if tag.wire_type != WireType::Len {
        return Err(reader.wrong_wire_type(tag, what, WireType::Len));
    }
    reader.read_len(end, what)
}

/// Reads `TensorProto.name` from a tensor payload ending at `end`, seeking over its data.
fn scan_tensor_name<R: Read + Seek>(
    reader: &mut WireReader<R>,
    end: u64,
) -> Result<Option<String>, OnnxError> {
    let mut name = None;
    while reader.position() < end {
        let tag = reader.read_tag(end, "TensorProto")?;
        if tag.number != TENSOR_NAME {
            reader.skip(tag, end, "TensorProto")?;
            continue;
        }
        let what = "TensorProto.name";
        let name_end = expect_len(reader, tag, end, what)?;
        let offset = reader.position();
        let bytes = reader.read_payload(name_end, what)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| reader.malformed(offset, what, "the name is not UTF-8".into()))?;
        name = Some(text); // the last occurrence wins, as protobuf specifies
    }
    Ok(name)
}

/// Reads the name of a sparse initializer (`SparseTensorProto.values.name`).
fn scan_sparse_tensor_name<R: Read + Seek>(
    reader: &mut WireReader<R>,
    end: u64,
) -> Result<Option<String>, OnnxError> {
    let mut name = None;
    while reader.position() < end {
        let tag = reader.read_tag(end, "SparseTensorProto")?;
        if tag.number != SPARSE_TENSOR_VALUES {
            reader.skip(tag, end, "SparseTensorProto")?;
            continue;
        }
        let values_end = expect_len(reader, tag, end, "SparseTensorProto.values")?;
        // Repeated `values` fields merge; a name in a later one replaces an earlier one.
        if let Some(found) = scan_tensor_name(reader, values_end)? {
            name = Some(found);
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
