//! The external-data files a model's tensors live in, listed without loading the model; and a
//! writer of such models for tests and benchmarks.
//!
//! Models past protobuf's 2 GB limit keep their weights outside the `.onnx` file: a tensor with
//! `data_location = EXTERNAL` names a file (`external_data` entry `location`, relative to the
//! model's directory) and a byte range in it. Those files are inputs of a build as much as the
//! model is. The scan streams the model like [`crate::read_graph_inputs`]: it walks the graph,
//! its nodes' attributes (`Constant` tensors, `If`/`Loop`/`Scan` subgraphs), sparse
//! initializers, model-local functions and training graphs, decodes only the small
//! `external_data` entries, and seeks over everything else.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek};
use std::path::Path;

use prost::Message;

use crate::OnnxError;
use crate::proto::tensor_proto::DataLocation;
use crate::proto::{ModelProto, StringStringEntryProto};
use crate::wire::{FieldTag, WireReader, WireType};

/// Subgraphs nest (an `If` inside a `Loop` ...); deeper than this is a corrupt or hostile file.
const MAX_DEPTH: usize = 64;

/// Returns the distinct `location`s of the model's external tensors, sorted, as written (paths
/// relative to the model's directory). Streams the file: memory does not grow with the weights.
pub fn read_external_data_locations(path: &Path) -> Result<Vec<String>, OnnxError> {
    let tensors = read_external_tensors(path)?;
    let locations: BTreeSet<String> = tensors.into_iter().map(|t| t.location).collect();
    Ok(locations.into_iter().collect())
}

/// One tensor whose data lives in another file, as its `external_data` entries say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTensor {
    /// The tensor's name (empty when it has none).
    pub name: String,
    /// The data file, as written: a path relative to the model's directory.
    pub location: String,
    /// The `offset` entry as written, if any (decimal bytes; default 0).
    pub offset: Option<String>,
    /// The `length` entry as written, if any (decimal bytes; default: to the end of the file).
    pub length: Option<String>,
}

/// Every external tensor of the model, in file order, with where its data is said to be.
/// Streams the file like [`read_external_data_locations`].
pub fn read_external_tensors(path: &Path) -> Result<Vec<ExternalTensor>, OnnxError> {
    let mut reader = WireReader::open(path)?;
    scan_tensors(&mut reader)
}

/// Writes `model` to `path` with the data of every main-graph initializer moved to the file
/// `location` (relative to the model's directory), as `onnx.save(..., save_as_external_data=True)`
/// does. Returns the bytes written to the data file. Meant for tests and benchmarks.
pub fn write_with_external_data(
    model: &ModelProto,
    path: &Path,
    location: &str,
) -> Result<u64, OnnxError> {
    let data_path = path.with_file_name(location);
    let mut model = model.clone();
    let mut data = Vec::new();
    if let Some(graph) = model.graph.as_mut() {
        for tensor in &mut graph.initializer {
            let Some(raw) = tensor.raw_data.take() else {
                continue;
            };
            let entry = |key: &str, value: String| StringStringEntryProto {
                key: Some(key.to_owned()),
                value: Some(value),
            };
            tensor.external_data = vec![
                entry("location", location.to_owned()),
                entry("offset", data.len().to_string()),
                entry("length", raw.len().to_string()),
            ];
            tensor.data_location = Some(DataLocation::External as i32);
            data.extend_from_slice(&raw);
        }
    }
    fs::write(&data_path, &data).map_err(|source| OnnxError::Write {
        path: data_path.clone(),
        source,
    })?;
    crate::write_model(&model, path)?;
    Ok(data.len() as u64)
}

// Field numbers from onnx.proto.
const MODEL_GRAPH: u32 = 7;
const MODEL_TRAINING_INFO: u32 = 20;
const MODEL_FUNCTIONS: u32 = 25;
const TRAINING_INITIALIZATION: u32 = 1;
const TRAINING_ALGORITHM: u32 = 2;
const FUNCTION_NODE: u32 = 7;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;
const NODE_ATTRIBUTE: u32 = 5;
const ATTRIBUTE_T: u32 = 5;
const ATTRIBUTE_G: u32 = 6;
const ATTRIBUTE_TENSORS: u32 = 10;
const ATTRIBUTE_GRAPHS: u32 = 11;
const ATTRIBUTE_SPARSE_TENSOR: u32 = 22;
const ATTRIBUTE_SPARSE_TENSORS: u32 = 23;
const SPARSE_VALUES: u32 = 1;
const SPARSE_INDICES: u32 = 2;
const TENSOR_NAME: u32 = 8;
const TENSOR_EXTERNAL_DATA: u32 = 13;
const TENSOR_DATA_LOCATION: u32 = 14;

/// Scans a whole `ModelProto` for the locations of external tensors.
#[cfg(test)]
pub(crate) fn scan_locations<R: Read + Seek>(
    reader: &mut WireReader<R>,
) -> Result<BTreeSet<String>, OnnxError> {
    Ok(scan_tensors(reader)?
        .into_iter()
        .map(|t| t.location)
        .collect())
}

/// Scans a whole `ModelProto` for external tensors.
pub(crate) fn scan_tensors<R: Read + Seek>(
    reader: &mut WireReader<R>,
) -> Result<Vec<ExternalTensor>, OnnxError> {
    let mut scan = Scan {
        reader,
        tensors: Vec::new(),
    };
    let end = scan.reader.len();
    while scan.reader.position() < end {
        let tag = scan.reader.read_tag(end, "ModelProto")?;
        match tag.number {
            MODEL_GRAPH => scan.nested(tag, end, "ModelProto.graph", 0, Scan::graph)?,
            MODEL_FUNCTIONS => scan.nested(tag, end, "ModelProto.functions", 0, Scan::function)?,
            MODEL_TRAINING_INFO => {
                scan.nested(tag, end, "ModelProto.training_info", 0, Scan::training_info)?
            }
            _ => scan.reader.skip(tag, end, "ModelProto")?,
        }
    }
    Ok(scan.tensors)
}

/// A message scanner: takes the payload's end and the nesting depth.
type Part<'a, R> = fn(&mut Scan<'a, R>, u64, usize) -> Result<(), OnnxError>;

struct Scan<'a, R> {
    reader: &'a mut WireReader<R>,
    tensors: Vec<ExternalTensor>,
}

impl<'a, R: Read + Seek> Scan<'a, R> {
    /// Scans the length-delimited message `tag` introduces with `part`.
    fn nested(
        &mut self,
        tag: FieldTag,
        end: u64,
        what: &str,
        depth: usize,
        part: Part<'a, R>,
    ) -> Result<(), OnnxError> {
        if tag.wire_type != WireType::Len {
            return Err(self.reader.wrong_wire_type(tag, what, WireType::Len));
        }
        if depth > MAX_DEPTH {
            return Err(self.reader.malformed(
                tag.offset,
                what,
                format!("subgraphs nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        let payload_end = self.reader.read_len(end, what)?;
        part(self, payload_end, depth)
    }

    fn training_info(&mut self, end: u64, depth: usize) -> Result<(), OnnxError> {
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "TrainingInfoProto")?;
            match tag.number {
                TRAINING_INITIALIZATION | TRAINING_ALGORITHM => {
                    self.nested(tag, end, "TrainingInfoProto graph", depth + 1, Self::graph)?
                }
                _ => self.reader.skip(tag, end, "TrainingInfoProto")?,
            }
        }
        Ok(())
    }

    fn function(&mut self, end: u64, depth: usize) -> Result<(), OnnxError> {
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "FunctionProto")?;
            match tag.number {
                FUNCTION_NODE => self.nested(tag, end, "FunctionProto.node", depth, Self::node)?,
                _ => self.reader.skip(tag, end, "FunctionProto")?,
            }
        }
        Ok(())
    }

    fn graph(&mut self, end: u64, depth: usize) -> Result<(), OnnxError> {
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "GraphProto")?;
            match tag.number {
                GRAPH_NODE => self.nested(tag, end, "GraphProto.node", depth, Self::node)?,
                GRAPH_INITIALIZER => {
                    self.nested(tag, end, "GraphProto.initializer", depth, Self::tensor)?
                }
                GRAPH_SPARSE_INITIALIZER => self.nested(
                    tag,
                    end,
                    "GraphProto.sparse_initializer",
                    depth,
                    Self::sparse_tensor,
                )?,
                _ => self.reader.skip(tag, end, "GraphProto")?,
            }
        }
        Ok(())
    }

    fn node(&mut self, end: u64, depth: usize) -> Result<(), OnnxError> {
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "NodeProto")?;
            match tag.number {
                NODE_ATTRIBUTE => {
                    self.nested(tag, end, "NodeProto.attribute", depth, Self::attribute)?
                }
                _ => self.reader.skip(tag, end, "NodeProto")?,
            }
        }
        Ok(())
    }

    fn attribute(&mut self, end: u64, depth: usize) -> Result<(), OnnxError> {
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "AttributeProto")?;
            let what = "AttributeProto";
            match tag.number {
                ATTRIBUTE_T | ATTRIBUTE_TENSORS => {
                    self.nested(tag, end, what, depth, Self::tensor)?
                }
                ATTRIBUTE_G | ATTRIBUTE_GRAPHS => {
                    self.nested(tag, end, what, depth + 1, Self::graph)?
                }
                ATTRIBUTE_SPARSE_TENSOR | ATTRIBUTE_SPARSE_TENSORS => {
                    self.nested(tag, end, what, depth, Self::sparse_tensor)?
                }
                _ => self.reader.skip(tag, end, what)?,
            }
        }
        Ok(())
    }

    fn sparse_tensor(&mut self, end: u64, depth: usize) -> Result<(), OnnxError> {
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "SparseTensorProto")?;
            match tag.number {
                SPARSE_VALUES | SPARSE_INDICES => {
                    self.nested(tag, end, "SparseTensorProto tensor", depth, Self::tensor)?
                }
                _ => self.reader.skip(tag, end, "SparseTensorProto")?,
            }
        }
        Ok(())
    }

    /// Records the tensor when its `data_location` is EXTERNAL (in whichever order the fields
    /// come; the last `data_location` and the last entry of each key win, as protobuf and ONNX
    /// specify).
    fn tensor(&mut self, end: u64, _depth: usize) -> Result<(), OnnxError> {
        let start = self.reader.position();
        let mut location = None;
        let mut offset = None;
        let mut length = None;
        let mut name = String::new();
        let mut external = false;
        while self.reader.position() < end {
            let tag = self.reader.read_tag(end, "TensorProto")?;
            match tag.number {
                TENSOR_EXTERNAL_DATA => {
                    let what = "TensorProto.external_data";
                    if tag.wire_type != WireType::Len {
                        return Err(self.reader.wrong_wire_type(tag, what, WireType::Len));
                    }
                    let entry_end = self.reader.read_len(end, what)?;
                    let entry_start = self.reader.position();
                    let bytes = self.reader.read_payload(entry_end, what)?;
                    let entry = StringStringEntryProto::decode(bytes.as_slice())
                        .map_err(|e| self.reader.malformed(entry_start, what, e.to_string()))?;
                    match entry.key() {
                        "location" => location = Some(entry.value().to_owned()),
                        "offset" => offset = Some(entry.value().to_owned()),
                        "length" => length = Some(entry.value().to_owned()),
                        _ => {}
                    }
                }
                TENSOR_NAME => {
                    let what = "TensorProto.name";
                    if tag.wire_type != WireType::Len {
                        return Err(self.reader.wrong_wire_type(tag, what, WireType::Len));
                    }
                    let name_end = self.reader.read_len(end, what)?;
                    let bytes = self.reader.read_payload(name_end, what)?;
                    name = String::from_utf8_lossy(&bytes).into_owned();
                }
                TENSOR_DATA_LOCATION => {
                    let what = "TensorProto.data_location";
                    if tag.wire_type != WireType::Varint {
                        return Err(self.reader.wrong_wire_type(tag, what, WireType::Varint));
                    }
                    external = self.reader.read_varint(end, what)? == DataLocation::External as u64;
                }
                _ => self.reader.skip(tag, end, "TensorProto")?,
            }
        }
        match (external, location) {
            (true, Some(location)) if !location.is_empty() => {
                self.tensors.push(ExternalTensor {
                    name,
                    location,
                    offset,
                    length,
                });
            }
            (true, _) => {
                return Err(self.reader.malformed(
                    start,
                    "TensorProto",
                    "the tensor's data is EXTERNAL but it names no `location`".into(),
                ));
            }
            (false, _) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::proto::tensor_proto::DataType;
    use crate::proto::{
        AttributeProto, FunctionProto, GraphProto, NodeProto, SparseTensorProto, TensorProto,
    };
    use crate::{GraphBuilder, ModelBuilder, dims, read_graph_inputs};

    fn scan(model: &ModelProto) -> (Result<Vec<String>, OnnxError>, usize) {
        let bytes = model.encode_to_vec();
        let len = bytes.len() as u64;
        let mut reader = WireReader::new(Cursor::new(bytes), len, Path::new("m.onnx"));
        let result = scan_locations(&mut reader).map(|set| set.into_iter().collect());
        (result, reader.largest_payload())
    }

    fn small_model(seed: u64) -> ModelProto {
        let mut g = GraphBuilder::new("g", seed);
        let x = g.input("x", DataType::Float, dims!["N", 16]);
        let y = g.linear(&x, 16, 8);
        g.output("y", &y, DataType::Float, dims!["N", 8]);
        ModelBuilder::new(g).build()
    }

    fn external(name: &str, location: &str) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            data_type: Some(DataType::Float as i32),
            external_data: vec![StringStringEntryProto {
                key: Some("location".into()),
                value: Some(location.into()),
            }],
            data_location: Some(DataLocation::External as i32),
            ..TensorProto::default()
        }
    }

    #[test]
    fn a_model_written_with_external_data_lists_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        let model = small_model(1);
        let written = write_with_external_data(&model, &path, "model.onnx.data").unwrap();

        assert_eq!(
            read_external_data_locations(&path).unwrap(),
            vec!["model.onnx.data".to_string()]
        );
        // Linear's weight [16, 8] and bias [8], all floats, moved out of the model.
        assert_eq!(written, (16 * 8 + 8) * 4);
        let data = fs::metadata(dir.path().join("model.onnx.data")).unwrap();
        assert_eq!(data.len(), written);
        let inline = model.encode_to_vec().len() as u64;
        assert!(fs::metadata(&path).unwrap().len() < inline - written + 256);
        // The model is still a model: its inputs read as before.
        assert_eq!(read_graph_inputs(&path).unwrap().len(), 1);
    }

    #[test]
    fn a_model_with_inline_weights_has_no_external_data_and_buffers_no_weights() {
        let mut g = GraphBuilder::new("g", 3);
        let x = g.input("x", DataType::Float, dims!["N", 512]);
        let y = g.linear(&x, 512, 512); // 1 MiB of inline weights
        g.output("y", &y, DataType::Float, dims!["N", 512]);
        let (locations, largest) = scan(&ModelBuilder::new(g).build());
        assert_eq!(locations.unwrap(), Vec::<String>::new());
        assert!(
            largest < 64,
            "only tensor names were buffered, not data: {largest} bytes"
        );
    }

    #[test]
    fn finds_tensors_in_nodes_subgraphs_sparse_initializers_and_functions() {
        let mut model = small_model(2);
        let constant = AttributeProto {
            name: Some("value".into()),
            t: Some(external("c", "constant.bin")),
            ..AttributeProto::default()
        };
        let branch = GraphProto {
            initializer: vec![external("b", "sub/branch.bin")],
            node: vec![NodeProto {
                attribute: vec![AttributeProto {
                    tensors: vec![external("d", "deep.bin")],
                    ..AttributeProto::default()
                }],
                ..NodeProto::default()
            }],
            ..GraphProto::default()
        };
        let graph = model.graph.as_mut().unwrap();
        graph.node.push(NodeProto {
            attribute: vec![
                constant,
                AttributeProto {
                    g: Some(branch),
                    ..AttributeProto::default()
                },
            ],
            ..NodeProto::default()
        });
        graph.sparse_initializer.push(SparseTensorProto {
            values: Some(external("s", "sparse.bin")),
            indices: Some(external("i", "shared.bin")),
            ..SparseTensorProto::default()
        });
        graph.initializer.push(external("w", "shared.bin"));
        model.functions.push(FunctionProto {
            node: vec![NodeProto {
                attribute: vec![AttributeProto {
                    t: Some(external("f", "function.bin")),
                    ..AttributeProto::default()
                }],
                ..NodeProto::default()
            }],
            ..FunctionProto::default()
        });

        let (locations, _) = scan(&model);
        assert_eq!(
            locations.unwrap(),
            [
                "constant.bin",
                "deep.bin",
                "function.bin",
                "shared.bin",
                "sparse.bin",
                "sub/branch.bin"
            ]
        );
    }

    #[test]
    fn entries_of_a_tensor_stored_inline_are_ignored() {
        let mut model = small_model(4);
        let mut stale = external("w", "stale.bin");
        stale.data_location = Some(DataLocation::Default as i32);
        model.graph.as_mut().unwrap().initializer.push(stale);
        assert_eq!(scan(&model).0.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_external_tensor_without_a_location_is_an_error() {
        let mut model = small_model(5);
        let mut tensor = external("w", "");
        tensor.external_data.clear();
        model.graph.as_mut().unwrap().initializer.push(tensor);
        let error = scan(&model).0.unwrap_err();
        assert!(error.to_string().contains("names no `location`"), "{error}");
    }

    #[test]
    fn a_truncated_model_is_an_error_not_a_short_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        write_with_external_data(&small_model(6), &path, "w.bin").unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
        let error = read_external_data_locations(&path).unwrap_err();
        assert!(matches!(error, OnnxError::Truncated { .. }), "{error}");
    }
}
