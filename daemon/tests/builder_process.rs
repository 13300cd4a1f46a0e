//! The daemon side of the builder protocol against `/bin/sh` scripts standing in for a builder
//! (named `build` in the scratch dir, so `[/bin/sh, "build"]` runs it): the process set-up,
//! crashes with a log tail, helpers left behind, stray and oversized output. A script is the one
//! way to make a builder misbehave on cue; everything TensorRT does is tested in `builder.rs`.

mod builder_support;

use std::path::PathBuf;
use std::time::Duration;

use builder_support::{Scratch, live_group_members, run};
use trtfarmd::build::builder_process::{
    BuilderCommand, BuilderEvent, BuilderLauncher, BuilderOutcome, ProcessLauncher, builder_env,
};

/// A builder command running `script` with the shell.
fn script_command(scratch: &Scratch, script: &str) -> BuilderCommand {
    std::fs::write(scratch.path().join("build"), script).expect("write the builder script");
    BuilderCommand {
        program: PathBuf::from("/bin/sh"),
        scratch: scratch.path().to_path_buf(),
        memory_limit: None,
        deadline: Duration::from_secs(120),
        extra_env: Vec::new(),
    }
}

const DONE: &str = r#"{"type":"done","plan_size":7,"plan_blake3":"aa","toolchain_version":"1.7.1.116","library":{"path":"/opt/lib.so","stamp":{"device":1,"inode":2,"size":3,"mtime_ns":4,"ctime_ns":5}},"parser_library":{"path":"/opt/parser.so","stamp":{"device":1,"inode":3,"size":3,"mtime_ns":4,"ctime_ns":5}},"layer_info":false,"layer_info_error":null,"timing_cache":false}"#;

#[tokio::test]
async fn builder_process_gets_a_fixed_argv_env_and_process_setup() {
    let scratch = Scratch::new();
    let script = format!(
        "tr '\\0' '\\n' < /proc/$$/environ > environ\n\
         tr '\\0' ' ' < /proc/$$/cmdline > cmdline\n\
         cat /proc/$$/personality > personality\n\
         cat /proc/$$/limits > limits\n\
         cat /proc/$$/stat > stat\n\
         pwd > pwd\n\
         echo '{DONE}'\n"
    );
    let mut command = script_command(&scratch, &script);
    command.memory_limit = Some(3 << 30);
    command.extra_env = vec![
        ("ZED".into(), "last".into()),
        ("CUDA_VISIBLE_DEVICES".into(), "1".into()),
    ];
    let (report, _) = run(&command, |_, _| {}).await;
    assert!(
        matches!(&report.outcome, BuilderOutcome::Succeeded(done) if done.plan_size == 7),
        "{report:?}"
    );
    let read = |name: &str| std::fs::read_to_string(scratch.path().join(name)).unwrap();

    let expected_env: Vec<String> = builder_env(&command.extra_env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        expected_env,
        [
            "CUDA_VISIBLE_DEVICES=1",
            "LC_ALL=C",
            "MIMALLOC_ARENA_RESERVE=4GiB",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "ZED=last"
        ]
    );
    assert_eq!(read("environ").lines().collect::<Vec<_>>(), expected_env);
    assert_eq!(read("cmdline"), "/bin/sh build ");
    assert_eq!(read("pwd").trim_end(), scratch.path().to_str().unwrap());

    let persona = u32::from_str_radix(read("personality").trim(), 16).unwrap();
    assert_ne!(persona & libc::ADDR_NO_RANDOMIZE as u32, 0, "ASLR is on");

    let limits = read("limits");
    let limit = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(limit("Max core file size")[..2], ["0", "0"]);
    let address_space = (3u64 << 30).to_string();
    assert_eq!(
        limit("Max address space")[..2],
        [address_space.as_str(), address_space.as_str()]
    );

    // stat: pid (comm) state ppid pgrp session ...; comm is "sh", without spaces.
    let stat: Vec<String> = read("stat").split_whitespace().map(str::to_owned).collect();
    assert_eq!(stat[0], report.pid.to_string());
    assert_eq!(stat[4], stat[0], "the builder leads its own process group");
    assert_eq!(stat[5], stat[0], "the builder leads its own session");
}

#[tokio::test]
async fn builder_crash_keeps_the_log_tail_with_stray_and_oversized_lines() {
    let scratch = Scratch::new();
    let script = "echo 'to stderr' >&2\n\
         echo '{\"type\":\"log\",\"severity\":\"warning\",\"text\":\"from TensorRT\"}'\n\
         echo 'stray stdout'\n\
         head -c 200000 /dev/zero | tr '\\0' x\n\
         echo\n\
         kill -9 $$\n";
    let (report, events) = run(&script_command(&scratch, script), |_, _| {}).await;
    match &report.outcome {
        BuilderOutcome::Crashed { description } => assert!(
            description.starts_with("killed by signal 9 (SIGKILL) without a result"),
            "{description}"
        ),
        other => panic!("{other:?}"),
    }
    let tail = &report.log_tail;
    assert!(tail.contains(&"builder: to stderr".to_owned()), "{tail:?}");
    assert!(
        tail.contains(&"warning: from TensorRT".to_owned()),
        "{tail:?}"
    );
    assert!(
        tail.contains(&"builder: stray stdout".to_owned()),
        "{tail:?}"
    );
    let long = tail
        .iter()
        .find(|l| l.starts_with("builder: xxxx"))
        .expect("the long line is in the tail");
    assert!(
        long.ends_with("xxx [line truncated at 65536 bytes]"),
        "{} bytes",
        long.len()
    );
    assert_eq!(
        long.len(),
        "builder: ".len() + 65536 + " [line truncated at 65536 bytes]".len()
    );
    assert!(events.contains(&BuilderEvent::Log {
        severity: "warning".into(),
        text: "from TensorRT".into()
    }));
}

#[tokio::test]
async fn builder_failure_reported_with_exit_one_is_a_build_failure_through_the_launcher() {
    let scratch = Scratch::new();
    let script = "echo '{\"type\":\"failed\",\"message\":\"the model is bad\"}'\nexit 1\n";
    let launcher: Box<dyn BuilderLauncher> = Box::new(ProcessLauncher);
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let report = launcher
        .launch(script_command(&scratch, script), events_tx, cancel)
        .await
        .expect("the builder starts");
    assert_eq!(
        report.outcome,
        BuilderOutcome::BuildFailed {
            message: "the model is bad".into()
        }
    );
    assert_eq!(
        events_rx.recv().await,
        Some(BuilderEvent::Spawned { pid: report.pid })
    );
}

#[tokio::test]
async fn builder_helpers_left_behind_after_success_are_killed() {
    let scratch = Scratch::new();
    // The helper inherits stdout and stderr: unless it is killed, the pipes never close.
    let script = format!("sleep 600 &\necho \"helper $!\" >&2\necho '{DONE}'\nexit 0\n");
    let mut helper = None;
    let (report, _) = run(&script_command(&scratch, &script), |event, _| {
        if let BuilderEvent::Log { text, .. } = event
            && let Some(pid) = text.strip_prefix("helper ")
        {
            helper = pid.parse::<u32>().ok();
        }
    })
    .await;
    assert!(
        matches!(report.outcome, BuilderOutcome::Succeeded(_)),
        "{report:?}"
    );
    assert!(helper.is_some(), "the script did not report its helper");
    assert_eq!(live_group_members(report.pid), Vec::<u32>::new());
}

#[tokio::test]
async fn builder_deadline_kills_helpers_too() {
    let scratch = Scratch::new();
    let script = "sleep 600 &\necho \"helper $!\" >&2\nwait\n";
    let mut command = script_command(&scratch, script);
    command.deadline = Duration::from_millis(300);
    let mut helper = None;
    let (report, _) = run(&command, |event, _| {
        if let BuilderEvent::Log { text, .. } = event
            && let Some(pid) = text.strip_prefix("helper ")
        {
            helper = pid.parse::<u32>().ok();
        }
    })
    .await;
    assert_eq!(report.outcome, BuilderOutcome::DeadlineExceeded);
    assert_eq!(live_group_members(report.pid), Vec::<u32>::new());
    if let Some(helper) = helper {
        assert!(
            !builder_support::is_alive(helper),
            "helper {helper} survived"
        );
    }
}

#[tokio::test]
async fn builder_cancel_kills_the_worker_and_its_helpers() {
    let scratch = Scratch::new();
    let script = "sleep 600 &\necho \"helper $!\" >&2\nwait\n";
    let mut helper = None;
    let (report, _) = run(&script_command(&scratch, script), |event, cancel| {
        if let BuilderEvent::Log { text, .. } = event
            && let Some(pid) = text.strip_prefix("helper ")
        {
            helper = pid.parse::<u32>().ok();
            cancel.send_replace(true);
        }
    })
    .await;
    assert_eq!(report.outcome, BuilderOutcome::Cancelled);
    let helper = helper.expect("the script reported its helper");
    assert!(
        !builder_support::is_alive(helper),
        "helper {helper} survived"
    );
    assert_eq!(live_group_members(report.pid), Vec::<u32>::new());
}

#[tokio::test]
async fn builder_that_cannot_start_is_an_error_not_an_outcome() {
    let scratch = Scratch::new();
    let mut command = script_command(&scratch, "");
    command.program = scratch.path().join("no-such-program");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let error = trtfarmd::build::builder_process::run_builder(&command, tx, cancel)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert!(error.to_string().contains("no-such-program"), "{error}");
}
