//! The registry over a real (in-memory) store: versions per scope, version records, refusals
//! across scopes, and a plan made from what it holds.

use manifest_schema::TimingCachePolicy;

use super::*;
use crate::timing_cache::policy::{PolicyRequest, RegistryView, plan};
use crate::timing_cache::scope::TimingSettings;

fn scope(gpu: &str) -> TimingCacheScope {
    TimingCacheScope {
        flavour: "tensorrt".into(),
        toolchain_version: "11.4.0.106".into(),
        library_digest: "ab".repeat(32),
        gpu_model: gpu.into(),
        compute_capability: "9.0".parse().unwrap(),
        mps_percentage: Some(50),
        settings: TimingSettings {
            precision: "fp16".into(),
            optimization_level: 4,
            avg_timing_iterations: 4,
            tactic_sources: None,
            tiling: "none".into(),
            workspace: Some(2 << 30),
            tactic_dram: None,
            tactic_shared_memory: None,
            hardware: "none".into(),
            version_compatible: false,
            refit: "none".into(),
        },
    }
}

fn registry() -> TimingCacheRegistry {
    TimingCacheRegistry::new(trtfarm_store::open("memory://", &[]).unwrap())
}

fn cache_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn publish_plan(scope: &TimingCacheScope, parent: Option<BlobDigest>) -> PublishPlan {
    PublishPlan {
        scope: scope.clone(),
        parent,
    }
}

#[test]
fn a_scope_is_stored_as_json_with_the_compute_capability_as_text() {
    // The stored form (and so every registry key): the compute capability is the string it
    // was before the field had a type.
    let h100 = scope("NVIDIA H100 80GB HBM3");
    let json = serde_json::to_string(&h100).unwrap();
    let expected = format!(
        concat!(
            r#"{{"flavour":"tensorrt","toolchain_version":"11.4.0.106","library_digest":"{}","#,
            r#""gpu_model":"NVIDIA H100 80GB HBM3","compute_capability":"9.0","mps_percentage":50,"#,
            r#""settings":{{"precision":"fp16","optimization_level":4,"avg_timing_iterations":4,"#,
            r#""tactic_sources":null,"tiling":"none","workspace":2147483648,"tactic_dram":null,"#,
            r#""tactic_shared_memory":null,"hardware":"none","version_compatible":false,"#,
            r#""refit":"none"}}}}"#
        ),
        "ab".repeat(32)
    );
    assert_eq!(json, expected);
    assert_eq!(
        serde_json::from_str::<TimingCacheScope>(&json).unwrap(),
        h100
    );
    let bad = json.replace(r#""9.0""#, r#""9""#);
    let error = serde_json::from_str::<TimingCacheScope>(&bad).unwrap_err();
    assert!(
        error.to_string().contains("not a compute capability"),
        "{error}"
    );
}

#[tokio::test]
async fn versions_accumulate_per_scope_and_resolve_by_digest() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let h100 = scope("NVIDIA H100 80GB HBM3");
    assert!(registry.versions(&h100).await.unwrap().is_empty());

    let by = ActionKey([7; 32]);
    let first = registry
        .publish(
            &publish_plan(&h100, None),
            &cache_file(&dir, "a", b"one"),
            &by,
            1,
        )
        .await
        .unwrap();
    let second = registry
        .publish(
            &publish_plan(&h100, Some(first.digest)),
            &cache_file(&dir, "b", b"two"),
            &by,
            2,
        )
        .await
        .unwrap();
    let versions = registry.versions(&h100).await.unwrap();
    assert_eq!(versions, vec![first.clone(), second.clone()]);
    assert_eq!(second.parent, Some(first.digest));
    assert_eq!(second.recorded_by, by.hex());
    assert_eq!(
        registry.version(&first.digest).await.unwrap(),
        Some(first.clone())
    );

    // Publishing the same bytes again adds nothing.
    registry
        .publish(
            &publish_plan(&h100, None),
            &cache_file(&dir, "c", b"one"),
            &by,
            3,
        )
        .await
        .unwrap();
    assert_eq!(registry.versions(&h100).await.unwrap().len(), 2);

    // Another GPU has its own, empty line.
    assert!(
        registry
            .versions(&scope("NVIDIA H200"))
            .await
            .unwrap()
            .is_empty()
    );

    // A locked build without a pin gets the newest, and reports it for the lock.
    let chosen = plan(&PolicyRequest {
        policy: TimingCachePolicy::Locked,
        scope: &h100,
        pinned: None,
        registry: RegistryView {
            versions: &versions,
            pinned_record: None,
        },
    })
    .unwrap();
    assert_eq!(chosen.load, Some(second.digest));
    assert!(chosen.pin.unwrap().newly_chosen);
}

#[tokio::test]
async fn caches_of_another_gpu_are_never_merged() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let by = ActionKey([1; 32]);
    let h100 = scope("NVIDIA H100 80GB HBM3");
    let h200 = scope("NVIDIA H200");
    let recorded = registry
        .publish(
            &publish_plan(&h100, None),
            &cache_file(&dir, "a", b"h100"),
            &by,
            1,
        )
        .await
        .unwrap();

    // Recording on the H200 on top of the H100's cache is refused...
    let error = registry
        .publish(
            &publish_plan(&h200, Some(recorded.digest)),
            &cache_file(&dir, "b", b"h200"),
            &by,
            2,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::Refused(_)), "{error}");
    // ...and so is filing the H100's bytes under the H200.
    let error = registry
        .publish(
            &publish_plan(&h200, None),
            &cache_file(&dir, "c", b"h100"),
            &by,
            3,
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("never merged"), "{error}");
    assert!(registry.versions(&h200).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_damaged_record_is_reported_not_trusted() {
    let store = trtfarm_store::open("memory://", &[]).unwrap();
    let registry = TimingCacheRegistry::new(std::sync::Arc::clone(&store));
    let h100 = scope("NVIDIA H100 80GB HBM3");
    store
        .put_action_result(&h100.registry_key(), Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let error = registry.versions(&h100).await.unwrap_err();
    assert!(matches!(error, RegistryError::Damaged { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recordings_that_finish_together_all_stay_listed() {
    // A store on disk: its reads and writes yield, so unserialised updates would interleave.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let registry = TimingCacheRegistry::new(trtfarm_store::open(&url, &[]).unwrap());
    let h100 = scope("NVIDIA H100 80GB HBM3");
    let recordings = (0..16u8).map(|n| {
        let registry = registry.clone();
        let plan = publish_plan(&h100, None);
        let file = cache_file(&dir, &format!("cache-{n}"), &[n; 64]);
        tokio::spawn(async move {
            registry
                .publish(&plan, &file, &ActionKey([n; 32]), i64::from(n))
                .await
                .unwrap()
        })
    });
    let mut published: Vec<BlobDigest> = Vec::new();
    for recording in recordings.collect::<Vec<_>>() {
        published.push(recording.await.unwrap().digest);
    }
    let mut listed: Vec<BlobDigest> = (registry.versions(&h100).await.unwrap())
        .into_iter()
        .map(|v| v.digest)
        .collect();
    listed.sort_by_key(|d| d.hex());
    published.sort_by_key(|d| d.hex());
    assert_eq!(listed, published);
}
