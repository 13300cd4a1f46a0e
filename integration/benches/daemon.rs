//! Daemon benchmark, every number next to a baseline taken in the same run:
//!
//! - cache-hit round trip: `Submit` of an already-built request, p50/p99 over 1000 calls;
//! - per-job overhead: submit→finished of a tiny build through the daemon, p50 over 200
//!   different models one after another, against `trtfarmd build` of the same kind of model in
//!   a fresh process (what a user would run without the farm);
//! - queue throughput: the same 200 builds submitted at once;
//! - blob transfer: upload and download of a 1 GiB file against `cp` of the same file, and the
//!   daemon's peak RSS (VmHWM) after the transfers.
//!
//! Run: `cargo bench -p integration --bench daemon` (after `scripts/setup`; needs the binaries:
//! `cargo build --release --bins` first when benchmarking release builds).

use std::process::Command;
use std::time::{Duration, Instant};

use integration::bench::{ms, percentile, tiny_project};
use integration::daemon::Daemon;
use integration::farm::{follow, job_of, request_for, succeeded};
use trtfarm::transfer::{digest_file, download_to_file, upload_file};
use trtfarm_proto::v1;

const TINY_JOBS: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("daemon"), &["--cpu-slots", "1"]);
    let mut client = daemon.client().await;

    // Cache-hit round trip.
    let manifest = tiny_project(work.path(), 0);
    let request = request_for(&mut client, &manifest, "fp32").await;
    let job = job_of(&client.submit(request.clone()).await.unwrap().into_inner());
    succeeded(&follow(&mut client, job.id).await);
    let mut hits = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let started = Instant::now();
        let response = client.submit(request.clone()).await.unwrap().into_inner();
        hits.push(started.elapsed());
        assert!(matches!(
            response.outcome,
            Some(v1::submit_response::Outcome::Cached(_))
        ));
    }
    let hit_p50 = percentile(&mut hits, 0.5);
    let hit_p99 = percentile(&mut hits, 0.99);
    println!(
        "cache-hit Submit round trip: p50 {:.3} ms, p99 {:.3} ms (1000 calls)",
        ms(hit_p50),
        ms(hit_p99)
    );

    // Baseline: the same kind of build in a fresh `trtfarmd build` process.
    let mut direct = Vec::new();
    for seed in 1..=10 {
        let manifest = tiny_project(&work.path().join("direct"), seed);
        let mut command = Command::new(integration::binary("trtfarmd"));
        command.arg("build").arg(&manifest);
        if let Some(dir) = std::env::var_os("TRTFARM_RTX_LIB_DIR") {
            command.arg("--lib-dir").arg(dir);
        }
        let started = Instant::now();
        let output = command.output().unwrap();
        direct.push(started.elapsed());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let direct_p50 = percentile(&mut direct, 0.5);

    // Through the daemon, one at a time.
    let mut requests = Vec::new();
    for seed in 100..100 + TINY_JOBS as u64 {
        let manifest = tiny_project(work.path(), seed);
        requests.push(request_for(&mut client, &manifest, "fp32").await);
    }
    let mut farm = Vec::new();
    for request in requests.iter().take(TINY_JOBS / 2) {
        let started = Instant::now();
        let job = job_of(&client.submit(request.clone()).await.unwrap().into_inner());
        succeeded(&follow(&mut client, job.id).await);
        farm.push(started.elapsed());
    }
    let farm_p50 = percentile(&mut farm, 0.5);
    println!(
        "tiny build, submit→finished through the daemon: p50 {:.1} ms over {} jobs; `trtfarmd build` in a fresh process: p50 {:.1} ms over {}; overhead {:+.1} ms per job (ratio {:.2})",
        ms(farm_p50),
        farm.len(),
        ms(direct_p50),
        direct.len(),
        ms(farm_p50) - ms(direct_p50),
        farm_p50.as_secs_f64() / direct_p50.as_secs_f64()
    );

    // All at once: the queue's throughput with one build slot.
    let started = Instant::now();
    let mut ids = Vec::new();
    for request in requests.iter().skip(TINY_JOBS / 2) {
        ids.push(job_of(&client.submit(request.clone()).await.unwrap().into_inner()).id);
    }
    let queued_in = started.elapsed();
    for id in ids.iter() {
        succeeded(&follow(&mut client, *id).await);
    }
    let total = started.elapsed();
    println!(
        "{} builds submitted at once: all queued in {:.1} ms, all finished in {:.2} s = {:.1} ms per job with one slot (sequential p50 above: {:.1} ms)",
        ids.len(),
        ms(queued_in),
        total.as_secs_f64(),
        ms(total) / ids.len() as f64,
        ms(farm_p50)
    );

    // 1 GiB blob.
    let blob = work.path().join("blob.bin");
    integration::write_pseudo_random(&blob, 1 << 30);
    let copy = work.path().join("blob.cp");
    let started = Instant::now();
    let status = Command::new("cp").arg(&blob).arg(&copy).status().unwrap();
    let cp_time = started.elapsed();
    assert!(status.success());
    std::fs::remove_file(&copy).unwrap();
    let started = Instant::now();
    let digest = digest_file(&blob).unwrap();
    let hash_time = started.elapsed();
    let started = Instant::now();
    assert!(upload_file(&mut client, &blob, &digest).await.unwrap());
    let upload_time = started.elapsed();
    let fetched = work.path().join("blob.fetched");
    let started = Instant::now();
    download_to_file(&mut client, &digest, &fetched)
        .await
        .unwrap();
    let download_time = started.elapsed();
    let gib = |d: Duration| 1.0 / d.as_secs_f64();
    println!(
        "1 GiB blob: cp {:.2} s ({:.2} GiB/s); client blake3 {:.2} s; upload {:.2} s ({:.2} GiB/s, {:.2}x cp); download {:.2} s ({:.2} GiB/s, {:.2}x cp)",
        cp_time.as_secs_f64(),
        gib(cp_time),
        hash_time.as_secs_f64(),
        upload_time.as_secs_f64(),
        gib(upload_time),
        upload_time.as_secs_f64() / cp_time.as_secs_f64(),
        download_time.as_secs_f64(),
        gib(download_time),
        download_time.as_secs_f64() / cp_time.as_secs_f64(),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: unknown");
    println!(
        "daemon peak RSS over the whole run ({peak}) — the 1 GiB blob is never held in memory"
    );
}
