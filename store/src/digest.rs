//! Identities of stored things: [`BlobDigest`] for CAS blobs and [`ActionKey`] for action results.

use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// A blob's identity: blake3 of its bytes plus its length.
///
/// The size is part of the identity so that a truncated or padded object is caught by a cheap
/// size comparison before any byte is hashed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct BlobDigest {
    /// blake3 hash of the blob's bytes.
    pub hash: [u8; 32],
    /// Length of the blob in bytes.
    pub size: u64,
}

impl BlobDigest {
    /// Builds a digest from a blake3 hash and the number of bytes that were hashed.
    pub fn new(hash: blake3::Hash, size: u64) -> Self {
        Self {
            hash: *hash.as_bytes(),
            size,
        }
    }

    /// Digest of an in-memory byte slice (for small data and tests; blobs are hashed while streaming).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::new(blake3::hash(bytes), bytes.len() as u64)
    }

    /// The hash as 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        encode_hex(&self.hash)
    }

    /// Parses a 64-character hex hash (either case) and pairs it with `size`.
    pub fn parse(hex: &str, size: u64) -> Result<Self, StoreError> {
        let hash = decode_hex(hex)
            .map_err(|why| StoreError::InvalidDigest(format!("blob hash {hex:?}: {why}")))?;
        Ok(Self { hash, size })
    }
}

impl fmt::Display for BlobDigest {
    /// Formats as `blake3:<hex>/<size>`, the form users pass to `trtfarm fetch`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}/{}", self.hex(), self.size)
    }
}

impl FromStr for BlobDigest {
    type Err = StoreError;

    /// Parses the [`Display`](fmt::Display) form `blake3:<hex>/<size>`.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let invalid = |why: &str| {
            StoreError::InvalidDigest(format!(
                "{s:?}: {why}; expected the form blake3:<64 hex>/<size in bytes>"
            ))
        };
        let rest = s
            .strip_prefix("blake3:")
            .ok_or_else(|| invalid("missing the `blake3:` prefix"))?;
        let (hex, size) = rest
            .split_once('/')
            .ok_or_else(|| invalid("missing `/<size>`"))?;
        let size = size
            .parse::<u64>()
            .map_err(|_| invalid("the size is not a whole number of bytes"))?;
        Self::parse(hex, size)
    }
}

/// An action key: blake3 of the daemon's canonical request encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ActionKey(pub [u8; 32]);

impl ActionKey {
    /// The key as 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// Parses a 64-character hex key (either case).
    pub fn parse(hex: &str) -> Result<Self, StoreError> {
        decode_hex(hex)
            .map(Self)
            .map_err(|why| StoreError::InvalidDigest(format!("action key {hex:?}: {why}")))
    }
}

impl fmt::Display for ActionKey {
    /// Formats as the 64-character hex key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

fn encode_hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

fn decode_hex(hex: &str) -> Result<[u8; 32], String> {
    if hex.len() != 64 {
        return Err(format!("expected 64 hex characters, got {}", hex.len()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!("{:?} at position {} is not hex", c as char, 2 * i)),
        };
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_display_matches_contract() {
        let digest = BlobDigest::of_bytes(b"hello");
        let hex = digest.hex();
        assert_eq!(hex, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(BlobDigest::parse(&hex, 5).unwrap(), digest);
        assert_eq!(BlobDigest::parse(&hex.to_uppercase(), 5).unwrap(), digest);
        assert_eq!(digest.to_string(), format!("blake3:{hex}/5"));
        assert_eq!(digest.to_string().parse::<BlobDigest>().unwrap(), digest);
    }

    #[test]
    fn bad_hex_is_rejected_with_the_offending_input() {
        let err = BlobDigest::parse("abc", 1).unwrap_err().to_string();
        assert!(err.contains("\"abc\"") && err.contains("64"), "{err}");
        let bad = "g".repeat(64);
        let err = ActionKey::parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("not hex") && err.contains("action key"),
            "{err}"
        );
        let err = "sha256:00/1".parse::<BlobDigest>().unwrap_err().to_string();
        assert!(err.contains("blake3:"), "{err}");
    }

    #[test]
    fn action_key_round_trips() {
        let key = ActionKey(*blake3::hash(b"request").as_bytes());
        assert_eq!(ActionKey::parse(&key.hex()).unwrap(), key);
        assert_eq!(key.to_string(), key.hex());
    }
}
