//! [`StoreError`]: every failure of the store, worded so a person knows which blob, file or URL
//! to look at.

use crate::digest::BlobDigest;

/// Errors from the content store and action cache.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The blob or action result does not exist in the store.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, and in which store (e.g. `blob blake3:…/12 in s3://bucket/cache`).
        what: String,
    },

    /// Bytes offered for upload do not hash to the digest the caller promised; nothing was stored.
    #[error("{what} hashes to {actual}, not the expected {expected}; nothing was stored")]
    DigestMismatch {
        /// The digest the caller said the bytes have.
        expected: BlobDigest,
        /// The digest the bytes actually have.
        actual: BlobDigest,
        /// Where the bytes came from (a local file path).
        what: String,
    },

    /// A stored blob does not match its digest; it was not served and has been quarantined.
    #[error(
        "stored blob {digest} in {store} is corrupt ({actual}); it was not served, and it is \
         being moved to quarantine (see the log) so that it can be uploaded again"
    )]
    Corrupt {
        /// The digest the blob is stored under.
        digest: BlobDigest,
        /// What the stored bytes turned out to be (their digest, or how they differ).
        actual: String,
        /// The store's display URL.
        store: String,
    },

    /// A hex string or `blake3:<hex>/<size>` text is not a valid digest or action key.
    #[error("invalid digest: {0}")]
    InvalidDigest(String),

    /// The store URL's scheme is not one this build supports.
    #[error("unsupported store URL {0}")]
    UnsupportedUrl(String),

    /// The store URL has a supported scheme but cannot be used as written.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong with it and how to write it instead.
        reason: String,
    },

    /// A backend option is not recognised by the backend the URL selects, or its value is invalid.
    #[error("store option {key:?} for {url}: {reason}")]
    InvalidOption {
        /// The store's display URL.
        url: String,
        /// The option key as given.
        key: String,
        /// Why it was refused.
        reason: String,
    },

    /// A path given to the admin API is not a valid object path.
    #[error("invalid object path {path:?} in {store}: {reason}")]
    InvalidPath {
        /// The path as given (relative to the store root).
        path: String,
        /// The store's display URL.
        store: String,
        /// Why it is not valid.
        reason: String,
    },

    /// A read offset lies beyond the end of the blob.
    #[error("offset {offset} is past the end of blob {digest} ({} bytes)", digest.size)]
    OffsetOutOfRange {
        /// The blob that was read.
        digest: BlobDigest,
        /// The requested offset.
        offset: u64,
    },

    /// An action result is larger than the store is willing to load into memory.
    #[error("{what} is {size} bytes, more than the {limit}-byte limit for action results")]
    TooLarge {
        /// Which object, in which store.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// Local file-system I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the local path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The object-store backend failed (network, permissions, misconfiguration).
    #[error("{context}: {source}")]
    Backend {
        /// What was being done, naming the object and the store URL.
        context: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// Builds an [`StoreError::Io`] with `context`.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds a [`StoreError::Backend`] with `context`.
    pub(crate) fn backend(context: impl Into<String>, source: object_store::Error) -> Self {
        Self::Backend {
            context: context.into(),
            source,
        }
    }

    /// True for [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether the same call may succeed later: the backend failed in a way a restart or a
    /// network blip explains (a refused connection, a server error, an upload the restarted
    /// server no longer knows). Refusals that would repeat (permissions, bad configuration,
    /// digest mismatches, corruption) are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                source: object_store::Error::Generic { .. }
                    | object_store::Error::NotFound { .. }
                    | object_store::Error::JoinError { .. },
                ..
            }
        )
    }
}
