//! [`TieredStore`]: a local fast tier (a `file://` store) in front of a slow shared one, so a
//! machine that reads a blob twice fetches it once.
//!
//! The remote is the truth: writes, existence checks and action results go to it alone (a
//! result can be replaced, so a local copy could go stale). Blobs cannot change under their
//! digest, so a blob read once may be served from the local tier ever after. Local reads are
//! verified like any other (a corrupt local copy is quarantined there and fetched again on the
//! next read); a fill is verified twice, once leaving the remote and once entering the local tier.

use std::path::Path;
use std::sync::Arc;

use crate::layer::content_store_impl;
use crate::{BlobDigest, BlobStream, ContentStore, StoreError};

/// Reads served from `local` when it holds the blob, otherwise from `remote`, filling `local`.
pub struct TieredStore {
    local: Arc<dyn ContentStore>,
    remote: Arc<dyn ContentStore>,
}

impl TieredStore {
    /// `local` (a `file://` store, say) caching blobs read from `remote`.
    pub fn new(local: Arc<dyn ContentStore>, remote: Arc<dyn ContentStore>) -> Self {
        Self { local, remote }
    }

    /// Whether the local tier holds the blob; a local failure counts as not holding it.
    async fn local_has(&self, digest: &BlobDigest) -> bool {
        match self.local.contains(digest).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "local tier unavailable; reading from the remote");
                false
            }
        }
    }

    /// Copies `file` (the blob, already verified) into the local tier. A failure (a full disk)
    /// costs only the next read's speed, so it is logged, not raised.
    async fn keep_locally(&self, file: &Path, digest: &BlobDigest) {
        if let Err(error) = self.local.put_file(file, Some(*digest)).await {
            tracing::warn!(%error, %digest, "could not keep the blob in the local tier");
        }
    }
}

content_store_impl! {
    TieredStore {
        remote => kind display_url admin contains find_missing put_file get_action_result
            put_action_result replace_action_result;
    }

    async fn read(&self, digest: &BlobDigest, offset: u64) -> Result<BlobStream, StoreError> {
        if !self.local_has(digest).await {
            // Fetch the whole blob into a temporary file, keep it, then stream the local copy.
            let temp = tempfile::NamedTempFile::new()
                .map_err(|e| StoreError::io("creating a temporary file for a local fill", e))?;
            self.remote.read_to_file(digest, temp.path()).await?;
            self.keep_locally(temp.path(), digest).await;
            if !self.local_has(digest).await {
                return self.remote.read(digest, offset).await;
            }
        }
        self.local.read(digest, offset).await
    }

    async fn read_to_file(&self, digest: &BlobDigest, dest: &Path) -> Result<(), StoreError> {
        if self.local_has(digest).await {
            match self.local.read_to_file(digest, dest).await {
                Ok(()) => return Ok(()),
                // Corrupt (now quarantined locally) or gone since: the remote still has it.
                Err(error) => tracing::warn!(%error, "local tier read failed; reading the remote"),
            }
        }
        self.remote.read_to_file(digest, dest).await?;
        self.keep_locally(dest, digest).await;
        Ok(())
    }

    async fn quarantine(&self, digest: &BlobDigest, reason: &str) -> Result<(), StoreError> {
        // Whichever copy was read, neither should be served again.
        match self.local.quarantine(digest, reason).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => tracing::warn!(%error, "quarantine in the local tier failed"),
        }
        self.remote.quarantine(digest, reason).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::TryStreamExt;

    use super::*;
    use crate::faults::{FaultyStore, outage};

    struct Tiers {
        store: TieredStore,
        remote: Arc<FaultyStore>,
        local: Arc<dyn ContentStore>,
        local_root: std::path::PathBuf,
        scratch: tempfile::TempDir,
    }

    fn tiers() -> Tiers {
        let scratch = tempfile::tempdir().unwrap();
        let local_root = scratch.path().join("local");
        let local = crate::open(&format!("file://{}", local_root.display()), &[]).unwrap();
        let remote = Arc::new(FaultyStore::new(crate::open("memory://", &[]).unwrap()));
        Tiers {
            store: TieredStore::new(Arc::clone(&local), remote.clone()),
            remote,
            local,
            local_root,
            scratch,
        }
    }

    impl Tiers {
        async fn put(&self, bytes: &[u8]) -> BlobDigest {
            let path = self.scratch.path().join("input");
            std::fs::write(&path, bytes).unwrap();
            self.store.put_file(&path, None).await.unwrap().digest
        }

        async fn read(&self, digest: &BlobDigest) -> Result<Vec<u8>, StoreError> {
            let chunks: Vec<Bytes> = self.store.read(digest, 0).await?.try_collect().await?;
            Ok(chunks.concat())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_read_once_is_served_locally_through_an_outage() {
        let t = tiers();
        let digest = t.put(b"an engine plan").await;
        assert!(
            !t.local.contains(&digest).await.unwrap(),
            "writes go remote"
        );

        let dest = t.scratch.path().join("fetched");
        t.store.read_to_file(&digest, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"an engine plan");
        assert!(t.local.contains(&digest).await.unwrap(), "filled on read");

        t.remote.fail_next(u32::MAX, outage);
        let before = t.remote.calls();
        assert_eq!(t.read(&digest).await.unwrap(), b"an engine plan");
        std::fs::remove_file(&dest).unwrap();
        t.store.read_to_file(&digest, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"an engine plan");
        assert_eq!(t.remote.calls(), before, "the remote was not asked");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_reads_fill_the_local_tier_too() {
        let t = tiers();
        let digest = t.put(b"weights").await;
        assert_eq!(t.read(&digest).await.unwrap(), b"weights");
        assert!(t.local.contains(&digest).await.unwrap());
        t.remote.fail_next(u32::MAX, outage);
        assert_eq!(t.read(&digest).await.unwrap(), b"weights");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_local_copy_is_replaced_from_the_remote() {
        let t = tiers();
        let digest = t.put(b"timing cache").await;
        t.read(&digest).await.unwrap();
        let url = format!("file://{}", t.local_root.display());
        let local_copy = crate::local_blob_file(&url, &digest).unwrap();
        std::fs::write(&local_copy, b"timing cachX").unwrap();

        let dest = t.scratch.path().join("fetched");
        t.store.read_to_file(&digest, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"timing cache");
        assert_eq!(std::fs::read(&local_copy).unwrap(), b"timing cache");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_the_remote_lacks_is_not_found() {
        let t = tiers();
        let error = t.read(&BlobDigest::of_bytes(b"never stored")).await;
        assert!(error.unwrap_err().is_not_found());
    }
}
