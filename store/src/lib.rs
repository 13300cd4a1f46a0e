//! Content-addressed blob store (CAS) and action cache (AC) over `object_store`, verified while
//! streaming.
//!
//! One trait, [`ContentStore`], over every backend; [`open`] picks the backend from a URL
//! (`file://`, `memory://`, `s3://`, `az://`, `gs://`) and builds it once. Behaviour is added by
//! layers that wrap a `ContentStore` and are one themselves: [`RetryStore`] retries writes
//! through an outage, [`TieredStore`] serves reads from a local copy of a remote store. The same
//! store's [`StoreAdmin`] (list, delete) is what `gc` collects with. Inside the store root:
//!
//! ```text
//! cas/blake3/<2 hex>/<64 hex>                 immutable blobs
//! ac/v1/<64 hex action key>                   action results, written last, first writer wins
//! quarantine/blake3/<64 hex>.<unix millis>    blobs that failed verification on read
//! ```
//!
//! Guarantees:
//! - a blob is published only after its bytes hashed to the digest it is stored under
//!   (multipart completion is the publish step, and it is atomic on the local file system and S3);
//! - reads re-hash the whole blob and withhold the final chunk until the digest matches, so a
//!   consumer never receives all bytes of a corrupt blob, and the corrupt blob is quarantined;
//! - no operation holds a whole blob in memory: files are streamed in bounded chunks.
//!
//! All operations must run inside a tokio runtime (file I/O goes through `spawn_blocking`).
//!
//! With the `test-servers` feature, `test_servers` starts real S3 (s3s-fs) and Azure Blob
//! (Azurite) servers on loopback for tests; the store's own tests run on every backend.

#![warn(missing_docs)]

mod action_cache;
mod admin;
mod backend;
mod cas;
mod digest;
mod error;
#[cfg(any(test, feature = "test-servers"))]
pub mod faults;
pub mod gc;
mod layer;
mod layout;
mod open;
mod quarantine;
mod retry;
#[cfg(feature = "test-servers")]
pub mod test_servers;
mod tiered;
mod upload;
mod verify;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use admin::{Area, StoreAdmin, StoredObject};
pub use digest::{ActionKey, BlobDigest};
pub use error::StoreError;
pub use layout::local_blob_file;
pub use open::{SUPPORTED_URLS, open};
pub use retry::{Retry, RetryObserver, RetryPolicy, RetryStore};
pub use tiered::TieredStore;

/// Largest chunk a [`BlobStream`] yields, in bytes (1 MiB); bigger backend chunks are split.
pub const MAX_READ_CHUNK: usize = 1 << 20;

/// A stream of a blob's bytes; the final chunk is only yielded once the whole blob verified.
pub type BlobStream = futures::stream::BoxStream<'static, Result<Bytes, StoreError>>;

/// What [`ContentStore::put_file`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The blob's digest (blake3 + size).
    pub digest: BlobDigest,
    /// SHA-256 of the same bytes, for consumers that speak SHA-256 (OCI, HTTP `Digest` headers).
    pub sha256: [u8; 32],
    /// False when the blob was already present and nothing was uploaded.
    pub stored: bool,
}

/// What [`ContentStore::put_action_result`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// This call wrote the action result.
    Created,
    /// A result for this key was already present; it was left as it was.
    AlreadyExisted,
}

/// The blob store and action cache the daemon talks to; one implementation per backend URL.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Backend kind: `"file"`, `"s3"`, `"azure"`, `"gcs"` or `"memory"`.
    fn kind(&self) -> &str;

    /// The store URL with credentials, query and fragment removed (safe to log).
    fn display_url(&self) -> &str;

    /// The maintenance API (list, delete) over the same objects; a layer passes on its inner
    /// store's (for a tiered store, the remote's: the shared store is the one to collect).
    fn admin(&self) -> Arc<dyn StoreAdmin>;

    /// Whether the blob is present with the right size (one HEAD request).
    async fn contains(&self, digest: &BlobDigest) -> Result<bool, StoreError>;

    /// The digests that are not present, in input order, each at most once (concurrent HEADs,
    /// at most 32 in flight).
    async fn find_missing(&self, digests: &[BlobDigest]) -> Result<Vec<BlobDigest>, StoreError>;

    /// Streams a local file into the CAS, hashing (blake3 + SHA-256) while uploading.
    ///
    /// With `expected`, refuses with [`StoreError::DigestMismatch`] and publishes nothing when the
    /// bytes differ. Without it, the file is hashed once to learn its digest and hashed again
    /// while uploading (a file that changes in between is refused the same way). If the blob is
    /// already present the file is still hashed (for SHA-256 and the check) but not uploaded.
    async fn put_file(
        &self,
        path: &Path,
        expected: Option<BlobDigest>,
    ) -> Result<PutOutcome, StoreError>;

    /// Streams the blob from byte `offset` (`0..=size`), re-verifying as it goes.
    ///
    /// The whole blob is read and hashed (bytes before `offset` are hashed but not yielded), and
    /// the last chunk is withheld until digest and size match; on mismatch the blob is
    /// quarantined and the stream yields [`StoreError::Corrupt`] instead of the last chunk.
    /// Chunks are at most [`MAX_READ_CHUNK`] bytes. [`StoreError::NotFound`] if absent.
    async fn read(&self, digest: &BlobDigest, offset: u64) -> Result<BlobStream, StoreError>;

    /// Verified copy into a local file (temp file beside `dest`, fsync, rename); on any error
    /// nothing new is left at `dest`.
    async fn read_to_file(&self, digest: &BlobDigest, dest: &Path) -> Result<(), StoreError>;

    /// The encoded action result for `key`, or `None` if there is none.
    async fn get_action_result(&self, key: &ActionKey) -> Result<Option<Bytes>, StoreError>;

    /// Writes the action result if none exists yet; the first writer wins.
    ///
    /// On a backend without atomic create-if-absent (an S3-compatible store with conditional put
    /// disabled), this falls back to check-then-write, so two racing writers may both report
    /// [`Published::Created`] and the later write wins; results for one key are interchangeable,
    /// so that is acceptable.
    async fn put_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<Published, StoreError>;

    /// Overwrites the action result (used only when the existing one named blobs that are gone).
    async fn replace_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<(), StoreError>;

    /// Moves a blob to `quarantine/blake3/<hex>.<unix millis>` (copy, then delete) and logs
    /// `reason`. The blob leaves the CAS even if the copy fails; the error then says so.
    async fn quarantine(&self, digest: &BlobDigest, reason: &str) -> Result<(), StoreError>;
}
