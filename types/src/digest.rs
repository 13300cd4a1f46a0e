//! Identities of content: [`BlobDigest`] (a stored blob), [`Blake3Digest`] (a file whose size
//! is not part of its identity: a pinned model, a TensorRT library) and [`ActionKey`] (an action
//! result). All three use the one hex rule of [`crate::hex`]: 64 lower-case digits.

use std::fmt;
use std::str::FromStr;

use crate::hex;
use crate::text_serde::text_serde;

/// The prefix every digest's text form starts with.
const PREFIX: &str = "blake3:";

/// A blob's identity: blake3 of its bytes plus its length. Text form `blake3:<hex>/<size>`.
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

    /// Digest of an in-memory byte slice (for small data and tests; blobs are hashed while
    /// streaming).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::new(blake3::hash(bytes), bytes.len() as u64)
    }

    /// The hash as 64 lower-case hex digits (the wire's `Digest.blake3`).
    pub fn hex(&self) -> String {
        hex::encode(&self.hash)
    }

    /// Pairs a 64-digit lower-case hex hash (the wire's form) with `size`.
    pub fn parse(hex: &str, size: u64) -> Result<Self, DigestError> {
        let hash = hex::decode(hex).map_err(|problem| DigestError {
            kind: DigestKind::BlobHash,
            text: hex.to_string(),
            problem,
        })?;
        Ok(Self { hash, size })
    }
}

impl fmt::Display for BlobDigest {
    /// `blake3:<hex>/<size>`, the form people pass to `trtfarm fetch` and locks record.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/{}", self.hex(), self.size)
    }
}

impl FromStr for BlobDigest {
    type Err = DigestError;

    /// Parses the [`Display`](fmt::Display) form `blake3:<hex>/<size>`.
    fn from_str(text: &str) -> Result<Self, DigestError> {
        let error = |problem| DigestError {
            kind: DigestKind::Blob,
            text: text.to_string(),
            problem,
        };
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| error(DigestProblem::MissingPrefix))?;
        let (hex, size) = rest
            .split_once('/')
            .ok_or_else(|| error(DigestProblem::MissingSize))?;
        // `u64::from_str` takes a leading `+`; one text form means digits only.
        let size = (!size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()))
            .then(|| size.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| error(DigestProblem::BadSize))?;
        let hash = hex::decode(hex).map_err(error)?;
        Ok(Self { hash, size })
    }
}

text_serde!(
    BlobDigest,
    "a blob digest, blake3:<64 lower-case hex digits>/<size in bytes>"
);

/// A blake3 content hash without a size: a pinned model, a TensorRT library. Text form
/// `blake3:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Blake3Digest(pub [u8; 32]);

impl Blake3Digest {
    /// The hash as 64 lower-case hex digits (the wire's form, without `blake3:`).
    pub fn hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Parses the bare 64-digit lower-case hex hash (the wire's form).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        hex::decode(hex).map(Self).map_err(|problem| DigestError {
            kind: DigestKind::BlobHash,
            text: hex.to_string(),
            problem,
        })
    }
}

impl From<blake3::Hash> for Blake3Digest {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for Blake3Digest {
    /// `blake3:<hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl FromStr for Blake3Digest {
    type Err = DigestError;

    /// Parses the [`Display`](fmt::Display) form `blake3:<hex>`.
    fn from_str(text: &str) -> Result<Self, DigestError> {
        let error = |problem| DigestError {
            kind: DigestKind::Content,
            text: text.to_string(),
            problem,
        };
        let hex = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| error(DigestProblem::MissingPrefix))?;
        hex::decode(hex).map(Self).map_err(error)
    }
}

text_serde!(
    Blake3Digest,
    "a content digest, blake3:<64 lower-case hex digits>"
);

/// An action key: blake3 of the daemon's canonical request encoding. Text form: 64 lower-case
/// hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ActionKey(pub [u8; 32]);

impl ActionKey {
    /// The key as 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Parses a 64-digit lower-case hex key.
    pub fn parse(hex: &str) -> Result<Self, DigestError> {
        hex::decode(hex).map(Self).map_err(|problem| DigestError {
            kind: DigestKind::ActionKey,
            text: hex.to_string(),
            problem,
        })
    }
}

impl fmt::Display for ActionKey {
    /// The 64 hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl FromStr for ActionKey {
    type Err = DigestError;

    /// Same as [`ActionKey::parse`].
    fn from_str(text: &str) -> Result<Self, DigestError> {
        Self::parse(text)
    }
}

text_serde!(ActionKey, "an action key, 64 lower-case hex digits");

/// Which text form a [`DigestError`] was parsing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DigestKind {
    /// [`BlobDigest`]'s `blake3:<hex>/<size>`.
    Blob,
    /// A bare hash, as the wire carries it beside a separate size.
    BlobHash,
    /// [`Blake3Digest`]'s `blake3:<hex>`.
    Content,
    /// [`ActionKey`]'s bare hex.
    ActionKey,
}

impl DigestKind {
    /// The form this kind is written in, for "expected …".
    pub fn form(self) -> &'static str {
        match self {
            DigestKind::Blob => "blake3:<64 lower-case hex digits>/<size in bytes>",
            DigestKind::BlobHash | DigestKind::ActionKey => "64 lower-case hex digits",
            DigestKind::Content => "blake3:<64 lower-case hex digits>",
        }
    }
}

impl fmt::Display for DigestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigestKind::Blob => "a blob digest",
            DigestKind::BlobHash => "a blake3 hash",
            DigestKind::Content => "a content digest",
            DigestKind::ActionKey => "an action key",
        })
    }
}

/// What is wrong with a digest's text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DigestProblem {
    /// It does not start with `blake3:`.
    MissingPrefix,
    /// A blob digest without `/<size>`.
    MissingSize,
    /// The size is not a whole number of bytes.
    BadSize,
    /// The hash does not have 64 characters (the number it has).
    WrongLength(usize),
    /// An upper-case hex digit at this character position.
    UpperCase {
        /// Position in the hash, from 0.
        position: usize,
    },
    /// A character that is not a hex digit.
    NotHex {
        /// The character.
        character: char,
        /// Position in the hash, from 0.
        position: usize,
    },
}

impl fmt::Display for DigestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestProblem::MissingPrefix => f.write_str("it does not start with `blake3:`"),
            DigestProblem::MissingSize => f.write_str("it has no `/<size>`"),
            DigestProblem::BadSize => f.write_str("the size is not a whole number of bytes"),
            DigestProblem::WrongLength(n) => write!(f, "the hash has {n} characters, not 64"),
            DigestProblem::UpperCase { position } => write!(
                f,
                "the hash has an upper-case digit at position {position}; digests are written \
                 in lower case"
            ),
            DigestProblem::NotHex {
                character,
                position,
            } => write!(f, "{character:?} at position {position} is not a hex digit"),
        }
    }
}

/// A digest or action key that could not be parsed: what it was meant to be, the text, and why.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("`{text}` is not {kind}: {problem}; expected {}", kind.form())]
pub struct DigestError {
    /// What the text was meant to be.
    pub kind: DigestKind,
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: DigestProblem,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn blob_digests_round_trip_through_their_text_and_the_wire_form() {
        let digest = BlobDigest::of_bytes(b"hello");
        assert_eq!(digest.hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(digest.to_string(), format!("blake3:{}/5", digest.hex()));
        assert_eq!(digest.to_string().parse::<BlobDigest>(), Ok(digest));
        assert_eq!(BlobDigest::parse(&digest.hex(), 5), Ok(digest));
        let text = format!("blake3:{HEX}/1234");
        assert_eq!(text.parse::<BlobDigest>().unwrap().to_string(), text);
    }

    #[test]
    fn upper_case_hex_is_refused_everywhere_with_a_message_that_says_so() {
        let upper = HEX.to_uppercase();
        let error = format!("blake3:{upper}/1")
            .parse::<BlobDigest>()
            .unwrap_err();
        assert_eq!(error.problem, DigestProblem::UpperCase { position: 0 });
        assert_eq!(
            error.to_string(),
            format!(
                "`blake3:{upper}/1` is not a blob digest: the hash has an upper-case digit at \
                 position 0; digests are written in lower case; expected \
                 blake3:<64 lower-case hex digits>/<size in bytes>"
            )
        );
        assert!(BlobDigest::parse(&upper, 1).is_err());
        assert!(ActionKey::parse(&upper).is_err());
        assert!(format!("blake3:{upper}").parse::<Blake3Digest>().is_err());
        assert!(Blake3Digest::from_hex(&upper).is_err());
    }

    #[test]
    fn malformed_blob_digests_name_the_problem_and_the_form() {
        let cases = [
            (format!("sha256:{HEX}/1"), DigestProblem::MissingPrefix),
            (format!("blake3:{HEX}"), DigestProblem::MissingSize),
            (format!("blake3:{HEX}/-1"), DigestProblem::BadSize),
            (format!("blake3:{HEX}/+1"), DigestProblem::BadSize),
            (format!("blake3:{HEX}/"), DigestProblem::BadSize),
            (format!("blake3:{HEX}/12x"), DigestProblem::BadSize),
            (
                format!("blake3:{}/1", &HEX[..63]),
                DigestProblem::WrongLength(63),
            ),
            (
                format!("blake3:{}g/1", &HEX[..63]),
                DigestProblem::NotHex {
                    character: 'g',
                    position: 63,
                },
            ),
        ];
        for (text, problem) in cases {
            let error = text.parse::<BlobDigest>().unwrap_err();
            assert_eq!(error.problem, problem, "{text}");
            assert_eq!(error.kind, DigestKind::Blob);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("`{text}` is not a blob digest: ")),
                "{message}"
            );
            assert!(
                message.ends_with("expected blake3:<64 lower-case hex digits>/<size in bytes>")
            );
        }
        assert_eq!(
            "sha256:00/1".parse::<BlobDigest>().unwrap_err().to_string(),
            "`sha256:00/1` is not a blob digest: it does not start with `blake3:`; expected \
             blake3:<64 lower-case hex digits>/<size in bytes>"
        );
    }

    #[test]
    fn content_digests_round_trip_and_convert_from_blake3() {
        let digest = Blake3Digest::from(blake3::hash(b"library"));
        assert_eq!(digest.to_string(), format!("blake3:{}", digest.hex()));
        assert_eq!(digest.to_string().parse::<Blake3Digest>(), Ok(digest));
        assert_eq!(Blake3Digest::from_hex(&digest.hex()), Ok(digest));
        let error = HEX.parse::<Blake3Digest>().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "`{HEX}` is not a content digest: it does not start with `blake3:`; expected \
                 blake3:<64 lower-case hex digits>"
            )
        );
    }

    #[test]
    fn action_keys_round_trip_and_name_themselves_in_errors() {
        let key = ActionKey(*blake3::hash(b"request").as_bytes());
        assert_eq!(ActionKey::parse(&key.hex()), Ok(key));
        assert_eq!(key.to_string().parse::<ActionKey>(), Ok(key));
        assert_eq!(
            ActionKey::parse("abc").unwrap_err().to_string(),
            "`abc` is not an action key: the hash has 3 characters, not 64; expected 64 \
             lower-case hex digits"
        );
    }

    #[test]
    fn serde_uses_the_text_forms() {
        let blob = BlobDigest::of_bytes(b"x");
        let key = ActionKey(blob.hash);
        let content = Blake3Digest(blob.hash);
        let quoted = |value: toml::Value| value.to_string();
        assert_eq!(
            quoted(toml::Value::try_from(blob).unwrap()),
            format!("\"{blob}\"")
        );
        assert_eq!(
            quoted(toml::Value::try_from(key).unwrap()),
            format!("\"{key}\"")
        );
        assert_eq!(
            quoted(toml::Value::try_from(content).unwrap()),
            format!("\"{content}\"")
        );

        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Entry {
            engine: BlobDigest,
        }
        let read: Entry = toml::from_str(&format!("engine = \"{blob}\"")).unwrap();
        assert_eq!(read.engine, blob);
        let error = toml::from_str::<Entry>("engine = \"blake3:00/1\"").unwrap_err();
        assert!(
            error.to_string().contains("the hash has 2 characters"),
            "{error}"
        );
    }
}
