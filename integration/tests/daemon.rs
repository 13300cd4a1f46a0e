//! The real daemon on loopback with a `file://` store, driven through the generated gRPC
//! client: real TensorRT-RTX builds, cache hits, single-flight, cancellation, failures, crashes,
//! restarts and corruption.

use std::path::Path;

use integration::daemon::Daemon;
use integration::farm::{follow, job_of, outcome, request_for, succeeded};
use integration::models::images_manifest;
use trtfarm::transfer::download_to_file;
use trtfarm_proto::v1;

fn examples() -> tempfile::TempDir {
    integration::examples_copy()
}

fn cnn_manifest(examples: &Path) -> std::path::PathBuf {
    examples.join("cnn-dynamic-batch/engine.toml")
}

fn blob_path(store: &Path, digest: &v1::Digest) -> std::path::PathBuf {
    store
        .join("cas/blake3")
        .join(&digest.blake3[..2])
        .join(&digest.blake3)
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_a_real_engine_then_answers_from_the_cache() {
    let examples = examples();
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;

    let capabilities = client
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let rtx = capabilities
        .toolchains
        .iter()
        .find(|t| t.flavour == "tensorrt-rtx")
        .expect("the RTX toolchain is listed");
    assert!(rtx.version.starts_with("1.7"), "{rtx:?}");
    assert_eq!(capabilities.store_kind, "file");

    let request = request_for(&mut client, &cnn_manifest(examples.path()), "fp32").await;
    // A dry run resolves the key and the toolchain and creates nothing.
    let resolved = client
        .submit(v1::SubmitRequest {
            dry_run: true,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resolved.outcome.is_none(),
        "nothing is cached or queued yet"
    );
    assert_eq!(resolved.target, "sm86,sm89");
    assert_eq!(resolved.toolchain.as_ref().unwrap().version, rtx.version);
    let first = client.submit(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.action_key, resolved.action_key);
    let job = job_of(&first);
    let events = follow(&mut client, job.id).await;
    let result = succeeded(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, Some(v1::job_event::Event::Progress(_)))),
        "TensorRT's progress reached the client"
    );
    assert_eq!(result.action_key, first.action_key);
    let engine = result.engine.clone().expect("an engine digest");
    assert!(engine.size_bytes > 0);
    assert!(!result.layer_info_unavailable.is_empty() || result.layer_info.is_some());

    // The engine is fetchable and is what the digest says.
    let out = root.path().join("fetched.engine");
    download_to_file(&mut client, &engine, &out).await.unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(blake3::hash(&bytes).to_hex().as_str(), engine.blake3);

    // The provenance names the engine with both digests.
    let provenance_digest = result.provenance.clone().expect("a provenance record");
    let provenance_path = root.path().join("provenance.json");
    download_to_file(&mut client, &provenance_digest, &provenance_path)
        .await
        .unwrap();
    let statement: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&provenance_path).unwrap()).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["digest"]["blake3"], engine.blake3);
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        result.engine_sha256
    );
    assert_eq!(statement["predicate"]["actionKey"], first.action_key);

    // Same request again: the stored result, no job, no build.
    let second = client.submit(request).await.unwrap().into_inner();
    match second.outcome {
        Some(v1::submit_response::Outcome::Cached(cached)) => assert_eq!(cached, result),
        other => panic!("expected a cache hit, got {other:?}"),
    }
    let jobs = client
        .list_jobs(v1::ListJobsRequest { limit: 100 })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 1, "the cache hit created no job");
    assert_eq!(daemon.metric("trtfarm_builds_started_total"), 1.0);
    assert_eq!(daemon.metric("trtfarm_cache_hits_total"), 1.0);
    // Metrics need no token: they count, and name nothing a job is made of.
    let text = daemon.metrics_text();
    let manifest = cnn_manifest(examples.path());
    for private in [
        engine.blake3.as_str(),
        first.action_key.as_str(),
        &manifest.display().to_string(),
        "engine.toml",
        &root.path().display().to_string(),
    ] {
        assert!(!text.contains(private), "/metrics names {private}:\n{text}");
    }

    // Standard health checking answers for the service.
    assert_eq!(
        daemon.health().await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    // SIGTERM drains and exits cleanly, removing the info file.
    let mut daemon = daemon;
    assert!(daemon.state_dir.join("daemon.json").is_file());
    assert!(daemon.terminate().success());
    assert!(!daemon.state_dir.join("daemon.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_blob_is_refused_and_never_served() {
    let examples = examples();
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let request = request_for(&mut client, &cnn_manifest(examples.path()), "fp32").await;
    let job = job_of(&client.submit(request.clone()).await.unwrap().into_inner());
    let result = succeeded(&follow(&mut client, job.id).await);
    let engine = result.engine.clone().unwrap();

    // Flip one byte of the stored engine.
    let path = blob_path(&daemon.store_dir, &engine);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let out = root.path().join("corrupt.engine");
    let error = download_to_file(&mut client, &engine, &out)
        .await
        .expect_err("a corrupt blob must not download");
    let status = error
        .downcast_ref::<tonic::Status>()
        .expect("the daemon refused it");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status}");
    assert!(!out.exists(), "nothing is left where the engine would go");
    assert!(!path.exists(), "the corrupt blob left the CAS");
    assert!(
        daemon
            .store_dir
            .join("quarantine/blake3")
            .read_dir()
            .unwrap()
            .count()
            == 1,
        "it was quarantined"
    );
    // The action result now names a missing blob: a miss, so the engine is rebuilt.
    let again = client.submit(request).await.unwrap().into_inner();
    let job = job_of(&again);
    let rebuilt = succeeded(&follow(&mut client, job.id).await);
    assert_eq!(
        rebuilt.engine,
        Some(engine),
        "the rebuild gives the same bytes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_identical_submits_build_once() {
    let examples = examples();
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let request = request_for(
        &mut client,
        &examples.path().join("segmenter-dynamic-hw/engine.toml"),
        "fp32",
    )
    .await;
    let submits = (0..20).map(|_| {
        let mut client = client.clone();
        let request = request.clone();
        tokio::spawn(async move { client.submit(request).await.unwrap().into_inner() })
    });
    let responses = futures_join(submits).await;
    let mut engines = std::collections::HashSet::new();
    for response in &responses {
        let result = match &response.outcome {
            Some(v1::submit_response::Outcome::Cached(result)) => result.clone(),
            Some(v1::submit_response::Outcome::Job(job)) => {
                succeeded(&follow(&mut client, job.id).await)
            }
            None => panic!("empty response"),
        };
        engines.insert(result.engine.unwrap().blake3);
    }
    assert_eq!(engines.len(), 1, "every submitter got the same engine");
    assert_eq!(
        daemon.metric("trtfarm_builds_started_total"),
        1.0,
        "twenty submits, one build"
    );
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_model_fails_with_trtfarms_check_and_its_log_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    // A real model cut in half: the ONNX parser must say so.
    let examples = examples();
    let whole = std::fs::read(examples.path().join("cnn-dynamic-batch/classifier.onnx")).unwrap();
    std::fs::write(project.join("broken.onnx"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(
        project.join("engine.toml"),
        images_manifest("broken.onnx", 32, &[("fp32", 3)]),
    )
    .unwrap();
    let daemon = Daemon::start(&root.path().join("daemon"), &[]);
    let mut client = daemon.client().await;
    let request = request_for(&mut client, &project.join("engine.toml"), "fp32").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    let events = follow(&mut client, job.id).await;
    match outcome(&events) {
        v1::job_event::Event::Failed(failure) => {
            assert_eq!(failure.kind, v1::FailureKind::Build as i32, "{failure:?}");
            assert!(
                failure.message.to_lowercase().contains("pars"),
                "the parser's message reaches the client: {}",
                failure.message
            );
            let log = failure
                .build_log
                .clone()
                .expect("the failed build's log is kept");
            let path = root.path().join("failed.log");
            trtfarm::transfer::download_to_file(&mut client, &log, &path)
                .await
                .unwrap();
            assert!(std::fs::read_to_string(&path).unwrap().contains("[error]"));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // The daemon is fine.
    client
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_right_codes() {
    let examples = examples();
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let manifest = cnn_manifest(examples.path());
    let request = request_for(&mut client, &manifest, "fp32").await;

    let mut unknown_variant = request.clone();
    unknown_variant.variant = "fp64".into();
    let status = client.submit(unknown_variant).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("fp32"), "{}", status.message());

    let mut broken_manifest = request.clone();
    broken_manifest
        .manifest
        .as_mut()
        .unwrap()
        .toml
        .push_str("\n[surprise]\n");
    let status = client.submit(broken_manifest).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("engine.toml:"),
        "{}",
        status.message()
    );

    let mut missing_blob = request.clone();
    missing_blob.inputs[0].digest = Some(v1::Digest {
        blake3: "ab".repeat(32),
        size_bytes: 10,
    });
    let status = client.submit(missing_blob).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let status = client
        .get_job(v1::GetJobRequest { job_id: 999 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn fp16_builds_from_a_converted_model_that_can_be_fetched() {
    use prost::Message;
    let examples = examples();
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let manifest = examples.path().join("precision-fanout/engine.toml");
    let fp32 = request_for(&mut client, &manifest, "fp32-sm86").await;
    let fp16 = request_for(&mut client, &manifest, "fp16-sm86").await;
    let fp32_job = job_of(&client.submit(fp32).await.unwrap().into_inner());
    let fp32_result = succeeded(&follow(&mut client, fp32_job.id).await);
    assert!(
        fp32_result.transformed_model.is_none(),
        "fp32 builds the model as it is"
    );
    let fp16_job = job_of(&client.submit(fp16).await.unwrap().into_inner());
    let events = follow(&mut client, fp16_job.id).await;
    let fp16_result = succeeded(&events);
    assert_ne!(fp16_result.engine, fp32_result.engine);
    assert!(
        events.iter().any(|e| matches!(&e.event,
            Some(v1::job_event::Event::Log(line)) if line.text.contains("trtfarm autocast to fp16"))),
        "the conversion is reported in the build log"
    );
    let converted = fp16_result
        .transformed_model
        .clone()
        .expect("the converted model is kept");
    let path = root.path().join("converted.onnx");
    download_to_file(&mut client, &converted, &path)
        .await
        .unwrap();
    let model =
        onnx_graph::proto::ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let float16 = onnx_graph::DataType::Float16 as i32;
    let float = onnx_graph::DataType::Float as i32;
    let halves = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(float16))
        .count();
    assert!(halves > 0, "weights are fp16");
    assert!(
        graph.initializer.iter().all(|t| t.data_type != Some(float)),
        "no fp32 weight is left in this model (it has no numerically sensitive op)"
    );
}

/// `precision = "fp16"` must mean fp16 layers. TensorRT-RTX cannot inspect a plan without a GPU
/// it supports, but its builder lists the engine's layers, with their tensors' data types,
/// while it builds: the daemon publishes that listing and the count of layers per precision.
/// The plan's size agrees: TensorRT keeps a strongly typed network's weights in their own
/// type, so a weight-heavy model built at fp16 (after autocast) gives a plan smaller than the
/// fp32 one by about half its weight bytes. An fp16 request built as fp32 would fail both.
#[tokio::test(flavor = "multi_thread")]
async fn an_fp16_build_has_half_precision_layers_and_weights_and_fp32_has_none() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    // A 3→256 convolution and three of 256×256×3×3: 7.1 MB of fp32 weights, far more than the
    // kernels and the rest of the plan.
    let model = integration::models::deep_cnn(&project, 3, 256, 8, 7);
    let weight_bytes = (3 * 256 * 9 + 3 * 256 * 256 * 9) as u64 * 4;
    let mut manifest = images_manifest("deep.onnx", 8, &[("fp32", 3), ("fp16", 3)]);
    manifest = manifest.replace(
        "name = \"fp16\"\n",
        "name = \"fp16\"\nprecision = \"fp16\"\n",
    );
    let manifest_path = project.join("engine.toml");
    std::fs::write(&manifest_path, manifest).unwrap();
    assert!(std::fs::metadata(&model).unwrap().len() > weight_bytes);

    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let mut results = Vec::new();
    for variant in ["fp32", "fp16"] {
        let request = request_for(&mut client, &manifest_path, variant).await;
        let job = job_of(&client.submit(request).await.unwrap().into_inner());
        let result = succeeded(&follow(&mut client, job.id).await);
        let listing = result.layer_listing.clone().expect("a layer listing");
        let path = root.path().join(format!("{variant}.layers.txt"));
        download_to_file(&mut client, &listing, &path)
            .await
            .unwrap();
        let listing = std::fs::read_to_string(&path).unwrap();
        eprintln!(
            "{variant}: plan {} B, layers: {}",
            result.engine.as_ref().unwrap().size_bytes,
            result.precision_summary().unwrap_or_default()
        );
        results.push((result, listing));
    }
    let count = |result: &v1::ActionResult, precision: &str| {
        result
            .layers_by_precision
            .get(precision)
            .copied()
            .unwrap_or(0)
    };
    let (fp32, fp32_listing) = &results[0];
    let (fp16, fp16_listing) = &results[1];
    assert!(count(fp32, "fp32") > 0, "{:?}", fp32.layers_by_precision);
    assert_eq!(count(fp32, "fp16"), 0, "{:?}", fp32.layers_by_precision);
    assert!(!fp32_listing.contains("Datatype: Half"), "{fp32_listing}");
    // Every weighted layer of this model converts (it has no numerically sensitive op).
    let layers: u64 = fp16.layers_by_precision.values().sum();
    assert!(
        count(fp16, "fp16") * 2 > layers,
        "most layers of the fp16 engine are fp16: {:?}",
        fp16.layers_by_precision
    );
    assert!(fp16_listing.contains("Datatype: Half"), "{fp16_listing}");

    let (fp32, fp16) = (
        fp32.engine.as_ref().unwrap().size_bytes,
        fp16.engine.as_ref().unwrap().size_bytes,
    );
    eprintln!("plan sizes: fp32 {fp32} B, fp16 {fp16} B, fp32 weights {weight_bytes} B");
    assert!(
        fp32 - fp16.min(fp32) > weight_bytes * 4 / 10,
        "the fp16 plan ({fp16} B) should be smaller than the fp32 plan ({fp32} B) by about half \
         of the {weight_bytes} B of weights"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_on_its_own_is_a_farm_of_one() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let farm = client
        .get_farm(v1::GetFarmRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(farm.queue, "embedded");
    assert_eq!(farm.daemons.len(), 1, "{farm:?}");
    let me = &farm.daemons[0];
    assert_eq!(me.endpoint, daemon.endpoint);
    assert!(me.live && me.started_at_ms > 0 && me.heartbeat_at_ms >= me.started_at_ms);
    assert!(!me.toolchains.is_empty(), "{me:?}");
}
