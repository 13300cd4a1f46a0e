//! [`ObjectContentStore`]: the one [`ContentStore`] implementation, over any `object_store`
//! backend. The operations themselves live in `cas.rs`, `action_cache.rs` and `quarantine.rs`.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;

use crate::layer::content_store_impl;
use crate::layout::Layout;
use crate::{ActionKey, BlobDigest, BlobStream, StoreAdmin, StoreError, cas};

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

content_store_impl! {
    ObjectContentStore {
        backend => contains find_missing put_file get_action_result put_action_result
            replace_action_result quarantine;
    }

    fn kind(&self) -> &str {
        self.backend.kind
    }

    fn display_url(&self) -> &str {
        &self.backend.display_url
    }

    fn admin(&self) -> Arc<dyn StoreAdmin> {
        Arc::clone(&self.backend) as Arc<dyn StoreAdmin>
    }

    async fn read(&self, digest: &BlobDigest, offset: u64) -> Result<BlobStream, StoreError> {
        cas::read(&self.backend, digest, offset).await
    }

    async fn read_to_file(&self, digest: &BlobDigest, dest: &Path) -> Result<(), StoreError> {
        cas::read_to_file(&self.backend, digest, dest).await
    }
}
