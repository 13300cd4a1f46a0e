//! The timing-cache registry's index in the farm's database, shared by every daemon of the
//! farm: `INSERT … ON CONFLICT DO NOTHING` adds a version atomically, so two recordings that
//! finish together on different daemons both stay listed.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::SharedQueue;
use crate::timing_cache::{CacheVersion, RegistryError, TimingCacheScope, VersionIndex};

/// The index in table `trtfarm_timing_caches`.
pub struct PostgresIndex {
    shared: Arc<SharedQueue>,
}

impl PostgresIndex {
    /// The index in the farm's database.
    pub fn new(shared: Arc<SharedQueue>) -> PostgresIndex {
        PostgresIndex { shared }
    }
}

fn database(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Index(format!("the farm's database: {e}"))
}

impl VersionIndex for PostgresIndex {
    fn list<'a>(
        &'a self,
        scope: &'a TimingCacheScope,
    ) -> BoxFuture<'a, Result<Vec<CacheVersion>, RegistryError>> {
        Box::pin(async move {
            let key = scope.registry_key();
            let client = self
                .shared
                .client()
                .await
                .map_err(|s| database(s.message()))?;
            let rows = client
                .query(
                    "SELECT record FROM trtfarm_timing_caches WHERE scope_key = $1 ORDER BY seq",
                    &[&key.hex()],
                )
                .await
                .map_err(database)?;
            rows.iter()
                .map(|row| CacheVersion::from_json(&key, row.get::<_, &str>(0).as_bytes()))
                .collect()
        })
    }

    fn add<'a>(&'a self, version: &'a CacheVersion) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let client = self
                .shared
                .client()
                .await
                .map_err(|s| database(s.message()))?;
            let record =
                String::from_utf8(version.to_json().to_vec()).expect("JSON records are UTF-8");
            client
                .execute(
                    "INSERT INTO trtfarm_timing_caches (scope_key, blake3, record) \
                     VALUES ($1, $2, $3) ON CONFLICT (scope_key, blake3) DO NOTHING",
                    &[
                        &version.scope.registry_key().hex(),
                        &version.digest.hex(),
                        &record,
                    ],
                )
                .await
                .map_err(database)?;
            Ok(())
        })
    }
}
