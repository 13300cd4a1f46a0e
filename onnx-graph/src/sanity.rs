//! A cheap check that a file is a model TensorRT can be handed, run before TensorRT sees it.
//!
//! TensorRT's ONNX parser takes some broken files quietly: a text file or random bytes that
//! happen to be valid protobuf parse as an empty model, and the build then fails with "Network
//! must have at least one output"; a declared dimension of 2^40 is read as 0; external data is
//! read from wherever its `location` points. [`check_model`] says what is wrong instead, in the
//! terms of the file, by streaming it twice (graph inputs and outputs; external tensors) the way
//! [`crate::read_graph_inputs`] does: weights are skipped by seeking, never loaded. Everything
//! else (operators, cycles, types) is the parser's to judge; its messages are specific enough.

use std::collections::HashMap;
use std::path::{Component, Path};

use crate::OnnxError;
use crate::external_data::{ExternalTensor, read_external_tensors};
use crate::graph_inputs::scan_file;
use crate::proto::tensor_shape_proto::dimension;
use crate::proto::{ValueInfoProto, type_proto};

/// Largest rank TensorRT takes: `Dims::MAX_DIMS`.
pub const MAX_RANK: usize = 8;

/// Largest dimension the ONNX parser keeps: it reads dimensions into 32-bit integers, so a
/// larger one silently wraps (2^40 reads as 0).
pub const MAX_DIMENSION: i64 = i32::MAX as i64;

/// Checks the model at `path` before a build:
///
/// - it is an ONNX model: it has an `ir_version` and a graph ([`OnnxError::NotOnnx`] otherwise,
///   as for a text file, an image or bytes that only happen to be protobuf),
/// - its graph declares at least one output (also `NotOnnx`: nothing can be built from it),
/// - no graph input or output declares a rank over [`MAX_RANK`] or a dimension over
///   [`MAX_DIMENSION`] ([`OnnxError::Unbuildable`]),
/// - subgraphs nest at most 64 deep ([`OnnxError::Malformed`]),
/// - every external tensor names a plain relative `location` (no `..`, not absolute) of a
///   regular file beside the model, and its `offset` and `length` lie within that file
///   (`Unbuildable`). Symbolic links are followed; whether they may leave the model's directory
///   is the caller's policy (the client allows links that stay inside the manifest's
///   directory; a build worker's inputs are regular files).
pub fn check_model(path: &Path) -> Result<(), OnnxError> {
    let scan = scan_file(path)?;
    if scan.outputs.is_empty() {
        return Err(OnnxError::NotOnnx {
            path: path.to_owned(),
            offset: 0,
            reason: "its graph declares no outputs (GraphProto field 12), so there is nothing \
                     to build"
                .into(),
        });
    }
    let unbuildable = |reason: String| OnnxError::Unbuildable {
        path: path.to_owned(),
        reason,
    };
    for (what, info) in scan
        .input_infos()
        .map(|info| ("input", info))
        .chain(scan.outputs.iter().map(|info| ("output", info)))
    {
        check_shape(what, info).map_err(unbuildable)?;
    }
    let model_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file_sizes: HashMap<String, u64> = HashMap::new();
    for tensor in read_external_tensors(path)? {
        let size = match file_sizes.get(&tensor.location) {
            Some(size) => *size,
            None => {
                let size = data_file_size(model_dir, &tensor).map_err(unbuildable)?;
                file_sizes.insert(tensor.location.clone(), size);
                size
            }
        };
        check_range(&tensor, size).map_err(unbuildable)?;
    }
    Ok(())
}

/// The declared rank and dimensions of a graph input or output, against TensorRT's limits.
fn check_shape(what: &str, info: &ValueInfoProto) -> Result<(), String> {
    let shape = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.shape.as_ref(),
        Some(type_proto::Value::SparseTensorType(t)) => t.shape.as_ref(),
        _ => None,
    };
    let Some(shape) = shape else {
        return Ok(());
    };
    let name = info.name();
    if shape.dim.len() > MAX_RANK {
        return Err(format!(
            "graph {what} `{name}` has rank {}, over TensorRT's limit of {MAX_RANK}",
            shape.dim.len()
        ));
    }
    for (axis, dim) in shape.dim.iter().enumerate() {
        if let Some(dimension::Value::DimValue(size)) = dim.value
            && size > MAX_DIMENSION
        {
            return Err(format!(
                "graph {what} `{name}` declares dimension {axis} as {size}, over TensorRT's \
                 limit of {MAX_DIMENSION}"
            ));
        }
    }
    Ok(())
}

/// The size of the regular file `tensor` keeps its data in, which must be named by a plain
/// relative path below `model_dir`.
fn data_file_size(model_dir: &Path, tensor: &ExternalTensor) -> Result<u64, String> {
    let location = &tensor.location;
    let named = format!(
        "tensor `{}` keeps its data in `{}`",
        tensor.name,
        location.escape_debug()
    );
    let plain = !location.contains('\\')
        && !location.contains('\0')
        && Path::new(location)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(format!(
            "{named}, which is not a relative path inside the model's directory"
        ));
    }
    match std::fs::metadata(model_dir.join(location)) {
        Ok(meta) if meta.is_file() => Ok(meta.len()),
        Ok(_) => Err(format!("{named}, which is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{named}, which is not beside the model"))
        }
        Err(e) => Err(format!("{named}, which cannot be read: {e}")),
    }
}

/// The tensor's `offset` and `length` entries, within a data file of `size` bytes.
fn check_range(tensor: &ExternalTensor, size: u64) -> Result<(), String> {
    let number = |key: &str, value: &Option<String>| -> Result<Option<u64>, String> {
        value
            .as_deref()
            .map(|text| {
                text.trim().parse::<u64>().map_err(|_| {
                    format!(
                        "tensor `{}` has external-data {key} `{}`, which is not a byte count",
                        tensor.name,
                        text.escape_debug()
                    )
                })
            })
            .transpose()
    };
    let offset = number("offset", &tensor.offset)?.unwrap_or(0);
    let length = number("length", &tensor.length)?;
    let end = match length {
        Some(length) => offset.checked_add(length),
        None => Some(offset),
    };
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(format!(
            "tensor `{}` reads bytes {offset}..{} of `{}`, which has {size} bytes",
            tensor.name,
            length.map_or("the end".to_string(), |length| offset
                .saturating_add(length)
                .to_string()),
            tensor.location
        )),
    }
}

#[cfg(test)]
mod tests;
