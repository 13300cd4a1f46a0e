//! [`ObjectContentStore`]: the one [`ContentStore`] implementation, over any `object_store`
//! backend. The operations themselves live in `cas.rs`, `action_cache.rs` and `quarantine.rs`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::ObjectStore;

use crate::layout::Layout;
use crate::{
    ActionKey, BlobDigest, BlobStream, ContentStore, Published, PutOutcome, StoreAdmin, StoreError,
    cas,
};

/// The shared state behind a store: the backend, where things live in it, and how to name it.
#[derive(Debug)]
pub(crate) struct Backend {
    /// The object store, already rooted where `object_store` needs it (e.g. at the bucket).
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Object paths below the URL's prefix.
    pub(crate) layout: Layout,
    /// `"file"`, `"s3"`, `"azure"`, `"gcs"` or `"memory"`.
    pub(crate) kind: &'static str,
    /// The URL without credentials, for messages and logs.
    pub(crate) display_url: String,
}

impl Backend {
    /// `blob blake3:…/<size> in <url>`: how error messages name a blob.
    pub(crate) fn describe_blob(&self, digest: &BlobDigest) -> String {
        format!("blob {digest} in {}", self.display_url)
    }

    /// `action result <hex> in <url>`: how error messages name an action result.
    pub(crate) fn describe_action(&self, key: &ActionKey) -> String {
        format!("action result {key} in {}", self.display_url)
    }
}

/// A [`ContentStore`] over an `object_store` backend.
#[derive(Debug)]
pub(crate) struct ObjectContentStore {
    backend: Arc<Backend>,
}

impl ObjectContentStore {
    /// Wraps a configured backend.
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }
}

#[async_trait]
impl ContentStore for ObjectContentStore {
    fn kind(&self) -> &str {
        self.backend.kind
    }

    fn display_url(&self) -> &str {
        &self.backend.display_url
    }

    fn admin(&self) -> Arc<dyn StoreAdmin> {
        Arc::clone(&self.backend) as Arc<dyn StoreAdmin>
    }

    async fn contains(&self, digest: &BlobDigest) -> Result<bool, StoreError> {
        self.backend.contains(digest).await
    }

    async fn find_missing(&self, digests: &[BlobDigest]) -> Result<Vec<BlobDigest>, StoreError> {
        self.backend.find_missing(digests).await
    }

    async fn put_file(
        &self,
        path: &Path,
        expected: Option<BlobDigest>,
    ) -> Result<PutOutcome, StoreError> {
        self.backend.put_file(path, expected).await
    }

    async fn read(&self, digest: &BlobDigest, offset: u64) -> Result<BlobStream, StoreError> {
        cas::read(&self.backend, digest, offset).await
    }

    async fn read_to_file(&self, digest: &BlobDigest, dest: &Path) -> Result<(), StoreError> {
        cas::read_to_file(&self.backend, digest, dest).await
    }

    async fn get_action_result(&self, key: &ActionKey) -> Result<Option<Bytes>, StoreError> {
        self.backend.get_action_result(key).await
    }

    async fn put_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<Published, StoreError> {
        self.backend.put_action_result(key, encoded).await
    }

    async fn replace_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<(), StoreError> {
        self.backend.replace_action_result(key, encoded).await
    }

    async fn quarantine(&self, digest: &BlobDigest, reason: &str) -> Result<(), StoreError> {
        self.backend.quarantine(digest, reason).await
    }
}
