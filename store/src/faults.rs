//! [`FaultyStore`]: a test layer that makes the calls through it fail on demand, so the layers
//! above it (and the daemon) can be tested against outages without stopping a real server.
//! Built for tests only (the `test-servers` feature); never a backend.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    ActionKey, BlobDigest, BlobStream, ContentStore, Published, PutOutcome, StoreAdmin, StoreError,
};

/// A transient failure, as a refused connection looks once `object_store` gave up on it.
pub fn outage() -> StoreError {
    StoreError::backend(
        "a call through the fault layer",
        object_store::Error::Generic {
            store: "fault layer",
            source: "connection refused (injected)".into(),
        },
    )
}

/// A failure that would repeat: the credentials are refused.
pub fn denied() -> StoreError {
    StoreError::backend(
        "a call through the fault layer",
        object_store::Error::PermissionDenied {
            path: "injected".into(),
            source: "403 (injected)".into(),
        },
    )
}

/// Passes every call to `inner`, except that the next [`Self::fail_next`] calls fail instead.
pub struct FaultyStore {
    inner: Arc<dyn ContentStore>,
    /// Calls still to fail, and how.
    faults: Mutex<(u32, fn() -> StoreError)>,
    /// Calls made through this layer (failed ones included).
    calls: AtomicU32,
}

impl FaultyStore {
    /// A layer over `inner` that fails nothing yet.
    pub fn new(inner: Arc<dyn ContentStore>) -> Self {
        Self {
            inner,
            faults: Mutex::new((0, outage)),
            calls: AtomicU32::new(0),
        }
    }

    /// Makes the next `count` calls (of any operation) fail with `error()`.
    pub fn fail_next(&self, count: u32, error: fn() -> StoreError) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = (count, error);
    }

    /// How many calls went through this layer so far.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Counts a call and fails it if a fault is due.
    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *faults {
            (0, _) => Ok(()),
            (left, error) => {
                *left -= 1;
                Err(error())
            }
        }
    }
}

#[async_trait]
impl ContentStore for FaultyStore {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    fn display_url(&self) -> &str {
        self.inner.display_url()
    }

    fn admin(&self) -> Arc<dyn StoreAdmin> {
        self.inner.admin()
    }

    async fn contains(&self, digest: &BlobDigest) -> Result<bool, StoreError> {
        self.call()?;
        self.inner.contains(digest).await
    }

    async fn find_missing(&self, digests: &[BlobDigest]) -> Result<Vec<BlobDigest>, StoreError> {
        self.call()?;
        self.inner.find_missing(digests).await
    }

    async fn put_file(
        &self,
        path: &Path,
        expected: Option<BlobDigest>,
    ) -> Result<PutOutcome, StoreError> {
        self.call()?;
        self.inner.put_file(path, expected).await
    }

    async fn read(&self, digest: &BlobDigest, offset: u64) -> Result<BlobStream, StoreError> {
        self.call()?;
        self.inner.read(digest, offset).await
    }

    async fn read_to_file(&self, digest: &BlobDigest, dest: &Path) -> Result<(), StoreError> {
        self.call()?;
        self.inner.read_to_file(digest, dest).await
    }

    async fn get_action_result(&self, key: &ActionKey) -> Result<Option<Bytes>, StoreError> {
        self.call()?;
        self.inner.get_action_result(key).await
    }

    async fn put_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<Published, StoreError> {
        self.call()?;
        self.inner.put_action_result(key, encoded).await
    }

    async fn replace_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<(), StoreError> {
        self.call()?;
        self.inner.replace_action_result(key, encoded).await
    }

    async fn quarantine(&self, digest: &BlobDigest, reason: &str) -> Result<(), StoreError> {
        self.call()?;
        self.inner.quarantine(digest, reason).await
    }
}
