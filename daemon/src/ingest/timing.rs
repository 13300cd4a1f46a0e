//! The timing cache of a submission: which recorded version an Enterprise build loads, records
//! on top of, or is held to, decided against the daemon's registry before the build is queued,
//! and the action key that follows from it.

use std::path::Path;

use manifest_schema::TimingCachePolicy;
use tonic::Status;
use trtfarm_build_protocol::{INPUTS_DIR, TIMING_CACHE_INPUT_FILE};
use trtfarm_proto::refusal::refusing_setting;

use crate::ingest::request::{PreparedBuild, RequestPolicy, parse_digest};
use crate::timing_cache::{PolicyRequest, RegistryError, RegistryView, TimingCacheRegistry, plan};

/// Resolves `prepared`'s timing cache against `registry` and computes its final action key.
///
/// The resolved version is written into the request as its pin, so every later preparation of
/// the same request (after a restart, or on the farm daemon that claims it) loads the same
/// version and computes the same key. Refusals come before any queue wait and name the
/// manifest and the setting.
pub async fn resolve_timing_cache(
    prepared: &mut PreparedBuild,
    registry: &TimingCacheRegistry,
    policy: &RequestPolicy,
) -> Result<(), Status> {
    let pinned = match &prepared.request.timing_cache {
        Some(digest) => Some(parse_digest(Some(digest), "the pinned timing cache")?),
        None => None,
    };
    let Some(scope) = prepared.timing_scope.clone() else {
        if let Some(pinned) = pinned
            && prepared.variant.settings.timing_cache == TimingCachePolicy::Off
        {
            return Err(refused(
                prepared,
                format!(
                    "engine.lock pins timing cache {pinned}, but this engine uses none: the \
                     lock is stale; submit without --locked to update it"
                ),
            ));
        }
        return Ok(());
    };
    let versions = registry
        .versions(&scope)
        .await
        .map_err(|e| registry_unavailable(&e))?;
    let pinned_record = match &pinned {
        Some(digest) => registry
            .version(digest)
            .await
            .map_err(|e| registry_unavailable(&e))?,
        None => None,
    };
    let decided = plan(&PolicyRequest {
        policy: prepared.variant.settings.timing_cache,
        scope: &scope,
        pinned: pinned.as_ref(),
        registry: RegistryView {
            versions: &versions,
            pinned_record: pinned_record.as_ref(),
        },
    })
    .map_err(|refusal| refused(prepared, refusal.message))?;
    let cache_file = Path::new(TIMING_CACHE_INPUT_FILE);
    if decided.load.is_some()
        && let Some((_, clash)) = (prepared.materialize.iter())
            .find(|(_, path)| Path::new(INPUTS_DIR).join(path) == cache_file)
    {
        return Err(refused(
            prepared,
            format!(
                "the model's external-data file `{}` has the name the builder reads the timing \
                 cache from; rename that file",
                clash.display()
            ),
        ));
    }
    prepared.request.timing_cache = decided.load.as_ref().map(Into::into);
    prepared.timing_cache = Some(decided);
    prepared.key = prepared.compute_key(policy);
    Ok(())
}

/// A refusal naming the manifest, the engine and its policy.
fn refused(prepared: &PreparedBuild, message: String) -> Status {
    let manifest = prepared
        .request
        .manifest
        .as_ref()
        .map_or("engine.toml", |m| m.path.as_str());
    let status = Status::failed_precondition(format!(
        "{manifest}: engine `{}` (timing_cache.policy = \"{}\"): {message}",
        prepared.variant.name,
        prepared.variant.settings.timing_cache.as_str()
    ));
    refusing_setting(status, "timing_cache.policy")
}

fn registry_unavailable(error: &RegistryError) -> Status {
    Status::unavailable(format!("{error}; submit again shortly"))
}
