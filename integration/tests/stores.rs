//! The real daemon on real remote stores (S3 on s3s-fs, Azure Blob on Azurite): a TensorRT-RTX
//! build published by one daemon is a cache hit for a second daemon on the same bucket, and two
//! daemons racing one action key both hand their clients a valid engine; a build that finishes
//! while the store is down is published when it returns.
//!
//! Needs the servers from `scripts/setup` (`eval "$(scripts/setup --print-env)"`) and the
//! workspace's binaries (`cargo build --workspace --bins`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration::daemon::Daemon;
use integration::farm::{follow, job_of, request_for, succeeded};
use integration::models::slow_project;
use integration::servers::{RestartableS3, ServerKind, TestServer, daemon_on};
use tonic::transport::Channel;
use trtfarm::transfer::download_to_file;
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

fn cnn_manifest(examples: &Path) -> PathBuf {
    examples.join("cnn-dynamic-batch/engine.toml")
}

/// The store kind the daemon reports for a server.
fn store_kind(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::S3sFs => "s3",
        ServerKind::Azurite => "azure",
    }
}

/// Submits and returns the result: a cache hit's, or the job's once it finished.
async fn submit_and_wait(
    client: &mut FarmClient<Channel>,
    request: v1::SubmitRequest,
) -> (v1::ActionResult, bool) {
    let response = client.submit(request).await.unwrap().into_inner();
    match response.outcome {
        Some(v1::submit_response::Outcome::Cached(result)) => (result, true),
        Some(v1::submit_response::Outcome::Job(job)) => {
            (succeeded(&follow(client, job.id).await), false)
        }
        other => panic!("unexpected submit outcome {other:?}"),
    }
}

/// Fetches the engine through `client` and checks it hashes to its digest.
async fn fetch_and_check(client: &mut FarmClient<Channel>, result: &v1::ActionResult, out: &Path) {
    let engine = result.engine.as_ref().expect("an engine digest");
    download_to_file(client, engine, out).await.unwrap();
    let bytes = std::fs::read(out).unwrap();
    assert_eq!(bytes.len() as u64, engine.size_bytes);
    assert_eq!(blake3::hash(&bytes).to_hex().as_str(), engine.blake3);
}

/// Build on one daemon, fetch; a second daemon on the same bucket answers from the cache.
async fn second_daemon_hits_the_cache(kind: ServerKind) {
    let server = TestServer::start(kind);
    let examples = integration::examples_copy();
    let root = tempfile::tempdir().unwrap();

    let first = daemon_on(&root.path().join("first"), &server);
    let mut client = first.client().await;
    let capabilities = client
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capabilities.store_kind, store_kind(kind));
    let request = request_for(&mut client, &cnn_manifest(examples.path()), "fp32").await;
    let (built, cached) = submit_and_wait(&mut client, request).await;
    assert!(!cached, "{kind:?}: a fresh bucket cannot have the result");
    fetch_and_check(&mut client, &built, &root.path().join("first.engine")).await;
    assert_eq!(first.metric("trtfarm_builds_started_total"), 1.0);

    let second = daemon_on(&root.path().join("second"), &server);
    let mut client = second.client().await;
    let request = request_for(&mut client, &cnn_manifest(examples.path()), "fp32").await;
    let (hit, cached) = submit_and_wait(&mut client, request).await;
    assert!(
        cached,
        "{kind:?}: the second daemon must answer from the shared store"
    );
    assert_eq!(hit, built, "{kind:?}");
    let jobs = client
        .list_jobs(v1::ListJobsRequest { limit: 100 })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(
        jobs.is_empty(),
        "{kind:?}: the cache hit created jobs: {jobs:?}"
    );
    assert_eq!(second.metric("trtfarm_builds_started_total"), 0.0);
    assert_eq!(second.metric("trtfarm_cache_hits_total"), 1.0);
    fetch_and_check(&mut client, &hit, &root.path().join("second.engine")).await;
}

/// Two daemons on one bucket get the same request at once; both clients get a valid engine,
/// and afterwards both daemons answer with the one published result.
async fn two_daemons_race_one_key(kind: ServerKind) {
    let server = TestServer::start(kind);
    let examples = integration::examples_copy();
    let root = tempfile::tempdir().unwrap();
    let daemons = [
        daemon_on(&root.path().join("a"), &server),
        daemon_on(&root.path().join("b"), &server),
    ];
    let mut clients = [daemons[0].client().await, daemons[1].client().await];
    let manifest = cnn_manifest(examples.path());
    let requests = [
        request_for(&mut clients[0], &manifest, "fp32").await,
        request_for(&mut clients[1], &manifest, "fp32").await,
    ];
    let [mut a, mut b] = clients;
    let [request_a, request_b] = requests;
    let ((result_a, _), (result_b, _)) = tokio::join!(
        submit_and_wait(&mut a, request_a.clone()),
        submit_and_wait(&mut b, request_b)
    );
    assert_eq!(result_a.action_key, result_b.action_key, "{kind:?}");
    fetch_and_check(&mut a, &result_a, &root.path().join("a.engine")).await;
    fetch_and_check(&mut b, &result_b, &root.path().join("b.engine")).await;

    // Whoever won, the published result is one of the two, and both daemons now serve it.
    let (published_a, cached_a) = submit_and_wait(&mut a, request_a.clone()).await;
    let (published_b, cached_b) = submit_and_wait(&mut b, request_a).await;
    assert!(
        cached_a && cached_b,
        "{kind:?}: both daemons must hit the cache now"
    );
    assert_eq!(published_a, published_b, "{kind:?}");
    assert!(
        published_a == result_a || published_a == result_b,
        "{kind:?}: the published result is neither racer's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_daemon_hits_the_cache_s3() {
    second_daemon_hits_the_cache(ServerKind::S3sFs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_daemon_hits_the_cache_azure() {
    second_daemon_hits_the_cache(ServerKind::Azurite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_race_one_key_s3() {
    two_daemons_race_one_key(ServerKind::S3sFs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_race_one_key_azure() {
    two_daemons_race_one_key(ServerKind::Azurite).await;
}

/// The store goes down while a build runs and stays down past object_store's own retries: the
/// daemon keeps the plan, retries its writes, and publishes once the store is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_finishing_during_a_store_outage_is_published_when_the_store_returns() {
    let mut store = RestartableS3::start();
    let root = tempfile::tempdir().unwrap();
    // The build outlives the store's shutdown by seconds.
    let manifest = slow_project(&root.path().join("project"), 11);
    let daemon = Daemon::start_on_store(
        &root.path().join("daemon"),
        &store.url(),
        &store.option_args(),
        &[],
        &[],
    );
    let mut client = daemon.client().await;
    let request = request_for(&mut client, &manifest, "slow").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());

    daemon.wait_for_builder(Duration::from_secs(60));
    store.kill();
    assert!(
        !daemon.builders().is_empty(),
        "the build ended before the store went down: the test needs a slower model"
    );
    // The build finishes and publishing meets the outage. The store stays down until
    // object_store's own per-request retries have given up and the daemon has retried a whole
    // write, so this outage is one object_store alone would have failed the build for.
    let deadline = Instant::now() + Duration::from_secs(80);
    while daemon.metric("trtfarm_store_write_retries_total") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the daemon never retried a store write"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    store.restart();

    let result = succeeded(&follow(&mut client, job.id).await);
    fetch_and_check(&mut client, &result, &root.path().join("slow.engine")).await;
}
