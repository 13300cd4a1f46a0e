//! Reading a whole `ModelProto` from a file field by field, and writing one tensor at a time.
//!
//! `prost::Message::decode` wants the whole file in memory and then copies every tensor out of
//! it: two copies of the weights. Here the file is streamed instead: messages that carry tensors
//! (graph, node, attribute, tensor) are walked field by field, a tensor's `raw_data` is read
//! straight into its final buffer, and every other field is decoded with prost's own merge (so
//! the result equals a normal decode). [`Payloads::Skip`] leaves tensor data out entirely, for
//! callers that only need the graph's structure.
//!
//! The writer mirrors this: the model and graph without their initializers are encoded as usual
//! (small), then each initializer is written with its `raw_data` copied from its own buffer, so
//! no second full encoding of the weights is ever built.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto,
};
use crate::{OnnxError, wire};

/// Whether tensor data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payloads {
    /// Read everything.
    Load,
    /// Leave the data fields of every tensor empty (names, types, dims and external references
    /// are kept).
    Skip,
}

/// `TensorProto` fields holding element data: float, int32, string, int64, raw, double, uint64.
const TENSOR_DATA_FIELDS: [u32; 7] = [4, 5, 6, 7, 9, 10, 11];
const TENSOR_RAW_DATA: u32 = 9;
/// Subgraphs nest; deeper than this is a corrupt or hostile file.
const MAX_DEPTH: usize = 64;

/// Reads the model at `path`; see the module documentation for what is and is not buffered.
pub(crate) fn read_model(path: &Path, payloads: Payloads) -> Result<ModelProto, OnnxError> {
    let (file, len) = wire::open_sized(path)?;
    let mut stream = Stream {
        source: BufReader::with_capacity(64 * 1024, file),
        position: 0,
        len,
        path: path.to_owned(),
        payloads,
    };
    let mut model = ModelProto::default();
    while stream.position < len {
        let (number, wire_type, offset) = stream.tag(len, "ModelProto")?;
        if number == 7 && wire_type == WireType::LengthDelimited {
            let end = stream.length(len, "ModelProto.graph")?;
            stream.graph(model.graph.get_or_insert_default(), end, 0)?;
        } else {
            stream.merge(&mut model, number, wire_type, offset, len, "ModelProto")?;
        }
    }
    Ok(model)
}

struct Stream {
    source: BufReader<File>,
    position: u64,
    len: u64,
    path: PathBuf,
    payloads: Payloads,
}

impl Stream {
    fn graph(&mut self, graph: &mut GraphProto, end: u64, depth: usize) -> Result<(), OnnxError> {
        if depth > MAX_DEPTH {
            let reason = format!("subgraphs nest deeper than {MAX_DEPTH} levels");
            return Err(self.malformed(self.position, "GraphProto", reason));
        }
        while self.position < end {
            let (number, wire_type, offset) = self.tag(end, "GraphProto")?;
            match (number, wire_type) {
                (1, WireType::LengthDelimited) => {
                    let node_end = self.length(end, "GraphProto.node")?;
                    graph.node.push(self.node(node_end, depth)?);
                }
                (5, WireType::LengthDelimited) => {
                    let tensor_end = self.length(end, "GraphProto.initializer")?;
                    graph.initializer.push(self.tensor(tensor_end)?);
                }
                (15, WireType::LengthDelimited) => {
                    let sparse_end = self.length(end, "GraphProto.sparse_initializer")?;
                    graph.sparse_initializer.push(self.sparse(sparse_end)?);
                }
                _ => self.merge(graph, number, wire_type, offset, end, "GraphProto")?,
            }
        }
        Ok(())
    }

    fn node(&mut self, end: u64, depth: usize) -> Result<NodeProto, OnnxError> {
        let mut node = NodeProto::default();
        while self.position < end {
            let (number, wire_type, offset) = self.tag(end, "NodeProto")?;
            if number == 5 && wire_type == WireType::LengthDelimited {
                let attribute_end = self.length(end, "NodeProto.attribute")?;
                node.attribute.push(self.attribute(attribute_end, depth)?);
            } else {
                self.merge(&mut node, number, wire_type, offset, end, "NodeProto")?;
            }
        }
        Ok(node)
    }

    fn attribute(&mut self, end: u64, depth: usize) -> Result<AttributeProto, OnnxError> {
        let mut attribute = AttributeProto::default();
        while self.position < end {
            let (number, wire_type, offset) = self.tag(end, "AttributeProto")?;
            if wire_type != WireType::LengthDelimited || ![5, 6, 10, 11, 22, 23].contains(&number) {
                self.merge(
                    &mut attribute,
                    number,
                    wire_type,
                    offset,
                    end,
                    "AttributeProto",
                )?;
                continue;
            }
            let field_end = self.length(end, "AttributeProto")?;
            match number {
                5 => attribute.t = Some(self.tensor(field_end)?),
                10 => attribute.tensors.push(self.tensor(field_end)?),
                22 => attribute.sparse_tensor = Some(self.sparse(field_end)?),
                23 => attribute.sparse_tensors.push(self.sparse(field_end)?),
                6 => self.graph(attribute.g.get_or_insert_default(), field_end, depth + 1)?,
                _ => {
                    let mut graph = GraphProto::default();
                    self.graph(&mut graph, field_end, depth + 1)?;
                    attribute.graphs.push(graph);
                }
            }
        }
        Ok(attribute)
    }

    fn sparse(&mut self, end: u64) -> Result<SparseTensorProto, OnnxError> {
        let mut sparse = SparseTensorProto::default();
        while self.position < end {
            let (number, wire_type, offset) = self.tag(end, "SparseTensorProto")?;
            match (number, wire_type) {
                (1 | 2, WireType::LengthDelimited) => {
                    let tensor_end = self.length(end, "SparseTensorProto tensor")?;
                    let tensor = self.tensor(tensor_end)?;
                    *if number == 1 {
                        &mut sparse.values
                    } else {
                        &mut sparse.indices
                    } = Some(tensor);
                }
                _ => self.merge(
                    &mut sparse,
                    number,
                    wire_type,
                    offset,
                    end,
                    "SparseTensorProto",
                )?,
            }
        }
        Ok(sparse)
    }

    fn tensor(&mut self, end: u64) -> Result<TensorProto, OnnxError> {
        let mut tensor = TensorProto::default();
        while self.position < end {
            let (number, wire_type, offset) = self.tag(end, "TensorProto")?;
            let is_data = TENSOR_DATA_FIELDS.contains(&number);
            if is_data && self.payloads == Payloads::Skip {
                self.skip(wire_type, offset, end, "TensorProto data")?;
            } else if number == TENSOR_RAW_DATA && wire_type == WireType::LengthDelimited {
                // The one big field: read straight into the tensor's own buffer.
                let data_end = self.length(end, "TensorProto.raw_data")?;
                tensor.raw_data = Some(self.read_bytes(data_end)?);
            } else {
                self.merge(&mut tensor, number, wire_type, offset, end, "TensorProto")?;
            }
        }
        Ok(tensor)
    }

    /// Decodes one field of `message` with prost (re-encoding its key in front of the value).
    fn merge(
        &mut self,
        message: &mut impl Message,
        number: u32,
        wire_type: WireType,
        offset: u64,
        end: u64,
        what: &str,
    ) -> Result<(), OnnxError> {
        let mut field = Vec::new();
        encode_key(number, wire_type, &mut field);
        match wire_type {
            WireType::Varint => encode_varint(self.varint(end, what)?, &mut field),
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let size = if wire_type == WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                let value_end = self.position + size;
                if value_end > end {
                    return Err(self.cut_off(self.position, what, size, end));
                }
                field.extend(self.read_bytes(value_end)?);
            }
            WireType::LengthDelimited => {
                let value_end = self.length(end, what)?;
                encode_varint(value_end - self.position, &mut field);
                field.extend(self.read_bytes(value_end)?);
            }
            WireType::StartGroup | WireType::EndGroup => {
                let reason =
                    format!("field {number} uses a protobuf group, which onnx.proto never does");
                return Err(self.malformed(offset, what, reason));
            }
        }
        message
            .merge(field.as_slice())
            .map_err(|error| self.malformed(offset, what, error.to_string()))
    }

    fn skip(
        &mut self,
        wire_type: WireType,
        offset: u64,
        end: u64,
        what: &str,
    ) -> Result<(), OnnxError> {
        let target = match wire_type {
            WireType::Varint => return self.varint(end, what).map(drop),
            WireType::SixtyFourBit => self.position + 8,
            WireType::ThirtyTwoBit => self.position + 4,
            WireType::LengthDelimited => self.length(end, what)?,
            WireType::StartGroup | WireType::EndGroup => {
                return Err(self.malformed(offset, what, "protobuf group".into()));
            }
        };
        if target > end {
            return Err(self.cut_off(self.position, what, target - self.position, end));
        }
        let delta = (target - self.position) as i64;
        let position = self.position;
        self.source
            .seek_relative(delta)
            .map_err(|source| OnnxError::Read {
                path: self.path.clone(),
                offset: position,
                source,
            })?;
        self.position = target;
        Ok(())
    }

    fn tag(&mut self, end: u64, what: &str) -> Result<(u32, WireType, u64), OnnxError> {
        let offset = self.position;
        let key = self.varint(end, what)?;
        let wire_type = WireType::try_from(key & 7)
            .map_err(|_| self.malformed(offset, what, format!("invalid wire type {}", key & 7)))?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(self.malformed(offset, what, format!("invalid field number {number}")));
        }
        Ok((number as u32, wire_type, offset))
    }

    /// Reads a length prefix and returns where the payload ends, checked against the file and
    /// the enclosing message.
    fn length(&mut self, end: u64, what: &str) -> Result<u64, OnnxError> {
        let offset = self.position;
        let len = self.varint(end, what)?;
        let payload_end = self.position.saturating_add(len);
        if payload_end > self.len {
            let needed = payload_end - offset;
            return Err(wire::truncated(&self.path, self.len, offset, what, needed));
        }
        if payload_end > end {
            let reason = "runs past the end of the enclosing message".to_owned();
            return Err(self.malformed(offset, what, reason));
        }
        Ok(payload_end)
    }

    fn varint(&mut self, end: u64, what: &str) -> Result<u64, OnnxError> {
        let offset = self.position;
        let mut value = 0u64;
        for index in 0..10 {
            if self.position >= end {
                return Err(self.cut_off(offset, what, index + 1, end));
            }
            let mut byte = [0u8];
            self.source
                .read_exact(&mut byte)
                .map_err(|source| OnnxError::Read {
                    path: self.path.clone(),
                    offset,
                    source,
                })?;
            self.position += 1;
            value |= u64::from(byte[0] & 0x7f) << (7 * index);
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed(offset, what, "varint longer than 10 bytes".into()))
    }

    fn read_bytes(&mut self, payload_end: u64) -> Result<Vec<u8>, OnnxError> {
        let offset = self.position;
        let mut buffer = vec![0; (payload_end - offset) as usize];
        self.source
            .read_exact(&mut buffer)
            .map_err(|source| OnnxError::Read {
                path: self.path.clone(),
                offset,
                source,
            })?;
        self.position = payload_end;
        Ok(buffer)
    }

    fn cut_off(&self, offset: u64, what: &str, needed: u64, end: u64) -> OnnxError {
        wire::cut_off(&self.path, self.len, offset, what, needed, end)
    }

    fn malformed(&self, offset: u64, what: &str, reason: String) -> OnnxError {
        wire::malformed(&self.path, offset, what, reason)
    }
}

mod write;

pub(crate) use write::{temporary_path, write_model};

#[cfg(test)]
mod tests;
