//! Soak: 50 clients submit and fetch against one daemon for `TRTFARM_SOAK_SECONDS` (default 300)
//! while build workers are SIGKILLed every few seconds and the store (a real S3 server, s3s-fs)
//! is killed once and restarted on the same port and data. At the end every job has finished or
//! failed with a reason, none is stuck, and no download was corrupt. Loopback only, bounded.
//!
//! Ignored by default (it runs for minutes):
//! `cargo build --bin trtfarmd && cargo test -p integration --test soak -- --ignored --nocapture`

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::daemon::Daemon;
use integration::farm::try_request_for;
use integration::models::{deep_cnn, images_manifest};
use integration::servers::RestartableS3;
use tonic::transport::Channel;
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

const CLIENTS: usize = 50;
/// Fixed models, each with one engine per optimization level: the variants that hit the cache.
const MODELS: u64 = 5;
const LEVELS: [u8; 4] = [0, 1, 2, 3];
/// One submit in this many builds a freshly generated model: a guaranteed miss (and an upload).
const FRESH_EVERY: u64 = 10;
/// How long the store stays down.
const OUTAGE: Duration = Duration::from_secs(10);
/// No single RPC of a client may take longer (a hang is a failure, not a slow soak).
const RPC_TIMEOUT: Duration = Duration::from_secs(120);
/// A job still queued or running this long after its submit is stuck.
const JOB_END_LIMIT: Duration = Duration::from_secs(600);

/// Everything the clients and the fault task counted.
#[derive(Default)]
struct Tally {
    submits: u64,
    cache_hits: u64,
    joined: u64,
    jobs: HashSet<u64>,
    finished: u64,
    finished_after_restart: u64,
    failed_by_kind: BTreeMap<String, u64>,
    failed_without_reason: Vec<u64>,
    submit_errors: BTreeMap<String, u64>,
    downloads_verified: u64,
    download_errors: BTreeMap<String, u64>,
    corrupt_downloads: Vec<String>,
    latencies: Vec<Duration>,
    worker_kills: u64,
    store_restarted: Option<Instant>,
    outage: Option<Duration>,
}

type Shared = Arc<Mutex<Tally>>;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// The request for `variant` of `manifest`, with its model uploaded; an upload error as its
/// gRPC code (the store may be down).
async fn request_for(
    client: &mut FarmClient<Channel>,
    manifest: &Path,
    variant: &str,
) -> Result<v1::SubmitRequest, String> {
    try_request_for(client, manifest, variant, "soak")
        .await
        .map_err(|e| match e.downcast_ref::<tonic::Status>() {
            Some(status) => code_name(status),
            None => e.to_string(),
        })
}

/// Writes `dir/engine.toml` for a deep CNN of `seed` with one engine per level.
fn project(dir: &Path, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    deep_cnn(dir, 2, 8, 16, seed);
    let engines: Vec<(String, u8)> = LEVELS.iter().map(|l| (format!("o{l}"), *l)).collect();
    let engines: Vec<(&str, u8)> = engines.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    let manifest = dir.join("engine.toml");
    std::fs::write(&manifest, images_manifest("deep.onnx", 16, &engines)).unwrap();
    manifest
}

/// The job's end: from its event stream, or by polling if the stream breaks.
async fn job_end(client: &mut FarmClient<Channel>, job_id: u64) -> v1::Job {
    if let Ok(Ok(response)) = tokio::time::timeout(
        RPC_TIMEOUT,
        client.watch_job(v1::WatchJobRequest { job_id }),
    )
    .await
    {
        let mut stream = response.into_inner();
        while let Ok(Ok(Some(_))) = tokio::time::timeout(RPC_TIMEOUT, stream.message()).await {}
    }
    let give_up = Instant::now() + JOB_END_LIMIT;
    loop {
        assert!(
            Instant::now() < give_up,
            "job {job_id} neither finished nor failed within {JOB_END_LIMIT:?}"
        );
        let job = client
            .get_job(v1::GetJobRequest { job_id })
            .await
            .unwrap_or_else(|status| panic!("job {job_id} was lost: {status}"))
            .into_inner();
        let state = v1::JobState::try_from(job.state).unwrap_or(v1::JobState::Unspecified);
        if !matches!(state, v1::JobState::Queued | v1::JobState::Running) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Downloads the blob and hashes what arrived; `Err(code)` when the daemon refused or failed.
async fn download_and_verify(
    client: &mut FarmClient<Channel>,
    digest: &v1::Digest,
) -> Result<bool, String> {
    let request = v1::DownloadBlobRequest {
        digest: Some(digest.clone()),
        offset: 0,
    };
    let mut stream = match tokio::time::timeout(RPC_TIMEOUT, client.download_blob(request)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return Err(code_name(&status)),
        Err(_) => return Err("timeout".into()),
    };
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        match tokio::time::timeout(RPC_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(chunk))) => {
                size += chunk.data.len() as u64;
                hasher.update(&chunk.data);
            }
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return Err(code_name(&status)),
            Err(_) => return Err("timeout".into()),
        }
    }
    Ok(size == digest.size_bytes && hasher.finalize().to_hex().as_str() == digest.blake3)
}

async fn verify_engine(
    client: &mut FarmClient<Channel>,
    result: &v1::ActionResult,
    tally: &Shared,
) {
    let engine = result.engine.clone().expect("a result names its engine");
    let verified = download_and_verify(client, &engine).await;
    let mut tally = tally.lock().unwrap();
    match verified {
        Ok(true) => tally.downloads_verified += 1,
        Ok(false) => tally
            .corrupt_downloads
            .push(format!("blake3:{}/{}", engine.blake3, engine.size_bytes)),
        Err(code) => *tally.download_errors.entry(code).or_default() += 1,
    }
}

/// One client: submit, follow, fetch, until the deadline.
async fn client_loop(
    id: u64,
    mut client: FarmClient<Channel>,
    fixed: Arc<Vec<v1::SubmitRequest>>,
    scratch: PathBuf,
    deadline: Instant,
    tally: Shared,
) {
    let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut fresh = 0;
    while Instant::now() < deadline {
        let roll = xorshift(&mut rng);
        let request = if roll.is_multiple_of(FRESH_EVERY) {
            fresh += 1;
            let manifest = project(&scratch.join(format!("fresh{fresh}")), 1000 * id + fresh);
            let level = LEVELS[(roll / 7) as usize % LEVELS.len()];
            match request_for(&mut client, &manifest, &format!("o{level}")).await {
                Ok(request) => request,
                Err(code) => {
                    *tally
                        .lock()
                        .unwrap()
                        .submit_errors
                        .entry(format!("upload {code}"))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        } else {
            fixed[(roll / 7) as usize % fixed.len()].clone()
        };
        let started = Instant::now();
        tally.lock().unwrap().submits += 1;
        let response = match tokio::time::timeout(RPC_TIMEOUT, client.submit(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                *tally
                    .lock()
                    .unwrap()
                    .submit_errors
                    .entry(code_name(&status))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => panic!("client {id}: a submit hung for {RPC_TIMEOUT:?}"),
        };
        match response.outcome {
            Some(v1::submit_response::Outcome::Cached(result)) => {
                {
                    let mut tally = tally.lock().unwrap();
                    tally.cache_hits += 1;
                    tally.latencies.push(started.elapsed());
                }
                verify_engine(&mut client, &result, &tally).await;
            }
            Some(v1::submit_response::Outcome::Job(job)) => {
                {
                    let mut tally = tally.lock().unwrap();
                    tally.jobs.insert(job.id);
                    tally.joined += u64::from(response.joined);
                }
                let ended = job_end(&mut client, job.id).await;
                let elapsed = started.elapsed();
                let state =
                    v1::JobState::try_from(ended.state).unwrap_or(v1::JobState::Unspecified);
                {
                    let mut tally = tally.lock().unwrap();
                    tally.latencies.push(elapsed);
                    match state {
                        v1::JobState::Succeeded => {
                            tally.finished += 1;
                            if tally.store_restarted.is_some_and(|at| at < Instant::now()) {
                                tally.finished_after_restart += 1;
                            }
                        }
                        _ => {
                            let failure = ended.failure.clone().unwrap_or_default();
                            let kind = v1::FailureKind::try_from(failure.kind)
                                .map(|k| format!("{k:?}"))
                                .unwrap_or_else(|_| format!("{state:?}"));
                            *tally.failed_by_kind.entry(kind).or_default() += 1;
                            if failure.message.trim().is_empty() {
                                tally.failed_without_reason.push(ended.id);
                            }
                        }
                    }
                }
                if let (v1::JobState::Succeeded, Some(result)) = (state, &ended.result) {
                    verify_engine(&mut client, result, &tally).await;
                }
            }
            None => panic!("client {id}: a submit with neither a result nor a job"),
        }
    }
}

/// SIGKILLs a random build worker every 2–5 s, and restarts the store once, 40 % in.
fn faults(
    daemon: &Daemon,
    store: &mut RestartableS3,
    deadline: Instant,
    run: Duration,
    tally: &Shared,
) {
    let restart_at = deadline - run + run * 2 / 5;
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next_kill = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if tally.lock().unwrap().store_restarted.is_none() && Instant::now() >= restart_at {
            let down = Instant::now();
            store.kill();
            std::thread::sleep(OUTAGE);
            store.restart();
            let mut tally = tally.lock().unwrap();
            tally.store_restarted = Some(Instant::now());
            tally.outage = Some(down.elapsed());
        }
        if Instant::now() >= next_kill {
            let workers = daemon.builders();
            if !workers.is_empty() {
                let pid = workers[xorshift(&mut rng) as usize % workers.len()];
                // SAFETY: kill(2) on a process found as this daemon's worker child.
                if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                    tally.lock().unwrap().worker_kills += 1;
                }
            }
            next_kill = Instant::now() + Duration::from_millis(2000 + xorshift(&mut rng) % 3000);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs for TRTFARM_SOAK_SECONDS (default 300); run with --ignored"]
async fn fifty_clients_survive_worker_kills_and_a_store_restart() {
    let run = Duration::from_secs(
        std::env::var("TRTFARM_SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let root = tempfile::tempdir().unwrap();
    let mut store = RestartableS3::start();
    let daemon = Daemon::start_on_store(
        &root.path().join("daemon"),
        &store.url(),
        &store.option_args(),
        &["--cpu-slots", "2"],
        &[("TRTFARMD_LOG", "error")],
    );

    let mut setup = daemon.client().await;
    let mut fixed = Vec::new();
    for seed in 1..=MODELS {
        let manifest = project(&root.path().join(format!("model{seed}")), seed);
        for level in LEVELS {
            fixed.push(
                request_for(&mut setup, &manifest, &format!("o{level}"))
                    .await
                    .unwrap(),
            );
        }
    }
    let fixed = Arc::new(fixed);
    let tally: Shared = Arc::default();
    let began = Instant::now();
    let deadline = began + run;

    let mut clients = Vec::new();
    for id in 0..CLIENTS as u64 {
        let client = daemon.client().await;
        let scratch = root.path().join(format!("client{id}"));
        clients.push(tokio::spawn(client_loop(
            id,
            client,
            Arc::clone(&fixed),
            scratch,
            deadline,
            Arc::clone(&tally),
        )));
    }
    let fault_tally = Arc::clone(&tally);
    let daemon = Arc::new(daemon);
    let fault_daemon = Arc::clone(&daemon);
    let fault_task = tokio::task::spawn_blocking(move || {
        faults(&fault_daemon, &mut store, deadline, run, &fault_tally);
        store
    });
    let _store = fault_task.await.unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let drained = began.elapsed();

    // Every job the clients saw has ended, and the daemon lists none still waiting or running.
    let mut client = daemon.client().await;
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    for &job_id in &tally.jobs {
        let job = client
            .get_job(v1::GetJobRequest { job_id })
            .await
            .unwrap()
            .into_inner();
        let state = v1::JobState::try_from(job.state).unwrap();
        assert!(
            matches!(state, v1::JobState::Succeeded | v1::JobState::Failed),
            "job {job_id} ended {state:?}"
        );
        if state == v1::JobState::Failed {
            let failure = job.failure.expect("a failed job says why");
            assert!(
                !failure.message.trim().is_empty(),
                "job {job_id}: {failure:?}"
            );
        }
    }
    let listed = client
        .list_jobs(v1::ListJobsRequest { limit: 100_000 })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let stuck: Vec<&v1::Job> = listed
        .iter()
        .filter(|j| {
            matches!(
                v1::JobState::try_from(j.state),
                Ok(v1::JobState::Queued | v1::JobState::Running)
            )
        })
        .collect();

    let mut latencies = tally.latencies.clone();
    latencies.sort();
    let failed: u64 = tally.failed_by_kind.values().sum();
    eprintln!("soak: {run:?} of load, drained after {drained:?}, {CLIENTS} clients");
    eprintln!(
        "  submits {}  cache hits {}  jobs {} (joined {})",
        tally.submits,
        tally.cache_hits,
        tally.jobs.len(),
        tally.joined
    );
    eprintln!(
        "  job outcomes seen: finished {}  failed {failed} {:?}",
        tally.finished, tally.failed_by_kind
    );
    eprintln!(
        "  finished after the store restart: {}",
        tally.finished_after_restart
    );
    eprintln!("  submit errors {:?}", tally.submit_errors);
    eprintln!(
        "  downloads verified {}  refused {:?}  corrupt {}",
        tally.downloads_verified,
        tally.download_errors,
        tally.corrupt_downloads.len()
    );
    eprintln!(
        "  submit->end latency p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    eprintln!(
        "  worker kills {}  store outage {:?}  store writes retried by the daemon {}",
        tally.worker_kills,
        tally.outage,
        daemon.metric("trtfarm_store_write_retries_total")
    );
    eprintln!(
        "  daemon lists {} jobs, {} queued or running",
        listed.len(),
        stuck.len()
    );

    assert!(
        tally.corrupt_downloads.is_empty(),
        "corrupt downloads: {:?}",
        tally.corrupt_downloads
    );
    assert!(
        tally.failed_without_reason.is_empty(),
        "failed without a reason: {:?}",
        tally.failed_without_reason
    );
    assert!(stuck.is_empty(), "jobs stuck after the drain: {stuck:?}");
    assert!(
        tally.finished > 0 && tally.downloads_verified > 0,
        "the soak did no work"
    );
    assert!(
        tally.worker_kills > 0,
        "no worker was killed: the faults proved nothing"
    );
    assert!(tally.outage.is_some(), "the store was never restarted");
    assert!(
        tally.finished_after_restart > 0,
        "no build finished after the store came back"
    );
}
