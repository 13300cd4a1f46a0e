//! Errors of reading and writing ONNX files.

use std::io;
use std::path::PathBuf;

/// Why an ONNX file could not be read or written. Read errors carry the byte offset in the file.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be opened or its size read.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Reading failed part-way.
    #[error("cannot read {} at byte {offset}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is not an ONNX model at all (another kind of file, or not protobuf).
    #[error("{}: not an ONNX model: {reason} (at byte {offset})", path.display())]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// Where the evidence was found.
        offset: u64,
        /// What gave it away.
        reason: String,
    },
    /// The file ends in the middle of a value.
    #[error(
        "{} is truncated: {what} at byte {offset} needs {needed} bytes, but the file ends {available} bytes later",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the cut-off value starts.
        offset: u64,
        /// The field being read, e.g. `GraphProto.initializer`.
        what: String,
        /// Bytes the value needs from `offset` on.
        needed: u64,
        /// Bytes the file has from `offset` on.
        available: u64,
    },
    /// A field of the ONNX schema is encoded with a wire type that schema does not allow.
    #[error(
        "{}: {what} at byte {offset} is encoded as {found}, but onnx.proto declares it {expected}",
        path.display()
    )]
    WireType {
        /// The file.
        path: PathBuf,
        /// Where the field's tag starts.
        offset: u64,
        /// The field, e.g. `GraphProto.input`.
        what: String,
        /// The wire type found.
        found: &'static str,
        /// The wire type onnx.proto implies.
        expected: &'static str,
    },
    /// The bytes are not valid protobuf, or not a valid message of the expected type.
    #[error("{}: malformed {what} at byte {offset}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where the bad value starts.
        offset: u64,
        /// The field being read.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A small entry (a graph input, a tensor name) is implausibly large; it is not buffered.
    #[error(
        "{}: {what} at byte {offset} is {len} bytes, over the {limit}-byte limit for one entry",
        path.display()
    )]
    EntryTooLarge {
        /// The file.
        path: PathBuf,
        /// Where the entry's payload starts.
        offset: u64,
        /// The field being read.
        what: String,
        /// The entry's encoded size.
        len: u64,
        /// The largest entry the reader buffers.
        limit: u64,
    },
    /// The file is an ONNX model, but one no TensorRT build should be handed (see
    /// [`crate::sanity`]): a dimension past TensorRT's limits, external data outside the model's
    /// directory or past the end of its file.
    #[error("{}: the model cannot be built: {reason}", path.display())]
    Unbuildable {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the input, output or tensor.
        reason: String,
    },
    /// Writing a model failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

impl OnnxError {
    /// Restates a decoding error as "not an ONNX model", for errors found before anything in the
    /// file looked like ONNX: a text file or an image fails that way, and saying "truncated"
    /// about it would mislead.
    pub(crate) fn into_not_onnx(self) -> Self {
        let (path, offset, reason) = match self {
            Self::Truncated {
                path,
                offset,
                what,
                needed,
                available,
            } => (
                path,
                offset,
                format!("{what} claims {needed} bytes, the file has {available} left"),
            ),
            Self::WireType {
                path,
                offset,
                what,
                found,
                expected,
            } => (
                path,
                offset,
                format!("{what} is encoded as {found}, not {expected}"),
            ),
            Self::Malformed {
                path,
                offset,
                what,
                reason,
            } => (path, offset, format!("{what}: {reason}")),
            Self::EntryTooLarge {
                path,
                offset,
                what,
                len,
                ..
            } => (path, offset, format!("{what} would be {len} bytes")),
            other => return other,
        };
        Self::NotOnnx {
            path,
            offset,
            reason,
        }
    }
}
