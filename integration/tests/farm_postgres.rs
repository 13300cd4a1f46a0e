//! A farm of three real daemons sharing one PostgreSQL (started here with `initdb` on a
//! loopback port) and one S3 store (s3s-fs): routing by toolchain, single flight across the
//! farm, a killed daemon's lease handed on, a database restart, and watching and cancelling a
//! build through daemons other than the one running it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration::cli::{run, trtfarm};
use integration::daemon::Daemon;
use integration::farm::{follow, follow_to_end, job_of, request_for, succeeded};
use integration::models::{deep_cnn, images_manifest, slow_project};
use integration::postgres::TestPostgres;
use integration::servers::{ServerKind, TestServer};
use tonic::transport::Channel;
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

/// Short, so a dead daemon's build moves on within the test; long enough that a busy machine
/// does not take a live daemon's build away (it renews five times per lease).
const LEASE: &str = "6s";

/// The gauge of builds running on a daemon.
const RUNNING: &str = "trtfarm_jobs{state=\"running\"}";

/// One PostgreSQL, one bucket, daemons on both.
struct Farm {
    pg: TestPostgres,
    s3: TestServer,
    root: tempfile::TempDir,
}

impl Farm {
    fn start() -> Farm {
        Farm {
            pg: TestPostgres::start(),
            s3: TestServer::start(ServerKind::S3sFs),
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// A daemon of the farm named `name` (its state dir), with `extra` flags.
    fn daemon(&self, name: &str, extra: &[&str]) -> Daemon {
        self.daemon_with_lease(name, LEASE, extra)
    }

    /// [`Farm::daemon`] with leases of `lease`.
    fn daemon_with_lease(&self, name: &str, lease: &str, extra: &[&str]) -> Daemon {
        let url = self.pg.url();
        let mut flags = vec![
            "--queue",
            url.as_str(),
            "--queue-lease",
            lease,
            "--cpu-slots",
            "1",
            "--drain-timeout",
            "0s",
        ];
        flags.extend_from_slice(extra);
        Daemon::start_on_store(
            &self.root.path().join(name),
            &self.s3.url(),
            &self.s3.option_args(),
            &flags,
            &[],
        )
    }

    /// A daemon that has no TensorRT toolchain: it takes submissions but can build nothing.
    fn daemon_without_toolchain(&self, name: &str) -> Daemon {
        self.daemon(
            name,
            &["--tensorrt-rtx-lib-dir", "/nonexistent/tensorrt-rtx"],
        )
    }

    fn psql(&self, sql: &str) -> String {
        self.pg.psql(sql)
    }
}

/// `dir/engine.toml` of a small CNN whose weights come from `seed` (a distinct key per seed).
fn small_project(dir: &Path, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    deep_cnn(dir, 2, 16, 32, seed);
    let manifest = dir.join("engine.toml");
    std::fs::write(&manifest, images_manifest("deep.onnx", 32, &[("small", 1)])).unwrap();
    manifest
}

fn builds_started(daemons: &[&Daemon]) -> f64 {
    daemons
        .iter()
        .map(|d| d.metric("trtfarm_builds_started_total"))
        .sum()
}

/// The index of the daemon whose builder is running, waiting up to a minute.
fn running_on(daemons: &[&Daemon]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = daemons.iter().position(|d| !d.builders().is_empty()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no daemon started a builder");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn farm_view(client: &mut FarmClient<Channel>) -> v1::FarmStatus {
    client
        .get_farm(v1::GetFarmRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_anywhere_is_built_by_the_only_daemon_that_can() {
    let farm = Farm::start();
    let a = farm.daemon_without_toolchain("a");
    let b = farm.daemon_without_toolchain("b");
    let c = farm.daemon("c", &[]);
    let mut client = a.client().await;

    let view = farm_view(&mut client).await;
    assert!(
        view.queue.starts_with("postgres://trtfarm@127.0.0.1:"),
        "{}",
        view.queue
    );
    assert_eq!(view.daemons.len(), 3, "{view:?}");
    assert!(view.daemons.iter().all(|d| d.live), "{view:?}");
    let with_toolchain: Vec<_> = view
        .daemons
        .iter()
        .filter(|d| !d.toolchains.is_empty())
        .collect();
    assert_eq!(with_toolchain.len(), 1, "{view:?}");

    let dir = farm.root.path().join("project");
    let manifest = small_project(&dir, 1);
    let request = request_for(&mut client, &manifest, "small").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    let result = succeeded(&follow(&mut client, job.id).await);
    assert!(result.engine.is_some());
    assert_eq!(c.metric("trtfarm_builds_started_total"), 1.0);
    assert_eq!(a.metric("trtfarm_builds_started_total"), 0.0);
    assert_eq!(b.metric("trtfarm_builds_started_total"), 0.0);
    // The job is the farm's: every daemon knows it.
    let mut through_b = b.client().await;
    let seen = through_b
        .get_job(v1::GetJobRequest { job_id: job.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.state, v1::JobState::Succeeded as i32);
    assert_eq!(seen.result, Some(result));

    // The CLI through the farm: submit to a daemon that cannot build, list and read the log
    // through the others, see every daemon.
    let home = farm.root.path().join("home");
    let other = small_project(&farm.root.path().join("cli-project"), 2);
    run(trtfarm(&home)
        .args(["--daemon", &a.endpoint, "submit"])
        .arg(&other))
    .expect_code(0, "submit through a daemon without a toolchain");
    assert_eq!(c.metric("trtfarm_builds_started_total"), 2.0);
    // `check` through that daemon asks about the farm's toolchains, not only its own.
    run(trtfarm(&home)
        .args(["--daemon", &a.endpoint, "check"])
        .arg(&other))
    .expect_code(0, "the farm has the toolchain");
    let written = std::fs::read_to_string(&other).unwrap();
    std::fs::write(
        &other,
        written.replace("tensorrt-rtx 1.7", "tensorrt-rtx 1.6"),
    )
    .unwrap();
    let checked = run(trtfarm(&home)
        .args(["--daemon", &a.endpoint, "check"])
        .arg(&other))
    .expect_code(1, "no daemon of the farm has 1.6");
    assert!(
        checked.stderr.contains("or any live daemon of its farm")
            && checked
                .stderr
                .contains("write toolchain = \"tensorrt-rtx 1.7\""),
        "{checked:?}"
    );
    std::fs::write(&other, written).unwrap();
    let listed = run(trtfarm(&home).args(["--daemon", &b.endpoint, "ls"])).expect_code(0, "ls");
    let rows = listed
        .stdout
        .lines()
        .filter(|l| l.contains("succeeded"))
        .count();
    assert_eq!(
        rows, 2,
        "both jobs, listed through another daemon: {listed:?}"
    );
    let logs = run(trtfarm(&home).args(["--daemon", &b.endpoint, "logs", &job.id.to_string()]))
        .expect_code(0, "logs");
    // The stored build log of a job built on C, printed through B: TensorRT's lines.
    assert!(logs.stdout.contains("[info] "), "{logs:?}");
    let view = run(trtfarm(&home).args(["--daemon", &c.endpoint, "farm"])).expect_code(0, "farm");
    assert!(view.stdout.starts_with("queue: postgres://"), "{view:?}");
    assert_eq!(view.stdout.matches(" live").count(), 3, "{view:?}");

    // What no daemon of the farm has is refused at once, naming what the farm has.
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("tensorrt-rtx 1.7", "tensorrt-rtx 1.6"),
    )
    .unwrap();
    let request = request_for(&mut client, &manifest, "small").await;
    let refused = client.submit(request).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("the farm has:") && refused.message().contains("1.7"),
        "{}",
        refused.message()
    );
    assert_eq!(
        trtfarm_proto::refusal::refused_setting(&refused),
        Some("toolchain"),
        "a client can point at the manifest's toolchain line"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_submits_of_twenty_keys_through_three_daemons_build_twenty_times() {
    let farm = Farm::start();
    let daemons = [
        farm.daemon("a", &[]),
        farm.daemon("b", &[]),
        farm.daemon("c", &[]),
    ];
    let mut clients = Vec::new();
    for daemon in &daemons {
        clients.push(daemon.client().await);
    }
    let mut requests = Vec::new();
    for seed in 0..20 {
        let manifest = small_project(&farm.root.path().join(format!("p{seed}")), seed);
        requests.push(request_for(&mut clients[0], &manifest, "small").await);
    }
    let submits = (0..200).map(|i| {
        let mut client = clients[i % 3].clone();
        let request = requests[i % 20].clone();
        tokio::spawn(async move { (i, client.submit(request).await) })
    });
    let mut done = Vec::new();
    for submit in submits {
        done.push(submit.await);
    }
    let mut engines: Vec<std::collections::HashSet<String>> = vec![Default::default(); 20];
    for submitted in done {
        let (i, response) = submitted.unwrap();
        let response = response
            .unwrap_or_else(|e| panic!("submit {i}: {e}"))
            .into_inner();
        let result = match response.outcome {
            Some(v1::submit_response::Outcome::Cached(result)) => result,
            Some(v1::submit_response::Outcome::Job(job)) => {
                // Followed through another daemon than the one that took the submit.
                let mut client = clients[(i + 1) % 3].clone();
                match follow_to_end(&mut client, job.id, 3).await.0 {
                    v1::job_event::Event::Finished(result) => result,
                    other => panic!("submit {i}: job {} ended {other:?}", job.id),
                }
            }
            None => panic!("submit {i}: empty response"),
        };
        engines[i % 20].insert(result.engine.unwrap().blake3);
    }
    for (seed, engines) in engines.iter().enumerate() {
        assert_eq!(
            engines.len(),
            1,
            "key {seed}: every client gets the one engine"
        );
    }
    let daemon_refs: Vec<&Daemon> = daemons.iter().collect();
    assert_eq!(
        builds_started(&daemon_refs),
        20.0,
        "twenty keys, twenty builds"
    );
    assert_eq!(
        farm.psql("SELECT count(*), sum(attempts) FROM trtfarm_builds"),
        "20|20"
    );
    assert_eq!(
        farm.psql("SELECT count(*) FROM trtfarm_jobs WHERE state <> 3"),
        "0",
        "every job succeeded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemons_build_is_built_elsewhere_and_its_late_result_refused() {
    let farm = Farm::start();
    let mut daemons = [
        farm.daemon("a", &[]),
        farm.daemon("b", &[]),
        farm.daemon("c", &[]),
    ];
    let manifest = slow_project(&farm.root.path().join("slow"), 31);
    let mut client = daemons[0].client().await;
    let request = request_for(&mut client, &manifest, "slow").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());

    let refs: Vec<&Daemon> = daemons.iter().collect();
    let killed = running_on(&refs);
    let watcher = (killed + 1) % 3;
    daemons[killed].kill();
    let mut client = daemons[watcher].client().await;
    let (end, _) = follow_to_end(&mut client, job.id, 3).await;
    let v1::job_event::Event::Finished(result) = end else {
        panic!("the job did not finish after its daemon was killed: {end:?}");
    };
    let seen = client
        .get_job(v1::GetJobRequest { job_id: job.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.attempts, 2, "the second run finished it");

    // The killed daemon comes back: nothing of its run is published or recorded.
    let restarted = farm.daemon(["a", "b", "c"][killed], &[]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(restarted.metric("trtfarm_builds_started_total"), 0.0);
    assert_eq!(
        farm.psql("SELECT state, attempts, owner IS NULL FROM trtfarm_builds"),
        "succeeded|2|t"
    );
    let again = client
        .get_job(v1::GetJobRequest { job_id: job.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.result, Some(result));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_loses_no_job_and_builds_none_twice() {
    let mut farm = Farm::start();
    // Leases longer than the outage, as a deployment's are (30 s by default): builds must
    // ride it out, not be handed on (with the short leases of the other tests, a slow restart on
    // a busy machine hands them on, and they are built twice).
    let daemons = [
        farm.daemon_with_lease("a", "20s", &[]),
        farm.daemon_with_lease("b", "20s", &[]),
    ];
    let mut client = daemons[0].client().await;
    let mut jobs = Vec::new();
    for seed in 0..4 {
        let manifest = slow_project(&farm.root.path().join(format!("s{seed}")), 40 + seed);
        let request = request_for(&mut client, &manifest, "slow").await;
        jobs.push(job_of(&client.submit(request).await.unwrap().into_inner()));
    }
    let refs: Vec<&Daemon> = daemons.iter().collect();
    running_on(&refs);

    farm.pg.stop();
    let manifest = small_project(&farm.root.path().join("during"), 99);
    let request = request_for(&mut client, &manifest, "small").await;
    let refused = client.submit(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("cannot be reached"),
        "{}",
        refused.message()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    farm.pg.restart();

    for job in &jobs {
        let mut client = daemons[1].client().await;
        match follow_to_end(&mut client, job.id, 5).await.0 {
            v1::job_event::Event::Finished(_) => {}
            other => panic!("job {} ended {other:?}", job.id),
        }
    }
    assert_eq!(builds_started(&refs), 4.0, "four jobs, four builds");
    assert_eq!(
        farm.psql("SELECT count(*), sum(attempts) FROM trtfarm_builds WHERE state = 'succeeded'"),
        "4|4"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reaches_a_client_of_another_daemon_and_a_cancel_through_a_third_stops_it() {
    let farm = Farm::start();
    let daemons = [
        farm.daemon("a", &[]),
        farm.daemon("b", &[]),
        farm.daemon("c", &[]),
    ];
    let manifest = slow_project(&farm.root.path().join("slow"), 52);
    let mut client = daemons[0].client().await;
    let request = request_for(&mut client, &manifest, "slow").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());

    let refs: Vec<&Daemon> = daemons.iter().collect();
    let builder = running_on(&refs);
    let watcher = (builder + 1) % 3;
    let canceller = (builder + 2) % 3;
    // Each daemon's gauge counts the builds it runs.
    assert_eq!(daemons[builder].metric(RUNNING), 1.0);
    assert_eq!(daemons[watcher].metric(RUNNING), 0.0);
    let mut watching = daemons[watcher].client().await;
    let mut stream = watching
        .watch_job(v1::WatchJobRequest { job_id: job.id })
        .await
        .unwrap()
        .into_inner();
    let (mut started, mut logs, mut progress) = (false, 0, 0);
    while logs == 0 || progress == 0 {
        let event = stream
            .message()
            .await
            .unwrap()
            .expect("the job is still running");
        match event.event {
            Some(v1::job_event::Event::Started(_)) => started = true,
            Some(v1::job_event::Event::Log(_)) => logs += 1,
            Some(v1::job_event::Event::Progress(_)) => progress += 1,
            other => panic!("unexpected event before the cancel: {other:?}"),
        }
    }
    assert!(started, "the watcher saw the build start");

    let mut cancelling = daemons[canceller].client().await;
    let cancelled = cancelling
        .cancel_job(v1::CancelJobRequest { job_id: job.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, v1::JobState::Cancelled as i32);
    let end = loop {
        let event = stream.message().await.unwrap().expect("a final event");
        if let Some(v1::job_event::Event::Failed(reason)) = event.event {
            break reason;
        }
    };
    assert_eq!(end.kind, v1::FailureKind::Cancelled as i32, "{end:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemons[builder].builders().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the builder still runs after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemons[builder].metric(RUNNING) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the gauge still counts the cancelled build"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while farm.psql("SELECT state FROM trtfarm_builds") != "cancelled" {
        assert!(
            Instant::now() < deadline,
            "the build was not recorded as cancelled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
