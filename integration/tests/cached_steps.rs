//! The build as cached steps, through the real daemon: one model conversion serves every
//! variant that needs it, and the cache belongs to the builder, not to the daemon: a different
//! daemon binary answers a resubmit from the cache, a different builder builds anew.
//!
//! Needs scripts/setup and the workspace's binaries (`cargo build --workspace --bins`).

use std::path::{Path, PathBuf};

use integration::binary;
use integration::daemon::Daemon;
use integration::farm::{follow, job_of, request_for, succeeded};
use trtfarm_proto::v1;

fn examples() -> tempfile::TempDir {
    integration::examples_copy()
}

/// Submits `variant` of `manifest` and returns the response and, for a build, its events.
async fn submit(
    client: &mut v1::farm_client::FarmClient<tonic::transport::Channel>,
    manifest: &Path,
    variant: &str,
) -> (v1::SubmitResponse, Vec<v1::JobEvent>) {
    let request = request_for(client, manifest, variant).await;
    let response = client.submit(request).await.unwrap().into_inner();
    let events = match &response.outcome {
        Some(v1::submit_response::Outcome::Job(job)) => follow(client, job.id).await,
        _ => Vec::new(),
    };
    (response, events)
}

fn logged(events: &[v1::JobEvent], needle: &str) -> bool {
    events.iter().any(
        |e| matches!(&e.event, Some(v1::job_event::Event::Log(line)) if line.text.contains(needle)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn one_conversion_serves_every_variant_that_needs_it() {
    let examples = examples();
    let manifest = examples.path().join("precision-fanout/engine.toml");
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;

    // fp16 variants for different targets share one conversion; bf16 needs its own, and so
    // does fp16-portable (it keeps float32 inputs and outputs: another conversion).
    let mut converted = Vec::new();
    for (index, variant) in ["fp16-sm86", "fp16-sm89"].into_iter().enumerate() {
        let (_, events) = submit(&mut client, &manifest, variant).await;
        let result = succeeded(&events);
        let reused = logged(&events, "prepare: reusing the fp16 model converted earlier");
        let ran = logged(&events, "trtfarm autocast to fp16");
        assert_eq!(
            (reused, ran),
            (index > 0, index == 0),
            "{variant}: reused {reused}, converted {ran}"
        );
        converted.push(
            result
                .transformed_model
                .expect("the converted model is named"),
        );
    }
    assert!(
        converted.windows(2).all(|pair| pair[0] == pair[1]),
        "{converted:?}"
    );
    for variant in ["bf16-sm89", "fp16-portable"] {
        let (_, events) = submit(&mut client, &manifest, variant).await;
        let result = succeeded(&events);
        assert!(logged(&events, "trtfarm autocast to"), "{variant}");
        assert_ne!(result.transformed_model.as_ref(), Some(&converted[0]));
    }
    // bf16 for another target reuses its conversion.
    let (_, events) = submit(&mut client, &manifest, "bf16-sm120").await;
    succeeded(&events);
    assert!(logged(
        &events,
        "prepare: reusing the bf16 model converted earlier"
    ));
    assert_eq!(daemon.metric("trtfarm_models_converted_total"), 3.0);
    assert_eq!(daemon.metric("trtfarm_models_reused_total"), 2.0);
}

/// A copy of `program` in `dir`, with `tail` appended when given: the same program as far as
/// the kernel is concerned (trailing bytes are never mapped), a different file for any digest.
fn copy_program(program: &Path, dir: &Path, tail: Option<&[u8]>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let copy = dir.join(program.file_name().unwrap());
    let mut bytes = std::fs::read(program).unwrap();
    if let Some(tail) = tail {
        bytes.extend_from_slice(tail);
    }
    std::fs::write(&copy, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

fn digest_of(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_daemon_keeps_the_cache_and_a_new_builder_builds_anew() {
    let examples = examples();
    let manifest = examples.path().join("precision-fanout/engine.toml");
    let root = tempfile::tempdir().unwrap();
    let store = format!("file://{}", root.path().join("store").display());
    let programs = tempfile::tempdir().unwrap();
    let (daemon, builder) = (binary("trtfarmd"), binary("trtfarm-builder"));

    // Release 1: the daemon and the builder as built.
    let release1 = programs.path().join("release1");
    let daemon1 = copy_program(&daemon, &release1, None);
    copy_program(&builder, &release1, None);
    let first = {
        let running = Daemon::start_program(&daemon1, root.path(), &store, &[], &[], &[]);
        let mut client = running.client().await;
        let (response, events) = submit(&mut client, &manifest, "fp16-sm86").await;
        job_of(&response);
        (response.action_key, succeeded(&events).engine)
    };

    // Release 2: another daemon binary, the same builder: every engine is still cached.
    let release2 = programs.path().join("release2");
    let daemon2 = copy_program(&daemon, &release2, Some(b"\0trtfarmd: another release"));
    copy_program(&builder, &release2, None);
    assert_ne!(digest_of(&daemon1), digest_of(&daemon2));
    {
        let running = Daemon::start_program(&daemon2, root.path(), &store, &[], &[], &[]);
        let mut client = running.client().await;
        let (response, _) = submit(&mut client, &manifest, "fp16-sm86").await;
        assert_eq!(
            response.action_key, first.0,
            "the daemon binary changed the key"
        );
        match response.outcome {
            Some(v1::submit_response::Outcome::Cached(result)) => {
                assert_eq!(result.engine, first.1)
            }
            other => panic!("a new daemon binary missed the cache: {other:?}"),
        }
    }

    // Release 3: another builder: a new key, and a real build.
    let release3 = programs.path().join("release3");
    let daemon3 = copy_program(&daemon, &release3, None);
    copy_program(
        &builder,
        &release3,
        Some(b"\0trtfarm-builder: another release"),
    );
    let running = Daemon::start_program(&daemon3, root.path(), &store, &[], &[], &[]);
    let mut client = running.client().await;
    let (response, events) = submit(&mut client, &manifest, "fp16-sm86").await;
    assert_ne!(
        response.action_key, first.0,
        "the builder is not in the key"
    );
    job_of(&response);
    succeeded(&events);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_converted_model_tensorrt_refuses_names_the_operator_and_the_manifest_fix() {
    // PP-OCRv4's detector at bf16 without its `keep_fp32` fix: Myelin cannot type the
    // ConvTranspose. The failure must say which operator and the line that fixes it.
    let network = integration::real_models::network("ocr-det");
    let project = tempfile::tempdir().unwrap();
    let manifest = network.write_project(project.path());
    let text = std::fs::read_to_string(&manifest).unwrap();
    let unfixed: String = text
        .lines()
        .filter(|line| !line.starts_with("autocast.keep_fp32"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(unfixed, text, "the network's manifest has its fix");
    std::fs::write(&manifest, unfixed).unwrap();

    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let (_, events) = submit(&mut client, &manifest, "bf16").await;
    match integration::farm::outcome(&events) {
        v1::job_event::Event::Failed(failure) => {
            assert!(
                failure
                    .message
                    .contains("autocast.keep_fp32 = [\"ConvTranspose\"]"),
                "{}",
                failure.message
            );
            assert!(failure.message.contains("Could not infer output types"));
        }
        other => panic!("the bf16 detector built without its fix: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trtfarmd_build_gives_the_plan_the_daemon_gives() {
    // The same two steps in the same way: a real network's fp16 engine, converted and built
    // by `trtfarmd build` and by the daemon, must be the same bytes.
    let network = integration::real_models::network("ocr-det");
    let project = tempfile::tempdir().unwrap();
    let manifest = network.write_project(project.path());
    let out = project.path().join("out");
    let local = std::process::Command::new(binary("trtfarmd"))
        .args(["build", "--engine", "fp16", "--out-dir"])
        .arg(&out)
        .arg(&manifest)
        .output()
        .expect("run trtfarmd build");
    let stdout = String::from_utf8_lossy(&local.stdout);
    assert!(
        local.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let plan = std::fs::read(out.join("fp16.engine")).unwrap();
    let local_digest = blake3::hash(&plan).to_hex().to_string();
    assert!(stdout.contains(&local_digest), "{stdout}");

    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let mut client = daemon.client().await;
    let (_, events) = submit(&mut client, &manifest, "fp16").await;
    let engine = succeeded(&events).engine.expect("an engine");
    assert_eq!(engine.blake3, local_digest);
    assert_eq!(engine.size_bytes, plan.len() as u64);
}
