//! The timing-cache policy as one pure decision: from the manifest's policy, the build's scope,
//! the cache engine.lock pins and what the registry holds, to what the build loads, the exact
//! `trt_ffi::TimingCacheConfig`, what it publishes and what the lock must pin, or a refusal.
//!
//! | policy   | loads                                   | config                         | publishes |
//! |----------|-----------------------------------------|--------------------------------|-----------|
//! | `off`    | nothing                                 | none                           | nothing   |
//! | `record` | the pinned version, else the newest of  | editable, write output         | the cache |
//! |          | its scope, else starts empty            |                                | after it  |
//! | `locked` | the pinned version, else the newest     | error on miss, no output       | nothing   |
//! |          | (reported, so the lock pins it)         |                                |           |
//!
//! Refused: a pin with `off` (a stale lock); any cache of another scope (another GPU, MPS share,
//! toolchain or timing setting: that would merge caches that do not belong together); `locked`
//! with nothing recorded, or with a pin the registry does not know; optimization level 0 for
//! `locked` and `record` (level 0 ignores the timing cache).

use manifest_schema::TimingCachePolicy;
use trt_ffi::TimingCacheConfig;
use trtfarm_store::BlobDigest;

use super::registry::CacheVersion;
use super::scope::TimingCacheScope;

/// Why a build cannot run under its timing-cache policy; `message` says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// For a person: what is wrong and how to fix it.
    pub message: String,
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        message: message.into(),
    })
}

/// What the registry holds that the decision needs (read from the store by the caller).
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryView<'a> {
    /// The versions recorded for the build's scope, oldest first.
    pub versions: &'a [CacheVersion],
    /// The registry's record of the pinned digest, whatever its scope; `None` if unknown.
    pub pinned_record: Option<&'a CacheVersion>,
}

/// Everything the policy decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// The variant's `timing_cache.policy`.
    pub policy: TimingCachePolicy,
    /// The scope of the build (its toolchain, GPU, MPS share and timing settings).
    pub scope: &'a TimingCacheScope,
    /// The timing-cache digest engine.lock pins for this variant, if any.
    pub pinned: Option<&'a BlobDigest>,
    /// What the registry holds.
    pub registry: RegistryView<'a>,
}

/// After a `record` build: publish its output cache as a new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPlan {
    /// The scope the new version belongs to (the build's).
    pub scope: TimingCacheScope,
    /// The version it was recorded on top of, if any.
    pub parent: Option<BlobDigest>,
}

/// The cache a `locked` build used, for engine.lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The cache's digest.
    pub digest: BlobDigest,
    /// True when the lock did not pin it yet (the newest version was chosen): the client
    /// must write it into engine.lock, and `submit --locked` must fail.
    pub newly_chosen: bool,
}

/// What a build does about its timing cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingCachePlan {
    /// The cache blob to load before building; `None`: an empty cache, or none at all.
    pub load: Option<BlobDigest>,
    /// The builder's timing-cache configuration without its input bytes (see
    /// [`builder_config`](Self::builder_config)); `None`: no timing cache.
    pub config: Option<TimingCacheConfig>,
    /// What to publish after a successful build.
    pub publish: Option<PublishPlan>,
    /// What engine.lock must pin.
    pub pin: Option<Pin>,
}

impl TimingCachePlan {
    /// The timing-cache digest that enters the action key: the loaded cache decides the
    /// tactics (`locked`) or the recording's starting point (`record`), so two builds that
    /// load different caches are different builds.
    pub fn action_key_input(&self) -> Option<&BlobDigest> {
        self.load.as_ref()
    }

    /// The configuration for trt-ffi, with the bytes of [`load`](Self::load) (which the caller
    /// read from the store and must pass exactly when `load` is set).
    pub fn builder_config(
        &self,
        loaded: Option<Vec<u8>>,
    ) -> Result<Option<TimingCacheConfig>, Refusal> {
        match (&self.load, &loaded) {
            (Some(digest), None) => {
                return refuse(format!("timing cache {digest} was not loaded"));
            }
            (None, Some(_)) => {
                return refuse("a timing cache was loaded that the plan does not use");
            }
            _ => {}
        }
        Ok(self.config.clone().map(|config| TimingCacheConfig {
            input: loaded,
            ..config
        }))
    }
}

/// The builder's timing-cache configuration for `policy`, without input bytes: `record` times
/// what the loaded cache lacks and writes the result; `locked` fails on any layer the cache
/// lacks and writes nothing.
pub fn builder_settings(policy: TimingCachePolicy) -> Option<TimingCacheConfig> {
    match policy {
        TimingCachePolicy::Off => None,
        TimingCachePolicy::Record => Some(TimingCacheConfig {
            input: None,
            write_output: true,
            editable: true,
            error_on_miss: false,
            ignore_mismatch: false,
        }),
        TimingCachePolicy::Locked => Some(TimingCacheConfig {
            input: None,
            write_output: false,
            editable: false,
            error_on_miss: true,
            ignore_mismatch: false,
        }),
    }
}

/// Decides what a build does about its timing cache (see the module documentation).
pub fn plan(request: &PolicyRequest<'_>) -> Result<TimingCachePlan, Refusal> {
    let scope = request.scope;
    let level = scope.settings.optimization_level;
    match request.policy {
        TimingCachePolicy::Off => {
            if let Some(pinned) = request.pinned {
                return refuse(format!(
                    "engine.lock pins timing cache {pinned}, but the policy is `off`: the lock \
                     is stale; rebuild it without --locked"
                ));
            }
            Ok(TimingCachePlan {
                load: None,
                config: None,
                publish: None,
                pin: None,
            })
        }
        TimingCachePolicy::Record => {
            if level == 0 {
                return refuse(
                    "timing cache policy `record` with optimization_level = 0: level 0 ignores \
                     the timing cache, so the recording would be useless to every locked build; \
                     raise optimization_level",
                );
            }
            let base = match request.pinned {
                Some(pinned) => Some(pinned_version(request, pinned)?),
                None => newest(request)?,
            };
            Ok(TimingCachePlan {
                load: base.map(|v| v.digest),
                config: builder_settings(TimingCachePolicy::Record),
                publish: Some(PublishPlan {
                    scope: scope.clone(),
                    parent: base.map(|v| v.digest),
                }),
                pin: None,
            })
        }
        TimingCachePolicy::Locked => {
            if level == 0 {
                return refuse(
                    "timing cache policy `locked` with optimization_level = 0: level 0 ignores \
                     the timing cache, so the build could not be held to it; raise \
                     optimization_level",
                );
            }
            let (version, newly_chosen) = match request.pinned {
                Some(pinned) => (pinned_version(request, pinned)?, false),
                None => match newest(request)? {
                    Some(version) => (version, true),
                    None => {
                        return refuse(format!(
                            "no timing cache is recorded for {scope}: build a variant with \
                             timing_cache.policy = \"record\" on this GPU first"
                        ));
                    }
                },
            };
            Ok(TimingCachePlan {
                load: Some(version.digest),
                config: builder_settings(TimingCachePolicy::Locked),
                publish: None,
                pin: Some(Pin {
                    digest: version.digest,
                    newly_chosen,
                }),
            })
        }
    }
}

/// Refuses to combine a cache of scope `from` with a build (or cache) of scope `into`.
pub fn check_same_scope(into: &TimingCacheScope, from: &CacheVersion) -> Result<(), Refusal> {
    let differences = into.differences(&from.scope);
    if differences.is_empty() {
        return Ok(());
    }
    refuse(format!(
        "timing cache {} was recorded for {}, not for {into} ({}); caches from different GPUs, \
         toolchains or timing settings are never merged: record one for this build instead",
        from.digest,
        from.scope,
        differences.join("; ")
    ))
}

/// The registry's record of the pinned digest, checked against the build's scope.
fn pinned_version<'a>(
    request: &PolicyRequest<'a>,
    pinned: &BlobDigest,
) -> Result<&'a CacheVersion, Refusal> {
    let Some(version) = request
        .registry
        .pinned_record
        .filter(|v| v.digest == *pinned)
    else {
        return refuse(format!(
            "engine.lock pins timing cache {pinned}, which this farm's registry does not know; \
             it was recorded elsewhere or removed: record again, or remove the pin"
        ));
    };
    check_same_scope(request.scope, version)?;
    Ok(version)
}

/// The newest version of the build's scope, checked (the index should hold only its scope).
fn newest<'a>(request: &PolicyRequest<'a>) -> Result<Option<&'a CacheVersion>, Refusal> {
    match request.registry.versions.last() {
        Some(version) => {
            check_same_scope(request.scope, version)?;
            Ok(Some(version))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
