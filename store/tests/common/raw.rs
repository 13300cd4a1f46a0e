//! [`RawStore`]: a plain `object_store` client on a test store's storage, bypassing the store's
//! checks, to look at the documented layout and to damage blobs the way a disk or a careless
//! operator would.

use std::path::Path as LocalPath;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use trtfarm_store::{ActionKey, BlobDigest};

/// An unchecked client on the same bytes as a test store, rooted at the store's prefix.
pub struct RawStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl RawStore {
    /// The directory behind a `file://` store.
    pub fn local(dir: &LocalPath) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Self {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap()),
            root: Path::default(),
        }
    }

    /// The bucket behind an `s3://` or `az://` store URL, with the same options.
    pub fn remote(url: &str, options: &[(String, String)]) -> Self {
        let parsed = url::Url::parse(url).unwrap();
        let (store, root) = object_store::parse_url_opts(&parsed, options.iter().cloned())
            .unwrap_or_else(|e| panic!("raw client for {url}: {e}"));
        Self {
            store: Arc::from(store),
            root,
        }
    }

    /// `<root>/<relative>`.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// Where the blob lives, per the documented layout (`cas/blake3/<2 hex>/<64 hex>`).
    pub fn blob_path(&self, digest: &BlobDigest) -> Path {
        let hex = digest.hex();
        self.path(&format!("cas/blake3/{}/{hex}", &hex[..2]))
    }

    /// Where the action result lives (`ac/v1/<64 hex>`).
    pub fn action_path(&self, key: &ActionKey) -> Path {
        self.path(&format!("ac/v1/{}", key.hex()))
    }

    /// The object's bytes, or None if it does not exist.
    pub async fn get(&self, path: &Path) -> Option<Vec<u8>> {
        match self.store.get(path).await {
            Ok(got) => Some(got.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("raw get {path}: {e}"),
        }
    }

    /// Overwrites the object with `bytes`.
    pub async fn put(&self, path: &Path, bytes: Vec<u8>) {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .unwrap_or_else(|e| panic!("raw put {path}: {e}"));
    }

    /// The stored blob's bytes, unchecked.
    pub async fn blob(&self, digest: &BlobDigest) -> Option<Vec<u8>> {
        self.get(&self.blob_path(digest)).await
    }

    /// Replaces the stored blob's bytes with `damage(bytes)`.
    pub async fn damage_blob(&self, digest: &BlobDigest, damage: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = self.blob(digest).await.expect("the blob to damage exists");
        damage(&mut bytes);
        self.put(&self.blob_path(digest), bytes).await;
    }

    /// Every object below the root, relative to it, sorted.
    pub async fn list(&self) -> Vec<String> {
        let prefix = (!self.root.as_ref().is_empty()).then_some(&self.root);
        let mut names: Vec<String> = self
            .store
            .list(prefix)
            .map_ok(|meta| {
                let full = meta.location.as_ref().to_string();
                match self.root.as_ref() {
                    "" => full,
                    root => full[root.len() + 1..].to_string(),
                }
            })
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    /// Names (`<64 hex>.<unix millis>`) of the objects under `quarantine/blake3/`.
    pub async fn quarantined(&self) -> Vec<String> {
        self.list()
            .await
            .into_iter()
            .filter_map(|name| name.strip_prefix("quarantine/blake3/").map(str::to_string))
            .collect()
    }
}
