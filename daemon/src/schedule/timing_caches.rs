//! What the farm answers about its timing-cache registry (`trtfarm timing-cache`).

use tonic::Status;
use trtfarm_proto::v1;

use super::Farm;
use crate::ingest::request::{PreparedBuild, parse_digest, prepare};
use crate::timing_cache::CacheVersion;

impl Farm {
    /// The scope `request`'s engine builds in and the versions recorded for it (no scope for
    /// an engine without a timing cache).
    pub async fn timing_cache_line(
        &self,
        request: v1::SubmitRequest,
    ) -> Result<v1::TimingCacheLine, Status> {
        let prepared: PreparedBuild = match &self.shared {
            Some(shared) => self.prepare_for_farm(shared, request).await?.0,
            None => prepare(request, &self.inventory, &self.settings.policy)?,
        };
        let policy = prepared.variant.settings.timing_cache.as_str().to_owned();
        let Some(scope) = &prepared.timing_scope else {
            return Ok(v1::TimingCacheLine {
                policy,
                ..Default::default()
            });
        };
        let versions = self
            .timing_caches
            .versions(scope)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(v1::TimingCacheLine {
            scope: scope.to_string(),
            scope_json: serde_json::to_string_pretty(scope)
                .map_err(|e| Status::internal(e.to_string()))?,
            versions: versions.iter().map(wire).collect(),
            policy,
        })
    }

    /// The registry's record of one cache.
    pub async fn timing_cache_version(
        &self,
        digest: Option<&v1::Digest>,
    ) -> Result<v1::TimingCacheVersion, Status> {
        let digest = parse_digest(digest, "the timing cache")?;
        match self.timing_caches.version(&digest).await {
            Ok(Some(version)) => Ok(wire(&version)),
            Ok(None) => Err(Status::not_found(format!(
                "this farm's registry has no timing cache {digest}"
            ))),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

fn wire(version: &CacheVersion) -> v1::TimingCacheVersion {
    v1::TimingCacheVersion {
        digest: Some((&version.digest).into()),
        parent: version.parent.as_ref().map(Into::into),
        recorded_by: version.recorded_by.clone(),
        recorded_at_ms: version.recorded_at_ms,
        scope: version.scope.to_string(),
    }
}
