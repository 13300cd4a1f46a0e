//! [`StoreAdmin`]: the maintenance face of a store (list, look up, delete objects by their path
//! in the layout), which the collector in `gc` needs and builds never do.
//!
//! It is reached through [`crate::ContentStore::admin`] on the store [`crate::open`] returns, so
//! maintenance opens a store exactly as the daemon does. Paths are relative to the store root
//! (`cas/blake3/ab/ab…`), so callers never see the URL's prefix.

use std::time::SystemTime;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::StoreError;
use crate::backend::Backend;

/// One of the store's top-level areas (see the crate documentation for the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// `cas/`: blobs.
    Cas,
    /// `ac/`: action results and other records.
    ActionCache,
    /// `quarantine/`: blobs that failed verification.
    Quarantine,
}

impl Area {
    /// The area's directory name below the store root.
    pub fn dir(self) -> &'static str {
        match self {
            Area::Cas => "cas",
            Area::ActionCache => "ac",
            Area::Quarantine => "quarantine",
        }
    }
}

/// An object as a listing or lookup sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Its path below the store root, parts joined by `/` (e.g. `ac/v1/<64 hex>`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
    /// The backend's version tag (an e-tag), where it has one.
    pub e_tag: Option<String>,
}

impl StoredObject {
    /// The path's parts below the store root.
    pub fn parts(&self) -> Vec<&str> {
        self.path.split('/').collect()
    }
}

/// Listing and deleting objects of a store, for maintenance (`trtfarmd store gc`).
#[async_trait]
pub trait StoreAdmin: Send + Sync + 'static {
    /// The store URL without credentials (safe to log).
    fn display_url(&self) -> &str;

    /// Every object in `area`, streamed in no particular order.
    fn list(&self, area: Area) -> BoxStream<'static, Result<StoredObject, StoreError>>;

    /// The object at `path` as it is now, or `None` if there is none.
    async fn head(&self, path: &str) -> Result<Option<StoredObject>, StoreError>;

    /// Deletes the object at `path`; one that is already gone counts as deleted.
    async fn delete(&self, path: &str) -> Result<(), StoreError>;
}

#[async_trait]
impl StoreAdmin for Backend {
    fn display_url(&self) -> &str {
        &self.display_url
    }

    fn list(&self, area: Area) -> BoxStream<'static, Result<StoredObject, StoreError>> {
        let layout = self.layout.clone();
        let context = format!("listing {}/ in {}", area.dir(), self.display_url);
        self.store
            .list(Some(&layout.area(area)))
            .map(move |meta| match meta {
                Ok(meta) => Ok(stored_object(&layout.relative(&meta.location), meta)),
                Err(source) => Err(StoreError::backend(&context, source)),
            })
            .boxed()
    }

    async fn head(&self, path: &str) -> Result<Option<StoredObject>, StoreError> {
        let location = self.object_path(path)?;
        match self.store.head(&location).await {
            Ok(meta) => Ok(Some(stored_object(path, meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(StoreError::backend(
                format!("checking {path} in {}", self.display_url),
                source,
            )),
        }
    }

    async fn delete(&self, path: &str) -> Result<(), StoreError> {
        let location = self.object_path(path)?;
        match self.store.delete(&location).await {
            // Someone else deleted it first: it is gone all the same.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::backend(
                format!("deleting {path} from {}", self.display_url),
                source,
            )),
        }
    }
}

impl Backend {
    /// The object path of `path` (relative to the store root), refusing one that is not valid.
    fn object_path(&self, path: &str) -> Result<object_store::path::Path, StoreError> {
        self.layout
            .object(path)
            .map_err(|source| StoreError::InvalidPath {
                path: path.to_string(),
                store: self.display_url.clone(),
                reason: source.to_string(),
            })
    }
}

fn stored_object(path: &str, meta: ObjectMeta) -> StoredObject {
    StoredObject {
        path: path.to_string(),
        size: meta.size,
        modified: meta.last_modified.into(),
        e_tag: meta.e_tag,
    }
}
