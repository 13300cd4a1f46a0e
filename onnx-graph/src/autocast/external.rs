//! External-data weights in [`super::autocast_file`]: converted while streamed from their files,
//! each byte range read once, into the output model (inline) or a data file beside it.
//!
//! During the rewrite, an external float32 tensor to convert only changes its `data_type` and is
//! remembered by its byte range ([`DeferredStore`]). [`materialize`] then visits every external
//! tensor of the model, reads each distinct byte range once in chunks, and produces what its
//! tensors need from it: the bytes as they are, converted bytes, or both (a weight with float32
//! and converted readers).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::mem;
use std::path::{Component, Path, PathBuf};

use prost::Message;

use super::numeric::{ClampStats, convert_le_bytes};
use super::tensors::{
    InlineStore, TensorStore, clamp_warning, element_count, external_tensors, inline_convertible,
    is_external,
};
use super::{AutocastOptions, AutocastTarget, ClampWarning};
use crate::OnnxError;
use crate::model_stream::temporary_path;
use crate::proto::tensor_proto::DataLocation;
use crate::proto::{ModelProto, StringStringEntryProto, TensorProto};

/// Bytes read from a data file at a time (a multiple of 4, so float32s never straddle reads).
const CHUNK_BYTES: usize = 1 << 20;

/// A byte range of an external-data file, as a tensor names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ExternalKey {
    location: String,
    offset: u64,
    length: Option<u64>,
}

impl ExternalKey {
    fn of(tensor: &TensorProto) -> Option<Self> {
        let entry = |key: &str| {
            let entry = tensor.external_data.iter().rev().find(|e| e.key() == key)?;
            Some(entry.value())
        };
        let offset = match entry("offset") {
            Some(value) => value.parse().ok()?,
            None => 0,
        };
        let length = match entry("length") {
            Some(value) => Some(value.parse().ok()?),
            None => None,
        };
        let location = entry("location").filter(|l| !l.is_empty())?.to_owned();
        Some(Self {
            location,
            offset,
            length,
        })
    }
}

/// Converts inline tensors at once and external ones later, in [`materialize`].
#[derive(Debug, Default)]
pub(crate) struct DeferredStore {
    converted: HashSet<ExternalKey>,
}

impl TensorStore for DeferredStore {
    fn can_convert(&self, tensor: &TensorProto) -> bool {
        inline_convertible(tensor)
            || (is_external(tensor)
                && ExternalKey::of(tensor).is_some()
                && element_count(tensor).is_some())
    }

    fn convert(
        &mut self,
        tensor: &mut TensorProto,
        target: AutocastTarget,
        label: &str,
    ) -> Option<ClampWarning> {
        let Some(key) = ExternalKey::of(tensor).filter(|_| is_external(tensor)) else {
            return InlineStore.convert(tensor, target, label);
        };
        tensor.data_type = Some(target.data_type() as i32);
        self.converted.insert(key);
        None
    }
}

/// One thing produced from a byte range: its bytes as they are, or converted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Product {
    key: ExternalKey,
    convert: bool,
}

/// A product with what producing it needs.
#[derive(Debug)]
struct Planned {
    product: Product,
    /// The first tensor that uses it, for messages.
    label: String,
    source: PathBuf,
    /// Bytes read from `source`.
    length: u64,
    /// Bytes produced.
    size: u64,
}

/// Brings every external tensor of `model` into the output: inline when the whole output stays
/// under the inline limit, otherwise into `<output name>.data`, whose path is returned.
pub(crate) fn materialize(
    model: &mut ModelProto,
    input_dir: &Path,
    output: &Path,
    store: &DeferredStore,
    options: &AutocastOptions,
    clamped: &mut Vec<ClampWarning>,
) -> Result<Option<PathBuf>, OnnxError> {
    let encoded_len = model.encoded_len() as u64;
    let tensors = external_tensors(model);
    if tensors.is_empty() {
        return Ok(None);
    }
    let (planned, assignment) = plan_products(&tensors, input_dir, store, options.target)?;
    let sizes: Vec<u64> = planned.iter().map(|p| p.size).collect();

    if encoded_len + sizes.iter().sum::<u64>() < options.inline_limit {
        let buffers = sizes.iter().map(|&s| Vec::with_capacity(s as usize));
        let mut sink = Sink::Inline(buffers.collect());
        produce(&planned, options.target, &mut sink, clamped)?;
        let Sink::Inline(mut buffers) = sink else {
            unreachable!("the sink stays inline")
        };
        // The last tensor of a product takes its buffer; only true sharers get a copy.
        let mut remaining = vec![0usize; buffers.len()];
        assignment.iter().for_each(|&slot| remaining[slot] += 1);
        for (tensor, slot) in tensors.into_iter().zip(assignment) {
            remaining[slot] -= 1;
            let buffer = &mut buffers[slot];
            let data = if remaining[slot] == 0 {
                mem::take(buffer)
            } else {
                buffer.clone()
            };
            tensor.raw_data = Some(data);
            tensor.external_data.clear();
            tensor.data_location = None;
        }
        return Ok(None);
    }

    let name = output.file_name().map(|n| n.to_string_lossy().into_owned());
    let location = format!("{}.data", name.unwrap_or_default());
    let data_path = output.with_file_name(&location);
    let temporary = temporary_path(&data_path);
    let starts = offsets(&sizes);
    let written = (|| {
        let file = File::create(&temporary).map_err(|e| write_error(&data_path, e))?;
        let mut sink = Sink::File {
            file,
            path: data_path.clone(),
            next: starts.clone(),
        };
        produce(&planned, options.target, &mut sink, clamped)?;
        if let Sink::File { file, .. } = sink {
            file.sync_all().map_err(|e| write_error(&data_path, e))?;
        }
        fs::rename(&temporary, &data_path).map_err(|e| write_error(&data_path, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    for (tensor, slot) in tensors.into_iter().zip(assignment) {
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: Some(key.to_owned()),
            value: Some(value),
        };
        tensor.external_data = vec![
            entry("location", location.clone()),
            entry("offset", starts[slot].to_string()),
            entry("length", sizes[slot].to_string()),
        ];
        tensor.data_location = Some(DataLocation::External as i32);
    }
    Ok(Some(data_path))
}

/// The distinct products the tensors need, in first-use order, each checked against its file
/// before anything is written; and each tensor's product.
fn plan_products(
    tensors: &[&mut TensorProto],
    input_dir: &Path,
    store: &DeferredStore,
    target: AutocastTarget,
) -> Result<(Vec<Planned>, Vec<usize>), OnnxError> {
    let mut planned: Vec<Planned> = Vec::new();
    let mut index: HashMap<Product, usize> = HashMap::new();
    let mut assignment = Vec::new();
    for tensor in tensors {
        let name = tensor.name();
        let Some(key) = ExternalKey::of(tensor) else {
            let reason = "names no external-data `location`";
            return Err(bad_location(input_dir, name, reason));
        };
        let converted = tensor.data_type == Some(target.data_type() as i32);
        let product = Product {
            convert: converted && store.converted.contains(&key),
            key,
        };
        if let Some(&slot) = index.get(&product) {
            assignment.push(slot);
            continue;
        }
        let source = resolve(input_dir, &product.key.location, name)?;
        let file_len = fs::metadata(&source)
            .map_err(|e| open_error(&source, e))?
            .len();
        let offset = product.key.offset;
        let available = file_len.saturating_sub(offset);
        let length = product.key.length.unwrap_or(available);
        let what = format!("external data of tensor {name:?}");
        if length > available {
            return Err(OnnxError::Truncated {
                path: source,
                offset,
                what,
                needed: length,
                available,
            });
        }
        let elements = element_count(tensor);
        if product.convert && Some(length) != elements.map(|n| n * 4) {
            let reason = format!("{length} bytes, but its dims hold {elements:?} float32 values");
            return Err(OnnxError::Malformed {
                path: source,
                offset,
                what,
                reason,
            });
        }
        let size = if product.convert { length / 2 } else { length };
        index.insert(product.clone(), planned.len());
        assignment.push(planned.len());
        planned.push(Planned {
            product,
            label: name.to_owned(),
            source,
            length,
            size,
        });
    }
    Ok((planned, assignment))
}

/// Reads each byte range once and writes every product made from it as the chunks go by.
fn produce(
    planned: &[Planned],
    target: AutocastTarget,
    sink: &mut Sink,
    clamped: &mut Vec<ClampWarning>,
) -> Result<(), OnnxError> {
    let mut ranges: Vec<(&ExternalKey, Vec<usize>)> = Vec::new();
    let mut range_of: HashMap<&ExternalKey, usize> = HashMap::new();
    for (slot, item) in planned.iter().enumerate() {
        let next = ranges.len();
        let range = *range_of.entry(&item.product.key).or_insert(next);
        if range == next {
            ranges.push((&item.product.key, Vec::new()));
        }
        ranges[range].1.push(slot);
    }
    for (key, slots) in ranges {
        let first = &planned[slots[0]];
        let mut stats = vec![ClampStats::default(); slots.len()];
        // Keep the two failures apart: reading the source, writing the output.
        let mut write_failure = None;
        let result = copy_range(&first.source, key.offset, first.length, |chunk| {
            for (&slot, stats) in slots.iter().zip(&mut stats) {
                let written = if planned[slot].product.convert {
                    let mut converted = Vec::with_capacity(chunk.len() / 2);
                    convert_le_bytes(chunk, target, stats, &mut converted);
                    sink.write(slot, &converted)
                } else {
                    sink.write(slot, chunk)
                };
                if let Err(error) = written {
                    write_failure = Some(error);
                    return Err(io::Error::other("writing the output failed"));
                }
            }
            Ok(())
        });
        if let (Some(source), Sink::File { path, .. }) = (write_failure, &*sink) {
            return Err(write_error(path, source));
        }
        result.map_err(|source| OnnxError::Read {
            path: first.source.clone(),
            offset: key.offset,
            source,
        })?;
        for (&slot, stats) in slots.iter().zip(stats) {
            clamped.extend(clamp_warning(&planned[slot].label, stats));
        }
    }
    Ok(())
}

enum Sink {
    Inline(Vec<Vec<u8>>),
    /// The data file (and its final path, for errors), and where each product's next chunk
    /// goes in it.
    File {
        file: File,
        path: PathBuf,
        next: Vec<u64>,
    },
}

impl Sink {
    fn write(&mut self, slot: usize, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Inline(buffers) => {
                buffers[slot].extend_from_slice(bytes);
                Ok(())
            }
            Self::File { file, next, .. } => {
                file.seek(SeekFrom::Start(next[slot]))?;
                file.write_all(bytes)?;
                next[slot] += bytes.len() as u64;
                Ok(())
            }
        }
    }
}

/// Start offsets of back-to-back products of `sizes`.
fn offsets(sizes: &[u64]) -> Vec<u64> {
    sizes
        .iter()
        .scan(0, |next, &size| {
            let start = *next;
            *next += size;
            Some(start)
        })
        .collect()
}

/// Streams `length` bytes of `path` from `offset` through `each` in chunks.
fn copy_range(
    path: &Path,
    offset: u64,
    length: u64,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = vec![0; CHUNK_BYTES.min(length as usize)];
    let mut left = length;
    while left > 0 {
        let chunk = &mut buffer[..CHUNK_BYTES.min(left as usize)];
        file.read_exact(chunk)?;
        each(chunk)?;
        left -= chunk.len() as u64;
    }
    Ok(())
}

/// The data file `location` names, which must stay inside the model's directory: a model from
/// a user must not make the worker read (and publish) any other file.
fn resolve(input_dir: &Path, location: &str, tensor: &str) -> Result<PathBuf, OnnxError> {
    let relative = Path::new(location);
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside || relative.as_os_str().is_empty() {
        let reason = format!(
            "names {location:?}, which is not a relative path inside the model's directory"
        );
        return Err(bad_location(input_dir, tensor, &reason));
    }
    Ok(input_dir.join(relative))
}

fn bad_location(input_dir: &Path, tensor: &str, reason: &str) -> OnnxError {
    let message = format!("external data of tensor {tensor:?} {reason}");
    open_error(
        input_dir,
        io::Error::new(io::ErrorKind::InvalidInput, message),
    )
}

fn open_error(path: &Path, source: io::Error) -> OnnxError {
    OnnxError::Open {
        path: path.to_owned(),
        source,
    }
}

fn write_error(path: &Path, source: io::Error) -> OnnxError {
    OnnxError::Write {
        path: path.to_owned(),
        source,
    }
}
