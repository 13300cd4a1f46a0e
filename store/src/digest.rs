//! Identities of stored things: [`BlobDigest`] for CAS blobs and [`ActionKey`] for action
//! results. Both live in `trtfarm-types`, with the one parser and hex rule every crate uses;
//! here they only learn to become a [`StoreError`].

pub use trtfarm_types::{ActionKey, BlobDigest, DigestError};

use crate::error::StoreError;

impl From<DigestError> for StoreError {
    fn from(error: DigestError) -> Self {
        StoreError::InvalidDigest(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_digest_becomes_an_invalid_digest_store_error_naming_the_input() {
        let error = StoreError::from(BlobDigest::parse("abc", 1).unwrap_err());
        assert!(matches!(error, StoreError::InvalidDigest(_)));
        assert_eq!(
            error.to_string(),
            "invalid digest: `abc` is not a blake3 hash: the hash has 3 characters, not 64; \
             expected 64 lower-case hex digits"
        );
    }

    #[test]
    fn upper_case_hex_is_now_refused_by_the_store_too() {
        // The store used to accept either case; the shared rule is lower case only.
        let digest = BlobDigest::of_bytes(b"hello");
        assert!(BlobDigest::parse(&digest.hex().to_uppercase(), 5).is_err());
        assert!(ActionKey::parse(&digest.hex().to_uppercase()).is_err());
    }
}
