//! Jobs across cancellation, worker crashes and daemon restarts (SIGKILL included).

use integration::daemon::Daemon;
use integration::farm::{follow, job_of, outcome, request_for, succeeded};
use integration::models::{deep_cnn, images_manifest, slow_project};
use trtfarm_proto::v1;

/// A small model with three engines that differ only in optimization level.
fn small_project(root: &std::path::Path) -> std::path::PathBuf {
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    deep_cnn(&project, 2, 8, 16, 1);
    let manifest = project.join("engine.toml");
    std::fs::write(
        &manifest,
        images_manifest(
            "deep.onnx",
            16,
            &[("level-1", 1), ("level-2", 2), ("level-3", 3)],
        ),
    )
    .unwrap();
    manifest
}

fn state_of(job: &v1::Job) -> v1::JobState {
    v1::JobState::try_from(job.state).unwrap()
}

async fn get(
    client: &mut trtfarm_proto::v1::farm_client::FarmClient<tonic::transport::Channel>,
    id: u64,
) -> v1::Job {
    client
        .get_job(v1::GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_one_waiter_keeps_the_build_for_the_others_and_restarts_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let manifest = small_project(root.path());

    // No build slots: everything waits in the queue.
    let mut daemon = Daemon::start(root.path(), &["--cpu-slots", "0", "--max-queued-jobs", "2"]);
    let mut client = daemon.client().await;
    let a = request_for(&mut client, &manifest, "level-1").await;
    let b = request_for(&mut client, &manifest, "level-2").await;
    let a1 = client.submit(a.clone()).await.unwrap().into_inner();
    let a2 = client.submit(a.clone()).await.unwrap().into_inner();
    let b1 = client.submit(b.clone()).await.unwrap().into_inner();
    assert!(!a1.joined);
    assert!(a2.joined, "an identical submit joins the queued build");
    let (a1, a2, b1) = (job_of(&a1), job_of(&a2), job_of(&b1));
    // Two builds wait; a third is one too many.
    let c = request_for(&mut client, &manifest, "level-3").await;
    let status = client.submit(c).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert_eq!(a1.queue_position, 1);
    assert_eq!(get(&mut client, b1.id).await.queue_position, 2);

    let cancelled = client
        .cancel_job(v1::CancelJobRequest { job_id: a1.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state_of(&cancelled), v1::JobState::Cancelled);
    assert_eq!(
        state_of(&get(&mut client, a2.id).await),
        v1::JobState::Queued,
        "the other waiter still waits"
    );
    client
        .cancel_job(v1::CancelJobRequest { job_id: b1.id })
        .await
        .unwrap();
    match outcome(&follow(&mut client, b1.id).await) {
        v1::job_event::Event::Failed(failure) => {
            assert_eq!(failure.kind, v1::FailureKind::Cancelled as i32)
        }
        other => panic!("expected the cancellation, got {other:?}"),
    }
    assert_eq!(get(&mut client, b1.id).await.queue_position, 0);

    // SIGKILL with one job queued; a new daemon with a slot finishes it.
    daemon.kill();
    let daemon = Daemon::start(root.path(), &["--cpu-slots", "1"]);
    let mut client = daemon.client().await;
    let result = succeeded(&follow(&mut client, a2.id).await);
    assert!(result.engine.is_some());
    assert_eq!(
        state_of(&get(&mut client, a1.id).await),
        v1::JobState::Cancelled
    );
    assert_eq!(
        state_of(&get(&mut client, b1.id).await),
        v1::JobState::Cancelled
    );
    assert_eq!(daemon.metric("trtfarm_builds_started_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_mid_queue_restarts_and_finishes_every_job() {
    let root = tempfile::tempdir().unwrap();
    let manifest = small_project(root.path());

    let mut daemon = Daemon::start(root.path(), &["--cpu-slots", "1"]);
    let mut client = daemon.client().await;
    let done = request_for(&mut client, &manifest, "level-1").await;
    let done = job_of(&client.submit(done).await.unwrap().into_inner());
    let done_result = succeeded(&follow(&mut client, done.id).await);
    daemon.kill();

    let mut daemon = Daemon::start(root.path(), &["--cpu-slots", "0"]);
    let mut client = daemon.client().await;
    let mut queued = Vec::new();
    for variant in ["level-2", "level-3"] {
        let request = request_for(&mut client, &manifest, variant).await;
        queued.push(job_of(&client.submit(request).await.unwrap().into_inner()));
    }
    daemon.kill();

    let daemon = Daemon::start(root.path(), &["--cpu-slots", "2"]);
    let mut client = daemon.client().await;
    let kept = get(&mut client, done.id).await;
    assert_eq!(state_of(&kept), v1::JobState::Succeeded);
    assert_eq!(
        kept.result,
        Some(done_result),
        "the finished result survived"
    );
    for job in queued {
        let result = succeeded(&follow(&mut client, job.id).await);
        assert_eq!(result.action_key, job.action_key);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_build_fails_its_job_and_the_daemon_lives_on() {
    let root = tempfile::tempdir().unwrap();
    let manifest = slow_project(&root.path().join("project"), 7);
    let daemon = Daemon::start(&root.path().join("daemon"), &[]);
    let mut client = daemon.client().await;
    let request = request_for(&mut client, &manifest, "slow").await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());

    let worker = daemon.wait_for_builder(std::time::Duration::from_secs(60));
    // SAFETY: kill(2) on a process this test found as the daemon's worker child.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };

    match outcome(&follow(&mut client, job.id).await) {
        v1::job_event::Event::Failed(failure) => {
            assert_eq!(
                failure.kind,
                v1::FailureKind::WorkerCrashed as i32,
                "{failure:?}"
            );
            assert!(failure.message.contains("SIGKILL"), "{}", failure.message);
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    // Healthy: the next build works.
    let examples = integration::examples_copy();
    let request = request_for(
        &mut client,
        &examples.path().join("cnn-dynamic-batch/engine.toml"),
        "fp32",
    )
    .await;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    succeeded(&follow(&mut client, job.id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_past_its_deadline_is_stopped_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    deep_cnn(&project, 2, 8, 16, 8);
    std::fs::write(
        project.join("engine.toml"),
        images_manifest("deep.onnx", 16, &[("slow", 5)]),
    )
    .unwrap();
    let daemon = Daemon::start(&root.path().join("daemon"), &[]);
    let mut client = daemon.client().await;
    let mut request = request_for(&mut client, &project.join("engine.toml"), "slow").await;
    // No worker loads TensorRT and builds in 50 ms: the deadline always fires first.
    request.timeout_ms = 50;
    let job = job_of(&client.submit(request).await.unwrap().into_inner());
    match outcome(&follow(&mut client, job.id).await) {
        v1::job_event::Event::Failed(failure) => {
            assert_eq!(
                failure.kind,
                v1::FailureKind::Deadline as i32,
                "{failure:?}"
            );
            assert!(failure.message.contains("deadline"), "{}", failure.message);
        }
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert!(daemon.builders().is_empty(), "the worker is gone");
}

/// The daemon keys builds with the TensorRT libraries it probed at start-up; a worker that
/// loaded anything else must not publish. A `touch` (same bytes, new stamp) is no change.
#[tokio::test(flavor = "multi_thread")]
async fn a_library_changed_on_disk_after_start_up_is_refused_and_a_touched_one_is_not() {
    let root = tempfile::tempdir().unwrap();
    let manifest = small_project(root.path());
    // A private copy of TensorRT-RTX, so the test can change it. The loader ignores bytes
    // appended to a shared library, so the changed copy still loads and builds.
    let installed = std::path::PathBuf::from(
        std::env::var_os("TRTFARM_RTX_LIB_DIR").expect("TRTFARM_RTX_LIB_DIR (scripts/setup)"),
    );
    let lib = root.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    for name in ["libtensorrt_rtx.so.1", "libtensorrt_onnxparser_rtx.so.1"] {
        std::fs::copy(installed.join(name), lib.join(name)).unwrap();
    }
    // A library changed within the last second is hashed after every build, never trusted by
    // its stamp; let the copy settle so the fast path is the one taken first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let lib_arg = lib.to_str().unwrap();
    let daemon = Daemon::start(
        &root.path().join("daemon"),
        &["--tensorrt-rtx-lib-dir", lib_arg],
    );
    let mut client = daemon.client().await;
    let mut build = async |variant: &str| {
        let request = request_for(&mut client, &manifest, variant).await;
        let job = job_of(&client.submit(request).await.unwrap().into_inner());
        outcome(&follow(&mut client, job.id).await).clone()
    };

    let library = lib.join("libtensorrt_rtx.so.1");
    assert!(matches!(
        build("level-1").await,
        v1::job_event::Event::Finished(_)
    ));

    let file = std::fs::File::options()
        .append(true)
        .open(&library)
        .unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    let touched = build("level-2").await;
    assert!(
        matches!(touched, v1::job_event::Event::Finished(_)),
        "{touched:?}"
    );

    std::io::Write::write_all(&mut &file, b"not the probed library").unwrap();
    match build("level-3").await {
        v1::job_event::Event::Failed(failure) => {
            assert_eq!(
                failure.kind,
                v1::FailureKind::Infrastructure as i32,
                "{failure:?}"
            );
            assert!(
                failure.message.contains("changed on disk"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
