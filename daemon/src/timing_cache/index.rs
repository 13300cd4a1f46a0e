//! Where the registry lists each scope's versions, oldest first: a [`VersionIndex`].
//!
//! Adding a version must never drop another one that is added at the same moment. The store
//! has no compare-and-swap for its records, so [`StoreIndex`] (one daemon and its store)
//! serialises its read-modify-write updates inside the daemon; a farm of several daemons keeps
//! its index in PostgreSQL instead (`schedule::postgres::timing_caches`), where an insert is
//! atomic.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use trtfarm_store::{ContentStore, Published};

use super::registry::{CacheVersion, RegistryError, VersionRecord, damaged, encode, read};
use super::scope::TimingCacheScope;

/// The versions of each scope, oldest first.
pub trait VersionIndex: Send + Sync {
    /// The versions of `scope`, oldest first (empty when none was recorded).
    fn list<'a>(
        &'a self,
        scope: &'a TimingCacheScope,
    ) -> BoxFuture<'a, Result<Vec<CacheVersion>, RegistryError>>;

    /// Appends `version` to its scope's list unless it is listed already.
    fn add<'a>(&'a self, version: &'a CacheVersion) -> BoxFuture<'a, Result<(), RegistryError>>;
}

/// The stored form of a scope's index in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRecord {
    scope: TimingCacheScope,
    versions: Vec<VersionRecord>,
}

/// The index as one JSON record per scope in the store's action cache, under
/// [`TimingCacheScope::registry_key`]. Updates are serialised by this value: share one per
/// store (the daemon has one registry).
pub struct StoreIndex {
    store: Arc<dyn ContentStore>,
    updates: Mutex<()>,
}

impl StoreIndex {
    /// The index kept in `store`.
    pub fn new(store: Arc<dyn ContentStore>) -> StoreIndex {
        StoreIndex {
            store,
            updates: Mutex::new(()),
        }
    }
}

impl VersionIndex for StoreIndex {
    fn list<'a>(
        &'a self,
        scope: &'a TimingCacheScope,
    ) -> BoxFuture<'a, Result<Vec<CacheVersion>, RegistryError>> {
        Box::pin(async move {
            let key = scope.registry_key();
            let Some(index) = read::<IndexRecord>(self.store.as_ref(), &key).await? else {
                return Ok(Vec::new());
            };
            index
                .versions
                .into_iter()
                .map(|v| v.version().map_err(|e| damaged(&key, e)))
                .collect()
        })
    }

    fn add<'a>(&'a self, version: &'a CacheVersion) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            // Read, append, write back: two updates interleaved here would drop one version.
            let _serialised = self.updates.lock().await;
            let key = version.scope.registry_key();
            let mut index = match read::<IndexRecord>(self.store.as_ref(), &key).await? {
                Some(index) => index,
                None => {
                    let first = IndexRecord {
                        scope: version.scope.clone(),
                        versions: vec![VersionRecord::of(version)],
                    };
                    if self.store.put_action_result(&key, encode(&first)).await?
                        == Published::Created
                    {
                        return Ok(());
                    }
                    read::<IndexRecord>(self.store.as_ref(), &key)
                        .await?
                        .ok_or_else(|| damaged(&key, "vanished after it existed"))?
                }
            };
            let hex = version.digest.hex();
            if index.versions.iter().any(|v| v.blake3 == hex) {
                return Ok(());
            }
            index.versions.push(VersionRecord::of(version));
            self.store
                .replace_action_result(&key, encode(&index))
                .await?;
            Ok(())
        })
    }
}
