//! The farm's queue on PostgreSQL against the embedded one (redb), in one run, same store
//! (s3s-fs), same tiny builds:
//!
//! - per-job queue overhead: submit → the build's `Started` event, one job at a time, p50/p90
//!   over 50 jobs: one redb daemon; one daemon on PostgreSQL; three daemons on PostgreSQL;
//! - throughput: 1,000 tiny builds (`skip_cache`, so every job is a build) submitted at once,
//!   to one redb daemon with three build slots and to three PostgreSQL daemons with one slot
//!   each, spread over them; wall time until all have ended.
//!
//! Run: `cargo bench -p integration --bench farm_queue` (after `scripts/setup`; release
//! binaries: `cargo build --release --bins` first). `TRTFARM_BENCH_JOBS` changes the 1,000.

use std::path::Path;
use std::time::{Duration, Instant};

use integration::bench::{ms, percentile, tiny_project};
use integration::daemon::Daemon;
use integration::farm::{follow, job_of, request_for, succeeded};
use integration::postgres::TestPostgres;
use integration::servers::{ServerKind, TestServer};
use tonic::transport::Channel;
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

const LATENCY_JOBS: u64 = 50;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

struct Setup {
    s3: TestServer,
    pg: TestPostgres,
    work: tempfile::TempDir,
}

impl Setup {
    fn daemon(&self, name: &str, farm: bool, slots: &str) -> Daemon {
        let url = self.pg.url();
        let mut flags = vec!["--cpu-slots", slots];
        if farm {
            flags.extend(["--queue", url.as_str()]);
        }
        Daemon::start_on_store(
            &self.work.path().join(name),
            &self.s3.url(),
            &self.s3.option_args(),
            &flags,
            &[],
        )
    }
}

/// Submit → `Started`, one job at a time, each a new key; submitted through `clients` in turn.
async fn queue_overhead(
    clients: &mut [FarmClient<Channel>],
    root: &Path,
    seeds: std::ops::Range<u64>,
) -> (Duration, Duration) {
    let mut samples = Vec::new();
    for (i, seed) in seeds.enumerate() {
        let client = &mut clients[i % 3.min(clients.len())];
        let manifest = tiny_project(root, seed);
        let request = request_for(client, &manifest, "fp32").await;
        let started = Instant::now();
        let job = job_of(&client.submit(request).await.unwrap().into_inner());
        let mut stream = client
            .watch_job(v1::WatchJobRequest { job_id: job.id })
            .await
            .unwrap()
            .into_inner();
        while let Some(event) = stream.message().await.unwrap() {
            if matches!(event.event, Some(v1::job_event::Event::Started(_))) {
                samples.push(started.elapsed());
                break;
            }
        }
        succeeded(&follow(client, job.id).await);
    }
    (percentile(&mut samples, 0.5), percentile(&mut samples, 0.9))
}

/// `jobs` builds of `request` (every one a build: `skip_cache`) submitted at once through
/// `clients` in turn; the time until every one has ended, and how many succeeded.
async fn throughput(
    clients: &mut [FarmClient<Channel>],
    request: &v1::SubmitRequest,
    jobs: usize,
) -> (Duration, usize) {
    let request = v1::SubmitRequest {
        skip_cache: true,
        ..request.clone()
    };
    // At most 100 calls in flight, as many clients would have: a thousand concurrent calls on
    // one HTTP/2 connection get it closed (seen here; not what this measures).
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    let started = Instant::now();
    let mut submits = Vec::new();
    for i in 0..jobs {
        let mut client = clients[i % clients.len()].clone();
        let request = request.clone();
        let permit = std::sync::Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .unwrap();
        submits.push(tokio::spawn(async move {
            let id = job_of(&client.submit(request).await.unwrap().into_inner()).id;
            drop(permit);
            id
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for submit in submits {
        ids.insert(submit.await.unwrap());
    }
    let client = &mut clients[0];
    loop {
        let listed = client
            .list_jobs(v1::ListJobsRequest {
                limit: (jobs * 2) as u32,
            })
            .await
            .unwrap()
            .into_inner()
            .jobs;
        let ended: Vec<_> = listed
            .iter()
            .filter(|j| ids.contains(&j.id))
            .filter(|j| {
                j.state != v1::JobState::Queued as i32 && j.state != v1::JobState::Running as i32
            })
            .collect();
        if ended.len() == ids.len() {
            let ok = ended
                .iter()
                .filter(|j| j.state == v1::JobState::Succeeded as i32)
                .count();
            return (started.elapsed(), ok);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run() {
    let jobs: usize = std::env::var("TRTFARM_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let setup = Setup {
        s3: TestServer::start(ServerKind::S3sFs),
        pg: TestPostgres::start(),
        work: tempfile::tempdir().unwrap(),
    };
    let root = setup.work.path().join("models");

    let alone = setup.daemon("redb", false, "3");
    let mut redb = vec![alone.client().await];
    let (redb_p50, redb_p90) = queue_overhead(&mut redb, &root, 0..LATENCY_JOBS).await;

    let first = setup.daemon("pg-a", true, "1");
    let mut pg_one = vec![first.client().await];
    let (pg1_p50, pg1_p90) = queue_overhead(&mut pg_one, &root, 1000..1000 + LATENCY_JOBS).await;
    let second = setup.daemon("pg-b", true, "1");
    let third = setup.daemon("pg-c", true, "1");
    let mut pg_three = vec![
        first.client().await,
        second.client().await,
        third.client().await,
    ];
    let (pg3_p50, pg3_p90) = queue_overhead(&mut pg_three, &root, 2000..2000 + LATENCY_JOBS).await;
    println!(
        "queue overhead, submit → Started, p50/p90 over {LATENCY_JOBS} jobs: redb {:.1}/{:.1} ms; \
         PostgreSQL, one daemon {:.1}/{:.1} ms ({:.2}x redb); three daemons {:.1}/{:.1} ms \
         ({:.2}x redb)",
        ms(redb_p50),
        ms(redb_p90),
        ms(pg1_p50),
        ms(pg1_p90),
        pg1_p50.as_secs_f64() / redb_p50.as_secs_f64(),
        ms(pg3_p50),
        ms(pg3_p90),
        pg3_p50.as_secs_f64() / redb_p50.as_secs_f64(),
    );

    let manifest = tiny_project(&root, 9999);
    let request = request_for(&mut redb[0], &manifest, "fp32").await;
    let (redb_time, redb_ok) = throughput(&mut redb, &request, jobs).await;
    let (pg_time, pg_ok) = throughput(&mut pg_three, &request, jobs).await;
    println!(
        "{jobs} tiny builds at once: one redb daemon, 3 slots: {:.1} s ({:.1} jobs/s, {redb_ok} \
         succeeded); three PostgreSQL daemons, 1 slot each: {:.1} s ({:.1} jobs/s, {pg_ok} \
         succeeded): {:.2}x redb's throughput",
        redb_time.as_secs_f64(),
        jobs as f64 / redb_time.as_secs_f64(),
        pg_time.as_secs_f64(),
        jobs as f64 / pg_time.as_secs_f64(),
        redb_time.as_secs_f64() / pg_time.as_secs_f64(),
    );
}
