//! The policy matrix: off/record/locked × no cache / newest / pinned / unknown pin × same or
//! other GPU, MPS share, toolchain or settings × optimization level 0, and the exact
//! Enterprise builder calls each plan leads to.

use std::path::Path;

use manifest_schema::Variant;
use trt_ffi::{BuildConfig, BuilderCall, BuilderFlag, Flavour, plan_builder_calls};

use super::*;
use crate::ingest::action_key::{KeyMaterial, Target, action_key};
use crate::inventory::ToolchainIdentity;
use crate::timing_cache::scope::BuildGpu;

const H100: &str = "NVIDIA H100 80GB HBM3";

fn variant(policy: &str, level: u8, extra: &str) -> Variant {
    let toml = format!(
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\n\
         toolchain = \"tensorrt 11.4\"\noptimization_level = {level}\nmps_percentage = 50\n{extra}\n\
         [[engine]]\nname = \"e\"\ntiming_cache.policy = \"{policy}\"\n"
    );
    let manifest = manifest_schema::parse(&toml, Path::new("engine.toml"))
        .unwrap_or_else(|e| panic!("test manifest is invalid:\n{e}"));
    manifest.variant("e").unwrap().clone()
}

fn toolchain(version: &str) -> ToolchainIdentity {
    ToolchainIdentity {
        flavour: manifest_schema::Flavour::TensorRt,
        version: version.parse().unwrap(),
        library: trtfarm_types::Blake3Digest([0xab; 32]),
        parser: trtfarm_types::Blake3Digest([0xcd; 32]),
    }
}

fn gpu(model: &str) -> BuildGpu {
    BuildGpu {
        model: model.into(),
        compute_capability: "9.0".parse().unwrap(),
    }
}

/// The scope of an Enterprise build at `level` (off, so the manifest allows level 0).
fn scope_with(level: u8, version: &str, model: &str, extra: &str) -> TimingCacheScope {
    TimingCacheScope::for_build(
        &variant("off", level, extra),
        &toolchain(version),
        &gpu(model),
    )
    .unwrap()
}

fn scope(level: u8) -> TimingCacheScope {
    scope_with(level, "11.4.0.106", H100, "")
}

fn digest(byte: u8) -> BlobDigest {
    BlobDigest {
        hash: [byte; 32],
        size: 1000 + u64::from(byte),
    }
}

fn version(byte: u8, scope: &TimingCacheScope) -> CacheVersion {
    CacheVersion {
        digest: digest(byte),
        scope: scope.clone(),
        parent: None,
        recorded_by: "00".repeat(32),
        recorded_at_ms: 0,
    }
}

/// The registry and lock states of the matrix.
#[derive(Debug, Clone, Copy)]
enum Cache {
    /// Nothing recorded, nothing pinned.
    Absent,
    /// Versions 1 and 2 recorded for the scope, nothing pinned.
    Newest,
    /// Version 1 pinned and known.
    Pinned,
    /// A pin the registry has no record of.
    UnknownPin,
}

/// How the recorded cache's scope differs from the build's.
#[derive(Debug, Clone, Copy)]
enum Recorded {
    Same,
    OtherGpu,
    OtherToolchain,
    OtherMps,
    OtherPrecision,
}

#[derive(Debug, PartialEq)]
enum Expect {
    NoCache,
    Record(Option<u8>),
    Locked(u8, bool),
    Refused(&'static str),
}

fn decide(policy: TimingCachePolicy, level: u8, cache: Cache, recorded: Recorded) -> Expect {
    let build = scope(level);
    let cache_scope = match recorded {
        Recorded::Same => build.clone(),
        Recorded::OtherGpu => scope_with(level, "11.4.0.106", "NVIDIA H200", ""),
        Recorded::OtherToolchain => scope_with(level, "11.5.0.20", H100, ""),
        Recorded::OtherMps => {
            let mut s = build.clone();
            s.mps_percentage = Some(25);
            s
        }
        Recorded::OtherPrecision => scope_with(level, "11.4.0.106", H100, "precision = \"tf32\""),
    };
    let versions = [version(1, &cache_scope), version(2, &cache_scope)];
    let (listed, pinned, record): (&[CacheVersion], Option<BlobDigest>, Option<&CacheVersion>) =
        match cache {
            Cache::Absent => (&[], None, None),
            Cache::Newest => (&versions, None, None),
            Cache::Pinned => (&versions, Some(digest(1)), Some(&versions[0])),
            Cache::UnknownPin => (&[], Some(digest(9)), None),
        };
    let request = PolicyRequest {
        policy,
        scope: &build,
        pinned: pinned.as_ref(),
        registry: RegistryView {
            versions: listed,
            pinned_record: record,
        },
    };
    match plan(&request) {
        Err(refusal) => {
            for (needle, label) in [
                ("optimization_level = 0", "level 0"),
                ("stale", "stale lock"),
                ("never merged", "other scope"),
                ("does not know", "unknown pin"),
                ("no timing cache is recorded", "nothing recorded"),
            ] {
                if refusal.message.contains(needle) {
                    return Expect::Refused(label);
                }
            }
            panic!("unexpected refusal: {refusal}");
        }
        Ok(p) if p.config.is_none() => {
            assert!(
                p.load.is_none() && p.publish.is_none() && p.pin.is_none(),
                "{p:?}"
            );
            Expect::NoCache
        }
        Ok(p) if p.publish.is_some() => {
            let publish = p.publish.as_ref().unwrap();
            assert_eq!(publish.scope, build);
            assert_eq!(publish.parent, p.load);
            assert!(p.pin.is_none());
            Expect::Record(p.load.map(|d| d.hash[0]))
        }
        Ok(p) => {
            let pin = p.pin.expect("a locked plan pins");
            assert_eq!(Some(pin.digest), p.load);
            Expect::Locked(pin.digest.hash[0], pin.newly_chosen)
        }
    }
}

#[test]
fn policy_matrix() {
    use Cache::*;
    use Expect::*;
    use Recorded::*;
    use TimingCachePolicy::{Locked as L, Off, Record as R};
    let mismatches = [OtherGpu, OtherToolchain, OtherMps, OtherPrecision];
    for level in [3, 0] {
        // Off ignores the registry; a pin with off is a stale lock.
        for recorded in [Same, OtherGpu] {
            assert_eq!(decide(Off, level, Absent, recorded), NoCache);
            assert_eq!(decide(Off, level, Newest, recorded), NoCache);
            assert_eq!(decide(Off, level, Pinned, recorded), Refused("stale lock"));
        }
        assert_eq!(decide(Off, level, UnknownPin, Same), Refused("stale lock"));
    }
    // Level 0 ignores the timing cache: record and locked refuse it whatever the registry.
    for policy in [R, L] {
        for cache in [Absent, Newest, Pinned, UnknownPin] {
            for recorded in [Same, OtherGpu, OtherToolchain] {
                assert_eq!(decide(policy, 0, cache, recorded), Refused("level 0"));
            }
        }
    }
    // Record: starts from the pin, else the newest, else empty; never from another scope.
    assert_eq!(decide(R, 3, Absent, Same), Record(None));
    assert_eq!(decide(R, 3, Newest, Same), Record(Some(2)));
    assert_eq!(decide(R, 3, Pinned, Same), Record(Some(1)));
    assert_eq!(decide(R, 3, UnknownPin, Same), Refused("unknown pin"));
    // Locked: the pin, else the newest (newly chosen, for the lock), else refused.
    assert_eq!(decide(L, 3, Absent, Same), Refused("nothing recorded"));
    assert_eq!(decide(L, 3, Newest, Same), Locked(2, true));
    assert_eq!(decide(L, 3, Pinned, Same), Locked(1, false));
    assert_eq!(decide(L, 3, UnknownPin, Same), Refused("unknown pin"));
    for recorded in mismatches {
        for policy in [R, L] {
            for cache in [Newest, Pinned] {
                assert_eq!(
                    decide(policy, 3, cache, recorded),
                    Refused("other scope"),
                    "{policy:?} {cache:?} {recorded:?}"
                );
            }
        }
    }
}

#[test]
fn a_mismatch_refusal_names_both_gpus() {
    let build = scope(3);
    let other = version(1, &scope_with(3, "11.4.0.106", "NVIDIA H200", ""));
    let refusal = check_same_scope(&build, &other).unwrap_err();
    assert!(refusal.message.contains(H100), "{refusal}");
    assert!(refusal.message.contains("NVIDIA H200"), "{refusal}");
    assert!(check_same_scope(&build, &version(1, &build)).is_ok());
}

fn plan_for(policy: TimingCachePolicy, pinned: Option<BlobDigest>) -> TimingCachePlan {
    let build = scope(4);
    let versions = [version(1, &build)];
    plan(&PolicyRequest {
        policy,
        scope: &build,
        pinned: pinned.as_ref(),
        registry: RegistryView {
            versions: &versions,
            pinned_record: pinned.map(|_| &versions[0]),
        },
    })
    .unwrap()
}

fn enterprise_calls(plan: &TimingCachePlan, bytes: Option<Vec<u8>>) -> Vec<BuilderCall> {
    let config = BuildConfig {
        builder_optimization_level: Some(4),
        timing_cache: plan.builder_config(bytes).unwrap(),
        ..BuildConfig::default()
    };
    plan_builder_calls(Flavour::TensorRt, &config).unwrap()
}

#[test]
fn exact_enterprise_builder_calls_per_policy() {
    let flag = |flag| BuilderCall::SetFlag {
        flag,
        enabled: true,
    };
    let set_cache = BuilderCall::SetTimingCache {
        ignore_mismatch: false,
    };
    let level = BuilderCall::SetBuilderOptimizationLevel(4);

    let off = plan_for(TimingCachePolicy::Off, None);
    assert_eq!(enterprise_calls(&off, None), vec![level.clone()]);

    let record = plan_for(TimingCachePolicy::Record, None);
    assert_eq!(
        enterprise_calls(&record, Some(vec![1, 2, 3])),
        vec![
            level.clone(),
            set_cache.clone(),
            flag(BuilderFlag::EditableTimingCache)
        ]
    );
    let config = record.builder_config(Some(vec![1, 2, 3])).unwrap().unwrap();
    assert!(config.write_output && config.editable && !config.error_on_miss);
    assert_eq!(config.input, Some(vec![1, 2, 3]));

    let locked = plan_for(TimingCachePolicy::Locked, Some(digest(1)));
    assert_eq!(
        enterprise_calls(&locked, Some(vec![7])),
        vec![level, set_cache, flag(BuilderFlag::ErrorOnTimingCacheMiss)]
    );
    let config = locked.builder_config(Some(vec![7])).unwrap().unwrap();
    assert!(!config.write_output && !config.editable && !config.ignore_mismatch);
}

#[test]
fn record_config_is_what_the_variant_config_asks_for() {
    // The variant's builder configuration already maps `record`; the plan must agree with it.
    let from_variant =
        crate::ingest::variant_config::build_config_for_prepared_model(&variant("record", 3, ""))
            .unwrap()
            .timing_cache;
    let record = plan_for(TimingCachePolicy::Record, None);
    assert_eq!(from_variant, record.config);
}

#[test]
fn the_loaded_bytes_must_match_the_plan() {
    let locked = plan_for(TimingCachePolicy::Locked, Some(digest(1)));
    assert!(locked.builder_config(None).is_err());
    let off = plan_for(TimingCachePolicy::Off, None);
    assert!(off.builder_config(Some(vec![1])).is_err());
    assert_eq!(off.builder_config(None).unwrap(), None);
}

#[test]
fn the_locked_cache_enters_the_action_key() {
    let identity = toolchain("11.4.0.106");
    let target = Target::Gpu {
        model: H100.into(),
        compute_capability: "9.0".parse().unwrap(),
    };
    let key = |plan: &TimingCachePlan| {
        action_key(&KeyMaterial {
            salt: None,
            variant_encoding: b"v",
            inputs: &[],
            toolchain: &identity,
            target: &target,
            timing_cache: plan.action_key_input(),
            builder: "",
            model_transform: None,
        })
    };
    let build = scope(4);
    let versions = [version(1, &build), version(2, &build)];
    let locked_to = |byte: u8| {
        let pinned = digest(byte);
        plan(&PolicyRequest {
            policy: TimingCachePolicy::Locked,
            scope: &build,
            pinned: Some(&pinned),
            registry: RegistryView {
                versions: &versions,
                pinned_record: versions.iter().find(|v| v.digest == pinned),
            },
        })
        .unwrap()
    };
    let (one, two) = (locked_to(1), locked_to(2));
    assert_eq!(one.action_key_input(), Some(&digest(1)));
    assert_ne!(key(&one), key(&two));
    assert_ne!(key(&one), key(&plan_for(TimingCachePolicy::Off, None)));
}

#[test]
fn tensorrt_rtx_builds_have_no_timing_cache_scope() {
    let manifest = manifest_schema::parse(
        "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\
         compatibility.compute_capabilities = [\"8.6\"]\n",
        Path::new("engine.toml"),
    )
    .unwrap();
    let error = TimingCacheScope::for_build(
        &manifest.variants()[0],
        &toolchain("1.7.1.116"),
        &gpu("none"),
    )
    .unwrap_err();
    assert!(error.contains("no-ops"), "{error}");
}

#[test]
fn scope_keys_follow_every_scope_field() {
    let base = scope(3);
    let mut changed = Vec::new();
    for extra in [
        "precision = \"tf32\"",
        "avg_timing_iterations = 8",
        "tactic_sources = [\"jit-convolutions\"]",
        "tiling_optimization_level = \"fast\"",
        "memory_pools.workspace = \"1GiB\"",
        "memory_pools.tactic_dram = \"1GiB\"",
        "memory_pools.tactic_shared_memory = \"48KiB\"",
        "compatibility.hardware = \"ampere+\"",
        "compatibility.version_compatible = true",
        "weights.refit = \"all\"",
    ] {
        changed.push(scope_with(3, "11.4.0.106", H100, extra));
    }
    changed.push(scope(4));
    changed.push(scope_with(3, "11.4.0.107", H100, ""));
    changed.push(scope_with(3, "11.4.0.106", "NVIDIA H200", ""));
    let mut mps = base.clone();
    mps.mps_percentage = None;
    changed.push(mps);
    for other in &changed {
        assert_ne!(other.registry_key(), base.registry_key(), "{other:?}");
        assert!(!base.differences(other).is_empty());
    }
    // Not timing-relevant: a different stream count or build timeout shares the cache line.
    for extra in ["max_aux_streams = 2", "build_timeout = \"5m\""] {
        assert_eq!(
            scope_with(3, "11.4.0.106", H100, extra).registry_key(),
            base.registry_key(),
            "{extra}"
        );
    }
}
