//! The timing-cache registry: cache blobs in the CAS, a version record per cache digest in the
//! action cache, and each scope's list of versions in a [`VersionIndex`].
//!
//! The version record (its scope, parent and recording build) sits under a key derived from
//! the digest so it can never collide with a build's, and is written once (first writer wins):
//! a cache's scope can always be checked, whatever the index says.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use trtfarm_store::{ActionKey, BlobDigest, ContentStore, Published, StoreError};

use super::index::{StoreIndex, VersionIndex};
use super::policy::{PublishPlan, Refusal, check_same_scope};
use super::scope::{TimingCacheScope, derived_key};

/// One recorded timing cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheVersion {
    /// The cache blob.
    pub digest: BlobDigest,
    /// What it was recorded for.
    pub scope: TimingCacheScope,
    /// The version the recording started from, if any.
    pub parent: Option<BlobDigest>,
    /// The action key (hex) of the build that recorded it.
    pub recorded_by: String,
    /// When it was published, in milliseconds since the Unix epoch (informational only).
    pub recorded_at_ms: i64,
}

/// Registry failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store failed.
    #[error("timing-cache registry: {0}")]
    Store(#[from] StoreError),
    /// A registry record does not decode.
    #[error("timing-cache registry record {key} is damaged: {message}")]
    Damaged {
        /// The record's key, hex.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The index of versions could not be read or written.
    #[error("timing-cache registry: {0}")]
    Index(String),
    /// The policy forbids it (e.g. a cache of another scope).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The stored form of a [`CacheVersion`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionRecord {
    pub(crate) blake3: String,
    size: u64,
    scope: TimingCacheScope,
    parent: Option<(String, u64)>,
    recorded_by: String,
    recorded_at_ms: i64,
}

impl VersionRecord {
    /// The record of `version`.
    pub(crate) fn of(version: &CacheVersion) -> VersionRecord {
        VersionRecord {
            blake3: version.digest.hex(),
            size: version.digest.size,
            scope: version.scope.clone(),
            parent: version.parent.map(|p| (p.hex(), p.size)),
            recorded_by: version.recorded_by.clone(),
            recorded_at_ms: version.recorded_at_ms,
        }
    }

    /// The version it records.
    pub(crate) fn version(self) -> Result<CacheVersion, StoreError> {
        Ok(CacheVersion {
            digest: BlobDigest::parse(&self.blake3, self.size)?,
            parent: self
                .parent
                .map(|(hex, size)| BlobDigest::parse(&hex, size))
                .transpose()?,
            scope: self.scope,
            recorded_by: self.recorded_by,
            recorded_at_ms: self.recorded_at_ms,
        })
    }
}

impl CacheVersion {
    /// The version's record, as JSON (the form the index keeps).
    pub fn to_json(&self) -> Bytes {
        encode(&VersionRecord::of(self))
    }

    /// A version from its JSON record, read under `key` (named when it does not decode).
    pub fn from_json(key: &ActionKey, json: &[u8]) -> Result<CacheVersion, RegistryError> {
        let record: VersionRecord = serde_json::from_slice(json).map_err(|e| damaged(key, e))?;
        record.version().map_err(|e| damaged(key, e))
    }
}

/// The key of a cache digest's version record.
fn version_key(digest: &BlobDigest) -> ActionKey {
    let mut payload = digest.hash.to_vec();
    payload.extend_from_slice(&digest.size.to_le_bytes());
    derived_key(b"trtfarm.timing-cache.version\0", &payload)
}

/// The registry over a store and an index.
#[derive(Clone)]
pub struct TimingCacheRegistry {
    store: Arc<dyn ContentStore>,
    index: Arc<dyn VersionIndex>,
}

impl TimingCacheRegistry {
    /// A registry kept entirely in `store` (one daemon).
    pub fn new(store: Arc<dyn ContentStore>) -> TimingCacheRegistry {
        let index = Arc::new(StoreIndex::new(Arc::clone(&store)));
        TimingCacheRegistry { store, index }
    }

    /// A registry whose blobs and version records are in `store` and whose scope lists are in
    /// `index` (a farm's database).
    pub fn with_index(
        store: Arc<dyn ContentStore>,
        index: Arc<dyn VersionIndex>,
    ) -> TimingCacheRegistry {
        TimingCacheRegistry { store, index }
    }

    /// The versions of `scope`, oldest first (empty when nothing was recorded).
    pub async fn versions(
        &self,
        scope: &TimingCacheScope,
    ) -> Result<Vec<CacheVersion>, RegistryError> {
        self.index.list(scope).await
    }

    /// The version record of `digest`, whatever its scope.
    pub async fn version(
        &self,
        digest: &BlobDigest,
    ) -> Result<Option<CacheVersion>, RegistryError> {
        let key = version_key(digest);
        match read::<VersionRecord>(self.store.as_ref(), &key).await? {
            Some(record) => Ok(Some(record.version().map_err(|e| damaged(&key, e))?)),
            None => Ok(None),
        }
    }

    /// Publishes the cache file a `record` build wrote as a new version of `publish.scope`:
    /// the blob, then its version record, then the index. Refused when the same bytes are
    /// already recorded for another scope, or the parent belongs to another scope.
    pub async fn publish(
        &self,
        publish: &PublishPlan,
        cache_file: &Path,
        recorded_by: &ActionKey,
        recorded_at_ms: i64,
    ) -> Result<CacheVersion, RegistryError> {
        if let Some(parent) = &publish.parent
            && let Some(parent) = self.version(parent).await?
        {
            check_same_scope(&publish.scope, &parent)?;
        }
        let put = self.store.put_file(cache_file, None).await?;
        let version = CacheVersion {
            digest: put.digest,
            scope: publish.scope.clone(),
            parent: publish.parent,
            recorded_by: recorded_by.hex(),
            recorded_at_ms,
        };
        let version_key = version_key(&version.digest);
        let record = encode(&VersionRecord::of(&version));
        let version = match self.store.put_action_result(&version_key, record).await? {
            Published::Created => version,
            // The same bytes were recorded before: keep the first record, if it is this scope's.
            Published::AlreadyExisted => {
                let existing = self
                    .version(&version.digest)
                    .await?
                    .ok_or_else(|| damaged(&version_key, "vanished after it existed"))?;
                check_same_scope(&publish.scope, &existing)?;
                existing
            }
        };
        self.index.add(&version).await?;
        Ok(version)
    }
}

/// Reads and decodes the JSON record under `key`, if there is one.
pub(crate) async fn read<T: for<'de> Deserialize<'de>>(
    store: &dyn ContentStore,
    key: &ActionKey,
) -> Result<Option<T>, RegistryError> {
    match store.get_action_result(key).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| damaged(key, e)),
        None => Ok(None),
    }
}

/// A record as stored.
pub(crate) fn encode<T: Serialize>(record: &T) -> Bytes {
    serde_json::to_vec(record)
        .expect("registry records always serialise")
        .into()
}

/// A record that does not decode.
pub(crate) fn damaged(key: &ActionKey, message: impl std::fmt::Display) -> RegistryError {
    RegistryError::Damaged {
        key: key.hex(),
        message: message.to_string(),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
