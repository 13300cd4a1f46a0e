//! Request preparation for TensorRT Enterprise: GPU choice, MPS shares and timing caches.

use super::*;

pub(super) const ENTERPRISE: &str = r#"
schema_version = 1

[model]
path = "models/net.onnx"

[defaults]
toolchain = "tensorrt 11.4"

[[profile]]
inputs.images = { min = [1, 3, 8, 8], opt = [2, 3, 8, 8], max = [4, 3, 8, 8] }

[[engine]]
name = "h100"
compatibility.gpu = "H100"

[[engine]]
name = "a100"
compatibility.gpu = "A100"

[[engine]]
name = "l4"
compatibility.gpu = "L4"

[[engine]]
name = "shared"
compatibility.gpu = "H100"
mps_percentage = 50
"#;

/// An Enterprise toolchain and a made-up set of GPUs: H100, A100, H100.
fn gpu_inventory(mps: crate::gpus::MpsState) -> Inventory {
    let mut inventory = Inventory::from_rows(vec![ToolchainRow {
        flavour: "tensorrt".parse().unwrap(),
        version: Some("11.4.0.7".parse().unwrap()),
        library: Some(PathBuf::from("/opt/trt/libnvinfer.so.11")),
        library_digest: Some(trtfarm_types::Blake3Digest([0xab; 32])),
        parser_library: Some(PathBuf::from("/opt/trt/libnvonnxparser.so.11")),
        parser_library_digest: Some(trtfarm_types::Blake3Digest([0xef; 32])),
        stamps: Default::default(),
        error: None,
    }]);
    inventory.gpus = crate::gpus::testing::fake_gpu_set(
        &[
            ("NVIDIA H100 80GB HBM3", "9.0"),
            ("NVIDIA A100-SXM4-80GB", "8.0"),
            ("NVIDIA H100 80GB HBM3", "9.0"),
        ],
        mps,
    );
    inventory
}

fn no_mps() -> crate::gpus::MpsState {
    crate::gpus::MpsState::Off {
        reason: "this daemon runs with gpu.mps = \"off\"".into(),
    }
}

fn enterprise(variant: &str) -> v1::SubmitRequest {
    v1::SubmitRequest {
        variant: variant.into(),
        ..request(ENTERPRISE, vec![model()])
    }
}

#[test]
fn an_enterprise_build_may_run_on_any_gpu_of_its_model_and_is_keyed_by_it() {
    let inventory = gpu_inventory(no_mps());
    let h100 = prepare(enterprise("h100"), &inventory, &policy()).unwrap();
    assert_eq!(
        h100.target,
        Target::Gpu {
            model: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: "9.0".parse().unwrap(),
        }
    );
    assert_eq!(h100.gpu_candidates, vec![0, 2]);
    assert_eq!(h100.target_text(), "NVIDIA H100 80GB HBM3/9.0");
    let a100 = prepare(enterprise("a100"), &inventory, &policy()).unwrap();
    assert_eq!(a100.gpu_candidates, vec![1]);
    assert_ne!(h100.key, a100.key);
}

#[test]
fn an_enterprise_build_no_gpu_here_can_serve_fails_at_submit() {
    let status = prepare(enterprise("l4"), &gpu_inventory(no_mps()), &policy()).unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("engine `l4`: the engine asks for compatibility.gpu = \"L4\""),
        "{}",
        status.message()
    );
    assert_eq!(refused_setting(&status), Some("compatibility.gpu"));
    let mut no_gpus = gpu_inventory(no_mps());
    no_gpus.gpus = crate::gpus::testing::fake_gpu_set(&[], no_mps());
    let status = prepare(enterprise("h100"), &no_gpus, &policy()).unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("has no GPU"),
        "{}",
        status.message()
    );
}

#[test]
fn an_mps_limit_needs_mps_and_changes_the_key() {
    let status = prepare(enterprise("shared"), &gpu_inventory(no_mps()), &policy()).unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("mps_percentage = 50"),
        "{}",
        status.message()
    );
    assert_eq!(refused_setting(&status), Some("mps_percentage"));
    let with_mps = gpu_inventory(crate::gpus::MpsState::Running {
        pipe_dir: "/tmp/trtfarm-mps-0123456789abcdef".into(),
        owned: true,
    });
    let shared = prepare(enterprise("shared"), &with_mps, &policy()).unwrap();
    let whole = prepare(enterprise("h100"), &with_mps, &policy()).unwrap();
    assert_eq!(shared.gpu_candidates, whole.gpu_candidates);
    assert_ne!(shared.key, whole.key);
}

/// `ENTERPRISE` with an H100 engine `locked` to a timing cache.
fn locked_request(inputs: Vec<v1::InputFile>, pin: Option<v1::Digest>) -> v1::SubmitRequest {
    let toml = format!(
        "{ENTERPRISE}\n[[engine]]\nname = \"locked\"\ncompatibility.gpu = \"H100\"\n\
         timing_cache.policy = \"locked\"\n"
    );
    v1::SubmitRequest {
        variant: "locked".into(),
        timing_cache: pin,
        ..request(&toml, inputs)
    }
}

/// A registry holding two recorded versions of `locked`'s scope, oldest first.
async fn registry_with_two_versions() -> (
    crate::timing_cache::TimingCacheRegistry,
    [trtfarm_store::BlobDigest; 2],
) {
    let registry = crate::timing_cache::TimingCacheRegistry::new(
        trtfarm_store::open("memory://", &[]).unwrap(),
    );
    let prepared = prepare(
        locked_request(vec![model()], None),
        &gpu_inventory(no_mps()),
        &policy(),
    )
    .unwrap();
    let scope = prepared
        .timing_scope
        .expect("a locked Enterprise build has a scope");
    let dir = tempfile::tempdir().unwrap();
    let mut versions = Vec::new();
    for bytes in [b"first".as_slice(), b"second"] {
        let file = dir.path().join("cache");
        std::fs::write(&file, bytes).unwrap();
        let plan = crate::timing_cache::PublishPlan {
            scope: scope.clone(),
            parent: None,
        };
        let by = trtfarm_store::ActionKey([1; 32]);
        versions.push(registry.publish(&plan, &file, &by, 0).await.unwrap().digest);
    }
    (registry, [versions[0], versions[1]])
}

async fn resolved(
    request: v1::SubmitRequest,
    registry: &crate::timing_cache::TimingCacheRegistry,
) -> Result<PreparedBuild, Status> {
    let mut prepared = prepare(request, &gpu_inventory(no_mps()), &policy())?;
    crate::ingest::timing::resolve_timing_cache(&mut prepared, registry, &policy()).await?;
    Ok(prepared)
}

#[tokio::test]
async fn the_loaded_timing_cache_decides_the_key_and_every_later_preparation_agrees() {
    let (registry, [first, second]) = registry_with_two_versions().await;
    let pinned = |d: &trtfarm_store::BlobDigest| Some(v1::Digest::from(d));
    let on_first = resolved(locked_request(vec![model()], pinned(&first)), &registry)
        .await
        .unwrap();
    let on_second = resolved(locked_request(vec![model()], pinned(&second)), &registry)
        .await
        .unwrap();
    assert_eq!(on_first.timing_cache_load(), Some(first));
    assert_ne!(on_first.key, on_second.key);
    assert!(
        on_first.input_digests().contains(&first),
        "the cache is an input"
    );

    // No pin: the newest, written into the request, so the daemon that prepares it again
    // (after a restart, or claiming it in a farm) loads the same cache under the same key.
    let newest = resolved(locked_request(vec![model()], None), &registry)
        .await
        .unwrap();
    assert_eq!(newest.timing_cache_load(), Some(second));
    assert_eq!(newest.key, on_second.key);
    let again = resolved(newest.request.clone(), &registry).await.unwrap();
    assert_eq!(again.key, newest.key);
}

#[tokio::test]
async fn a_stale_pin_and_an_input_in_the_caches_place_are_refused() {
    let (registry, [first, _]) = registry_with_two_versions().await;
    // The lock pins a cache, but the engine uses none.
    let off = v1::SubmitRequest {
        variant: "h100".into(),
        timing_cache: Some(v1::Digest::from(&first)),
        ..request(ENTERPRISE, vec![model()])
    };
    let status = resolved(off, &registry).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("team/engine.toml: engine `h100`")
            && status.message().contains("the lock is stale"),
        "{}",
        status.message()
    );
    assert_eq!(refused_setting(&status), Some("timing_cache.policy"));
    // An external-data file where the builder reads the cache from.
    let clash = input("timing-cache.bin", 9, v1::InputRole::ExternalData);
    let status = resolved(locked_request(vec![model(), clash], None), &registry)
        .await
        .unwrap_err();
    assert!(
        status.message().contains("`timing-cache.bin`") && status.message().contains("rename"),
        "{}",
        status.message()
    );
}
