//! Writing a model one tensor at a time (see the module documentation of `model_stream`).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::mem;
use std::path::{Path, PathBuf};

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::TENSOR_RAW_DATA;
use crate::OnnxError;
use crate::proto::{GraphProto, ModelProto};

/// Writes `model` to `path` (through a temporary file renamed into place). The graph comes last
/// and its initializers last within it, each written from its own buffer; protobuf readers accept
/// fields in any order, and the same model always gives the same bytes.
pub(crate) fn write_model(model: &mut ModelProto, path: &Path) -> Result<(), OnnxError> {
    let write_error = |source| OnnxError::Write {
        path: path.to_owned(),
        source,
    };
    let temporary = temporary_path(path);
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        let graph = model.graph.take();
        let head = model.encode_to_vec();
        model.graph = graph;
        out.write_all(&head)?;
        if let Some(graph) = model.graph.as_mut() {
            write_graph(graph, &mut out)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&temporary, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&temporary);
        write_error(source)
    })
}

/// `.NAME.PID.tmp` beside `path`.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_graph(graph: &mut GraphProto, out: &mut impl Write) -> std::io::Result<()> {
    let total = graph.encoded_len() as u64;
    let initializers = mem::take(&mut graph.initializer);
    let head = graph.encode_to_vec();
    graph.initializer = initializers;
    let mut prefix = Vec::new();
    encode_key(7, WireType::LengthDelimited, &mut prefix);
    encode_varint(total, &mut prefix);
    out.write_all(&prefix)?;
    out.write_all(&head)?;
    for tensor in &mut graph.initializer {
        let raw = tensor.raw_data.take();
        let rest = tensor.encode_to_vec();
        let raw_len = raw.as_ref().map_or(0, |raw| {
            1 + encoded_len_varint(raw.len() as u64) + raw.len()
        });
        let mut prefix = Vec::new();
        encode_key(5, WireType::LengthDelimited, &mut prefix);
        encode_varint((rest.len() + raw_len) as u64, &mut prefix);
        out.write_all(&prefix)?;
        out.write_all(&rest)?;
        if let Some(raw) = &raw {
            let mut key = Vec::new();
            encode_key(TENSOR_RAW_DATA, WireType::LengthDelimited, &mut key);
            encode_varint(raw.len() as u64, &mut key);
            out.write_all(&key)?;
            out.write_all(raw)?;
        }
        tensor.raw_data = raw;
    }
    Ok(())
}
