//! The timing-cache registry in the store: cache blobs in the CAS, plus two kinds of small JSON
//! records in the action cache under keys derived so they can never collide with a build's:
//!
//! - per scope, an index listing its versions oldest first (`TimingCacheScope::registry_key`);
//! - per cache digest, the version record: its scope, parent and recording build. Written
//!   once (first writer wins), so a cache's scope can always be checked, even when an index
//!   update was lost.
//!
//! Index updates are read-modify-write through `replace_action_result`: two recordings of one
//! scope finishing at the same moment can lose one index entry (its blob and version record
//! stay, and a lock that pins it still resolves). The store has no compare-and-swap for action
//! results; a farm with one daemon per GPU scope does not race here.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use trtfarm_store::{ActionKey, BlobDigest, ContentStore, Published, StoreError};

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
    /// The policy forbids it (e.g. a cache of another scope).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The stored form of a [`CacheVersion`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRecord {
    blake3: String,
    size: u64,
    scope: TimingCacheScope,
    parent: Option<(String, u64)>,
    recorded_by: String,
    recorded_at_ms: i64,
}

/// The stored form of a scope's index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRecord {
    scope: TimingCacheScope,
    versions: Vec<VersionRecord>,
}

impl VersionRecord {
    fn of(version: &CacheVersion) -> VersionRecord {
        VersionRecord {
            blake3: version.digest.hex(),
            size: version.digest.size,
            scope: version.scope.clone(),
            parent: version.parent.map(|p| (p.hex(), p.size)),
            recorded_by: version.recorded_by.clone(),
            recorded_at_ms: version.recorded_at_ms,
        }
    }

    fn version(self) -> Result<CacheVersion, StoreError> {
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

/// The key of a cache digest's version record.
fn version_key(digest: &BlobDigest) -> ActionKey {
    let mut payload = digest.hash.to_vec();
    payload.extend_from_slice(&digest.size.to_le_bytes());
    derived_key(b"trtfarm.timing-cache.version\0", &payload)
}

/// The registry over a store.
#[derive(Clone)]
pub struct TimingCacheRegistry {
    store: Arc<dyn ContentStore>,
}

impl TimingCacheRegistry {
    /// A registry kept in `store`.
    pub fn new(store: Arc<dyn ContentStore>) -> TimingCacheRegistry {
        TimingCacheRegistry { store }
    }

    /// The versions of `scope`, oldest first (empty when nothing was recorded).
    pub async fn versions(
        &self,
        scope: &TimingCacheScope,
    ) -> Result<Vec<CacheVersion>, RegistryError> {
        let key = scope.registry_key();
        let Some(index) = self.read::<IndexRecord>(&key).await? else {
            return Ok(Vec::new());
        };
        index
            .versions
            .into_iter()
            .map(|v| v.version().map_err(|e| damaged(&key, e)))
            .collect()
    }

    /// The version record of `digest`, whatever its scope.
    pub async fn version(
        &self,
        digest: &BlobDigest,
    ) -> Result<Option<CacheVersion>, RegistryError> {
        let key = version_key(digest);
        match self.read::<VersionRecord>(&key).await? {
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
        self.add_to_index(&version).await?;
        Ok(version)
    }

    /// Appends `version` to its scope's index unless it is listed already.
    async fn add_to_index(&self, version: &CacheVersion) -> Result<(), RegistryError> {
        let key = version.scope.registry_key();
        let mut existing = self.read::<IndexRecord>(&key).await?;
        if existing.is_none() {
            let first = IndexRecord {
                scope: version.scope.clone(),
                versions: vec![VersionRecord::of(version)],
            };
            if self.store.put_action_result(&key, encode(&first)).await? == Published::Created {
                return Ok(());
            }
            // Another recording created the index meanwhile: append to theirs.
            existing = self.read::<IndexRecord>(&key).await?;
        }
        let mut index = existing.ok_or_else(|| damaged(&key, "vanished after it existed"))?;
        let hex = version.digest.hex();
        if index.versions.iter().any(|v| v.blake3 == hex) {
            return Ok(());
        }
        index.versions.push(VersionRecord::of(version));
        self.store
            .replace_action_result(&key, encode(&index))
            .await?;
        Ok(())
    }

    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        key: &ActionKey,
    ) -> Result<Option<T>, RegistryError> {
        match self.store.get_action_result(key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| damaged(key, e)),
            None => Ok(None),
        }
    }
}

fn encode<T: Serialize>(record: &T) -> Bytes {
    serde_json::to_vec(record)
        .expect("registry records always serialise")
        .into()
}

fn damaged(key: &ActionKey, message: impl std::fmt::Display) -> RegistryError {
    RegistryError::Damaged {
        key: key.hex(),
        message: message.to_string(),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
