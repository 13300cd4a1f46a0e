//! The builder end to end: real `trtfarm-builder` processes building with TensorRT-RTX, and
//! `/bin/sh` scripts standing in for a builder where a test needs exact control of what the
//! process does (crashes, helpers, stray output).
//!
//! TensorRT-RTX and the example models must be set up (scripts/setup); a missing piece fails
//! the test with instructions, because CI always sets up and a silent skip would hide breakage.

mod builder_support;

use std::time::Duration;

use builder_support::{
    Scratch, example_manifest, example_model, live_group_members, rtx_command, rtx_task, run,
    send_kill,
};
use trtfarm_build_protocol::{BuilderTask, LAYERS_FILE, PLAN_FILE, TASK_FILE};
use trtfarm_build_protocol::{Progress, ProgressKind};
use trtfarmd::build::builder_process::{BuilderEvent, BuilderOutcome};
use trtfarmd::build::prepare::{Preparation, prepare_model};

const VARIANT: &str = "fp32";

fn rtx_scratch() -> Scratch {
    let scratch = Scratch::new();
    scratch.write_task(&rtx_task(VARIANT));
    scratch.write_model(&std::fs::read(example_model()).expect("read the example model"));
    scratch
}

#[tokio::test]
async fn builder_builds_a_real_engine_and_reports_its_plan_and_progress() {
    let scratch = rtx_scratch();
    let (report, events) = run(&rtx_command(&scratch), |_, _| {}).await;
    let done = match &report.outcome {
        BuilderOutcome::Succeeded(done) => done.clone(),
        other => panic!("{other:?}\nlog tail:\n{}", report.log_tail.join("\n")),
    };
    let plan = std::fs::read(scratch.path().join(PLAN_FILE)).expect("the plan exists");
    assert_eq!(plan.len() as u64, done.plan_size);
    assert_eq!(blake3::hash(&plan).to_hex().as_str(), done.plan_blake3);
    assert!(done.toolchain_version.starts_with("1.7."), "{done:?}");
    assert!(
        done.library.path.ends_with("libtensorrt_rtx.so.1") && done.library.stamp.size > 0,
        "{done:?}"
    );
    assert!(!done.layer_info && !done.timing_cache, "{done:?}");

    assert_eq!(
        events.first(),
        Some(&BuilderEvent::Spawned { pid: report.pid })
    );
    let phase_starts = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                BuilderEvent::Progress(Progress {
                    kind: ProgressKind::PhaseStart,
                    ..
                })
            )
        })
        .count();
    assert!(phase_starts > 0, "no progress events: {events:?}");
    let tensorrt_logs = events
        .iter()
        .filter(|e| matches!(e, BuilderEvent::Log { severity, .. } if severity == "info"))
        .count();
    assert!(tensorrt_logs > 0, "no TensorRT log lines: {events:?}");
    assert!(!report.log_tail.is_empty() && report.log_tail.len() <= 50);
}

#[tokio::test]
async fn builder_writes_layer_info_or_says_why_it_could_not() {
    let scratch = rtx_scratch();
    let mut task = rtx_task(VARIANT);
    task.config.layer_info = true;
    scratch.write_task(&task);
    let (report, _) = run(&rtx_command(&scratch), |_, _| {}).await;
    let BuilderOutcome::Succeeded(done) = &report.outcome else {
        panic!(
            "{:?}\nlog tail:\n{}",
            report.outcome,
            report.log_tail.join("\n")
        );
    };
    let layers = scratch.path().join(LAYERS_FILE);
    // TensorRT can only inspect a plan it can deserialise, which needs a GPU it supports.
    if done.layer_info {
        let json = std::fs::read_to_string(&layers).expect("layers.json is written");
        serde_json::from_str::<serde_json::Value>(&json).expect("layers.json is JSON");
        assert_eq!(done.layer_info_error, None);
    } else {
        assert!(!layers.exists());
        let error = done.layer_info_error.as_deref().unwrap_or_default();
        assert!(!error.is_empty(), "no layer info and no reason: {done:?}");
    }
}

#[tokio::test]
async fn builder_gives_identical_plans_for_the_same_task_in_scratch_dirs_of_equal_length() {
    let first = rtx_scratch();
    let second = rtx_scratch();
    assert_eq!(
        first.path().as_os_str().len(),
        second.path().as_os_str().len(),
        "the scratch paths must have the same length for this property"
    );
    assert_ne!(first.path(), second.path());
    let mut plans = Vec::new();
    for scratch in [&first, &second] {
        let (report, _) = run(&rtx_command(scratch), |_, _| {}).await;
        assert!(
            matches!(report.outcome, BuilderOutcome::Succeeded(_)),
            "{:?}",
            report.outcome
        );
        plans.push(std::fs::read(scratch.path().join(PLAN_FILE)).unwrap());
    }
    let differing = plans[0]
        .iter()
        .zip(&plans[1])
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        plans[0] == plans[1],
        "plans differ: sizes {} and {}, {differing} differing bytes",
        plans[0].len(),
        plans[1].len()
    );
}

#[test]
fn the_prepare_step_refuses_a_truncated_model_before_any_builder_sees_it() {
    // Half a model: arbitrary bytes are often read as an empty protobuf, which TensorRT's parser
    // accepts (the builder then fails on a network without outputs), so trtfarm checks first.
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(example_model()).unwrap();
    let truncated = dir.path().join("model.onnx");
    std::fs::write(&truncated, &model[..model.len() / 2]).unwrap();
    let mut log = Vec::new();
    let error = prepare_model(&Preparation::CheckOnly, &truncated, &truncated, &mut log)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the model failed trtfarm's check before parsing"),
        "{error}"
    );
    assert!(error.contains("is truncated"), "{error}");
    assert_eq!(log.len(), 1, "{log:?}");
}

#[tokio::test]
async fn builder_reports_a_malformed_task_as_a_build_failure() {
    let scratch = rtx_scratch();
    std::fs::write(
        scratch.path().join(TASK_FILE),
        br#"{"flavour":"tensorrt-rtx","extra":1}"#,
    )
    .unwrap();
    let (report, _) = run(&rtx_command(&scratch), |_, _| {}).await;
    match &report.outcome {
        BuilderOutcome::BuildFailed { message } => {
            assert!(message.starts_with("task.json is malformed"), "{message}");
        }
        other => panic!("{other:?}\nlog tail:\n{}", report.log_tail.join("\n")),
    }
    assert!(!scratch.path().join(PLAN_FILE).exists());
}

#[tokio::test]
async fn builder_reports_tensorrts_refusal_as_a_build_failure_with_its_message() {
    let scratch = rtx_scratch();
    let mut task = rtx_task(VARIANT);
    // A profile for another input than the model's dynamic `images`.
    task.config.profiles[0].inputs[0].name = "no_such_input".into();
    scratch.write_task(&task);
    let (report, _) = run(&rtx_command(&scratch), |_, _| {}).await;
    match &report.outcome {
        BuilderOutcome::BuildFailed { message } => {
            assert!(
                message.contains("Dynamic input tensor images is missing dimensions"),
                "{message}"
            );
        }
        other => panic!("{other:?}\nlog tail:\n{}", report.log_tail.join("\n")),
    }
    assert!(!scratch.path().join(PLAN_FILE).exists());
}

#[tokio::test]
async fn builder_killed_right_after_spawn_crashed_with_sigkill() {
    let scratch = rtx_scratch();
    let (report, _) = run(&rtx_command(&scratch), |event, _| {
        if let BuilderEvent::Spawned { pid } = event {
            send_kill(*pid, libc::SIGKILL);
        }
    })
    .await;
    match &report.outcome {
        BuilderOutcome::Crashed { description } => {
            assert!(
                description.starts_with("killed by signal 9 (SIGKILL)"),
                "{description}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!scratch.path().join(PLAN_FILE).exists());
}

#[tokio::test]
async fn builder_past_its_deadline_is_killed_with_its_process_group() {
    let scratch = rtx_scratch();
    let mut command = rtx_command(&scratch);
    command.deadline = Duration::from_millis(5);
    let (report, _) = run(&command, |_, _| {}).await;
    assert_eq!(report.outcome, BuilderOutcome::DeadlineExceeded);
    assert_eq!(live_group_members(report.pid), Vec::<u32>::new());
    assert!(!scratch.path().join(PLAN_FILE).exists());
}

#[tokio::test]
async fn builder_cancelled_mid_build_is_killed_and_reported_cancelled() {
    let scratch = rtx_scratch();
    let (report, _) = run(&rtx_command(&scratch), |event, cancel| {
        if let BuilderEvent::Spawned { .. } = event {
            cancel.send_replace(true);
        }
    })
    .await;
    assert_eq!(report.outcome, BuilderOutcome::Cancelled);
    assert_eq!(live_group_members(report.pid), Vec::<u32>::new());
    assert!(!scratch.path().join(PLAN_FILE).exists());
}

#[test]
fn builder_task_round_trips_through_json() {
    let task = rtx_task(VARIANT);
    let json = serde_json::to_string(&task).unwrap();
    assert!(json.contains(r#""flavour":"tensorrt-rtx""#), "{json}");
    assert_eq!(serde_json::from_str::<BuilderTask>(&json).unwrap(), task);
    assert!(example_manifest().is_file());
}
