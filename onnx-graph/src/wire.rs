//! A forward-only reader of the protobuf wire format over a seekable byte source.
//!
//! It decodes tags, varints and lengths, and skips length-delimited payloads by seeking, so a
//! multi-gigabyte tensor costs a seek, not a buffer. The only allocations are the payloads a
//! caller asks for explicitly ([`WireReader::read_payload`]), each capped at [`MAX_ENTRY_BYTES`];
//! the largest one is recorded so tests can check that memory does not grow with the file.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::OnnxError;

/// Capacity of the read buffer in front of the file.
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The largest single payload (a graph input, a tensor name) the reader will buffer. Real ones
/// are a few hundred bytes; this only stops a corrupt length from allocating gigabytes.
pub(crate) const MAX_ENTRY_BYTES: u64 = 16 * 1024 * 1024;

/// The wire type in the low three bits of a protobuf tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    /// 0: a base-128 varint.
    Varint,
    /// 1: eight little-endian bytes.
    Fixed64,
    /// 2: a varint length, then that many bytes.
    Len,
    /// 3: start of a (deprecated) group.
    StartGroup,
    /// 4: end of a (deprecated) group.
    EndGroup,
    /// 5: four little-endian bytes.
    Fixed32,
}

impl WireType {
    /// How protobuf's documentation names this wire type, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Varint => "a varint",
            Self::Fixed64 => "a 64-bit fixed value",
            Self::Len => "length-delimited",
            Self::StartGroup => "a group start",
            Self::EndGroup => "a group end",
            Self::Fixed32 => "a 32-bit fixed value",
        }
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A decoded field tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldTag {
    /// The field number from the schema.
    pub number: u32,
    /// How the value that follows is encoded.
    pub wire_type: WireType,
    /// Byte offset of the tag in the file.
    pub offset: u64,
}

/// Reads protobuf wire format from `R`, tracking the absolute offset for error messages.
pub(crate) struct WireReader<R> {
    source: BufReader<R>,
    path: PathBuf,
    position: u64,
    len: u64,
    largest_payload: usize,
}

impl WireReader<File> {
    /// A reader over the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, OnnxError> {
        let (file, len) = open_sized(path)?;
        Ok(Self::new(file, len, path))
    }
}

impl<R: Read + Seek> WireReader<R> {
    /// Wraps `source`, which holds `len` bytes; `path` only names it in errors.
    pub(crate) fn new(source: R, len: u64, path: &Path) -> Self {
        Self {
            source: BufReader::with_capacity(READ_BUFFER_BYTES, source),
            path: path.to_owned(),
            position: 0,
            len,
            largest_payload: 0,
        }
    }

    /// The current offset from the start of the source.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// The total length of the source.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The path errors name.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The largest payload buffered so far, in bytes.
    #[cfg_attr(not(test), allow(dead_code))] // read by tests to check memory stays flat
    pub(crate) fn largest_payload(&self) -> usize {
        self.largest_payload
    }

    /// Reads a field tag. `end` bounds the enclosing message; the caller checks
    /// `position() < end` before calling.
    pub(crate) fn read_tag(&mut self, end: u64, message: &str) -> Result<FieldTag, OnnxError> {
        let offset = self.position;
        let tag = self.read_varint(end, message)?;
        let wire_type = match tag & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            other => {
                return Err(self.malformed(offset, message, format!("invalid wire type {other}")));
            }
        };
        let number = tag >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(self.malformed(offset, message, format!("invalid field number {number}")));
        }
        Ok(FieldTag {
            number: number as u32,
            wire_type,
            offset,
        })
    }

    /// Reads a base-128 varint that must end before `end`.
    pub(crate) fn read_varint(&mut self, end: u64, what: &str) -> Result<u64, OnnxError> {
        let offset = self.position;
        let mut value = 0u64;
        for index in 0..10 {
            if self.position >= end {
                return Err(self.cut_off(offset, what, index + 1, end));
            }
            let byte = self.read_byte()?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed(offset, what, "varint longer than 10 bytes".into()))
    }

    /// Reads the length of a length-delimited field and returns the offset where its payload
    /// ends, which must be within the file and within `end`.
    pub(crate) fn read_len(&mut self, end: u64, what: &str) -> Result<u64, OnnxError> {
        let offset = self.position;
        let len = self.read_varint(end, what)?;
        let start = self.position;
        let payload_end = start.saturating_add(len);
        if payload_end > self.len {
            let needed = payload_end - offset;
            return Err(truncated(&self.path, self.len, offset, what, needed));
        }
        if payload_end > end {
            return Err(self.malformed(
                offset,
                what,
                format!(
                    "its {len} bytes run {} past the end of the enclosing message",
                    payload_end - end
                ),
            ));
        }
        Ok(payload_end)
    }

    /// Skips the value of `tag`, which must end before `end`. Length-delimited payloads are
    /// skipped by seeking, never read.
    pub(crate) fn skip(&mut self, tag: FieldTag, end: u64, what: &str) -> Result<(), OnnxError> {
        let target = match tag.wire_type {
            WireType::Varint => return self.read_varint(end, what).map(drop),
            WireType::Fixed64 => self.position + 8,
            WireType::Fixed32 => self.position + 4,
            WireType::Len => self.read_len(end, what)?,
            WireType::StartGroup | WireType::EndGroup => {
                return Err(self.malformed(
                    tag.offset,
                    what,
                    format!(
                        "field {} uses a protobuf group, which onnx.proto never does",
                        tag.number
                    ),
                ));
            }
        };
        if target > end {
            let needed = target - self.position;
            return Err(self.cut_off(self.position, what, needed, end));
        }
        self.seek_to(target)
    }

    /// Moves forward to `target`, keeping the read buffer when the target is inside it.
    pub(crate) fn seek_to(&mut self, target: u64) -> Result<(), OnnxError> {
        let delta = target as i64 - self.position as i64;
        let offset = self.position;
        self.source
            .seek_relative(delta)
            .map_err(|source| self.read_error(offset, source))?;
        self.position = target;
        Ok(())
    }

    /// Reads the bytes from the current position up to `payload_end` into a new buffer, refusing
    /// payloads over [`MAX_ENTRY_BYTES`].
    pub(crate) fn read_payload(
        &mut self,
        payload_end: u64,
        what: &str,
    ) -> Result<Vec<u8>, OnnxError> {
        let offset = self.position;
        let len = payload_end - offset;
        if len > MAX_ENTRY_BYTES {
            return Err(OnnxError::EntryTooLarge {
                path: self.path.clone(),
                offset,
                what: what.to_owned(),
                len,
                limit: MAX_ENTRY_BYTES,
            });
        }
        let mut buffer = vec![0; len as usize];
        self.source
            .read_exact(&mut buffer)
            .map_err(|source| self.read_error(offset, source))?;
        self.position = payload_end;
        self.largest_payload = self.largest_payload.max(buffer.len());
        Ok(buffer)
    }

    /// A "malformed" error at `offset`.
    pub(crate) fn malformed(&self, offset: u64, what: &str, reason: String) -> OnnxError {
        malformed(&self.path, offset, what, reason)
    }

    /// A "wrong wire type" error for `tag`.
    pub(crate) fn wrong_wire_type(
        &self,
        tag: FieldTag,
        what: &str,
        expected: WireType,
    ) -> OnnxError {
        OnnxError::WireType {
            path: self.path.clone(),
            offset: tag.offset,
            what: what.to_owned(),
            found: tag.wire_type.describe(),
            expected: expected.describe(),
        }
    }

    fn read_byte(&mut self) -> Result<u8, OnnxError> {
        let mut byte = [0u8];
        let offset = self.position;
        self.source
            .read_exact(&mut byte)
            .map_err(|source| self.read_error(offset, source))?;
        self.position += 1;
        Ok(byte[0])
    }

    /// A value at `offset` needing `needed` bytes ran into `end`; see [`cut_off`].
    fn cut_off(&self, offset: u64, what: &str, needed: u64, end: u64) -> OnnxError {
        cut_off(&self.path, self.len, offset, what, needed, end)
    }

    fn read_error(&self, offset: u64, source: io::Error) -> OnnxError {
        OnnxError::Read {
            path: self.path.clone(),
            offset,
            source,
        }
    }
}

/// Opens the model at `path` for streaming, with its length in bytes.
pub(crate) fn open_sized(path: &Path) -> Result<(File, u64), OnnxError> {
    let open_error = |source| OnnxError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let len = file.metadata().map_err(open_error)?.len();
    Ok((file, len))
}

/// A value at `offset` needing `needed` bytes ran into `end`: the end of the file, `len` bytes
/// long (truncated), or of the enclosing message (malformed). Shared with `model_stream`, whose
/// reader decodes the same wire format.
pub(crate) fn cut_off(
    path: &Path,
    len: u64,
    offset: u64,
    what: &str,
    needed: u64,
    end: u64,
) -> OnnxError {
    if end >= len {
        truncated(path, len, offset, what, needed)
    } else {
        malformed(
            path,
            offset,
            what,
            "runs past the end of the enclosing message".into(),
        )
    }
}

/// A "truncated" error: the value at `offset` needs `needed` bytes of a file `len` bytes long.
pub(crate) fn truncated(path: &Path, len: u64, offset: u64, what: &str, needed: u64) -> OnnxError {
    OnnxError::Truncated {
        path: path.to_owned(),
        offset,
        what: what.to_owned(),
        needed,
        available: len - offset,
    }
}

/// A "malformed" error at `offset` in `path`.
pub(crate) fn malformed(path: &Path, offset: u64, what: &str, reason: String) -> OnnxError {
    OnnxError::Malformed {
        path: path.to_owned(),
        offset,
        what: what.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn reader(bytes: &[u8]) -> WireReader<Cursor<Vec<u8>>> {
        WireReader::new(
            Cursor::new(bytes.to_vec()),
            bytes.len() as u64,
            Path::new("test.onnx"),
        )
    }

    #[test]
    fn reads_multi_byte_varints() {
        // 300 = 0b1_0010_1100 → 0xac 0x02
        let mut r = reader(&[0xac, 0x02, 0x01]);
        assert_eq!(r.read_varint(3, "v").unwrap(), 300);
        assert_eq!(r.position(), 2);
        assert_eq!(r.read_varint(3, "v").unwrap(), 1);
    }

    #[test]
    fn varint_cut_by_end_of_file_is_truncation() {
        let mut r = reader(&[0xac]);
        let err = r.read_varint(1, "ModelProto.ir_version").unwrap_err();
        assert!(
            matches!(err, OnnxError::Truncated { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn overlong_varint_is_malformed() {
        let mut r = reader(&[0xff; 11]);
        let err = r.read_varint(11, "v").unwrap_err();
        assert!(err.to_string().contains("longer than 10 bytes"), "{err}");
    }

    #[test]
    fn decodes_tags() {
        // field 7, length-delimited: (7 << 3) | 2 = 58
        let mut r = reader(&[58]);
        let tag = r.read_tag(1, "ModelProto").unwrap();
        assert_eq!(
            (tag.number, tag.wire_type, tag.offset),
            (7, WireType::Len, 0)
        );
    }

    #[test]
    fn rejects_invalid_wire_types_and_field_zero() {
        let err = reader(&[0x0e]).read_tag(1, "m").unwrap_err();
        assert!(err.to_string().contains("invalid wire type 6"), "{err}");
        let err = reader(&[0x02]).read_tag(1, "m").unwrap_err();
        assert!(err.to_string().contains("invalid field number 0"), "{err}");
    }

    #[test]
    fn length_past_end_of_file_is_truncation_with_sizes() {
        // field 7 LEN, length 100, but only 3 payload bytes follow
        let mut r = reader(&[58, 100, 1, 2, 3]);
        let tag = r.read_tag(5, "m").unwrap();
        let err = r.skip(tag, 5, "ModelProto.graph").unwrap_err();
        match err {
            OnnxError::Truncated {
                offset,
                needed,
                available,
                ..
            } => {
                assert_eq!((offset, needed, available), (1, 101, 4));
            }
            other => panic!("expected truncation, got {other}"),
        }
    }

    #[test]
    fn length_past_enclosing_message_is_malformed() {
        let mut r = reader(&[4, 1, 2, 3, 4, 5, 6, 7]);
        let err = r.read_len(3, "GraphProto.input").unwrap_err();
        assert!(matches!(err, OnnxError::Malformed { .. }), "{err}");
    }

    #[test]
    fn skips_every_wire_type_and_refuses_groups() {
        // varint 150, fixed64, fixed32, len 2
        let bytes = [
            8, 0x96, 0x01, 9, 1, 2, 3, 4, 5, 6, 7, 8, 13, 1, 2, 3, 4, 18, 2, 9, 9,
        ];
        let end = bytes.len() as u64;
        let mut r = reader(&bytes);
        while r.position() < end {
            let tag = r.read_tag(end, "m").unwrap();
            r.skip(tag, end, "m").unwrap();
        }
        assert_eq!(r.position(), end);
        assert_eq!(r.largest_payload(), 0, "skipping must not buffer payloads");

        let mut r = reader(&[11, 12]);
        let tag = r.read_tag(2, "m").unwrap();
        let err = r.skip(tag, 2, "m").unwrap_err();
        assert!(err.to_string().contains("group"), "{err}");
    }

    #[test]
    fn payloads_are_capped_and_tracked() {
        let mut r = reader(&[18, 3, b'a', b'b', b'c']);
        let tag = r.read_tag(5, "m").unwrap();
        assert_eq!(tag.wire_type, WireType::Len);
        let end = r.read_len(5, "name").unwrap();
        assert_eq!(r.read_payload(end, "name").unwrap(), b"abc");
        assert_eq!(r.largest_payload(), 3);

        let mut r = reader(&[]);
        r.len = MAX_ENTRY_BYTES + 1;
        let err = r
            .read_payload(MAX_ENTRY_BYTES + 1, "GraphProto.input")
            .unwrap_err();
        assert!(matches!(err, OnnxError::EntryTooLarge { .. }), "{err}");
    }
}
