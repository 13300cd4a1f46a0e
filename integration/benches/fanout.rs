//! Fan-out: 8 variants of one real network (the PP-OCRv4 text detector, fp32, 8 sets of
//! compute capabilities) built cold through a fresh daemon, all submitted at once, against the
//! same 8 builds one after another through NVIDIA's TensorRT-RTX Python API (each a fresh
//! Python process, as a script would run them), in one run. The daemon side runs twice: with
//! its default build slots (one per CPU: a build keeps about one core busy) and with one slot.
//! Each side is repeated (`TRTFARM_BENCH_ROUNDS`, default 3) and the medians printed.
//!
//! Run: `cargo build --release --bins && cargo bench -p integration --bench fanout` (after
//! `scripts/setup`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration::bench::median;
use integration::daemon::Daemon;
use integration::determinism::python_build_args;
use integration::farm::{follow_to_end, job_of, request_for};
use integration::real_models::network;
use trtfarm_proto::v1;

/// The 8 target sets, one variant each.
const TARGETS: [&[&str]; 8] = [
    &["8.6"],
    &["8.9"],
    &["12.0"],
    &["7.5"],
    &["8.6", "8.9"],
    &["8.6", "12.0"],
    &["8.9", "12.0"],
    &["7.5", "8.6", "8.9"],
];

/// `dir/engine.toml` for the detector with one fp32 engine per target set.
fn project(dir: &Path) -> std::path::PathBuf {
    let detector = network("ocr-det");
    let manifest = detector.write_project(dir);
    let mut text = format!(
        "schema_version = 1\n\n[model]\npath = \"{}\"\n\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\n\n{}\n",
        detector.file, detector.profiles
    );
    for (i, targets) in TARGETS.iter().enumerate() {
        let list = targets
            .iter()
            .map(|cc| format!("\"{cc}\""))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "\n[[engine]]\nname = \"t{i}\"\ncompatibility.compute_capabilities = [{list}]\n"
        ));
    }
    std::fs::write(&manifest, text).unwrap();
    manifest
}

/// Cold builds of every variant through a new daemon (own store), all submitted at once.
async fn through_the_daemon(work: &Path, manifest: &Path, extra: &[&str]) -> Duration {
    let daemon = Daemon::start(work, extra);
    let mut client = daemon.client().await;
    let mut requests = Vec::new();
    for i in 0..TARGETS.len() {
        requests.push(request_for(&mut client, manifest, &format!("t{i}")).await);
    }
    let started = Instant::now();
    let mut jobs = Vec::new();
    for request in requests {
        jobs.push(job_of(&client.submit(request).await.unwrap().into_inner()).id);
    }
    for job in jobs {
        match follow_to_end(&mut client, job, 3).await.0 {
            v1::job_event::Event::Finished(_) => {}
            other => panic!("job {job}: {other:?}"),
        }
    }
    started.elapsed()
}

/// The same builds one after another through NVIDIA's Python API.
fn through_python(manifest: &Path, dir: &Path) -> Duration {
    let python = onnx_graph::deps::python().expect("set up the Python venv (scripts/setup)");
    let script = integration::repo_root().join("trt-ffi/benches/build_with_python.py");
    let model = manifest.parent().unwrap().join(network("ocr-det").file);
    let started = Instant::now();
    for i in 0..TARGETS.len() {
        let output = Command::new(&python)
            .arg(&script)
            .args(python_build_args(manifest, &format!("t{i}"), &model))
            .arg("--plan")
            .arg(dir.join("python.plan"))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    started.elapsed()
}

fn main() {
    let rounds: usize = std::env::var("TRTFARM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let manifest = project(&work.path().join("project"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut python, mut default_slots, mut one_slot) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        python.push(through_python(&manifest, work.path()));
        let dir = work.path().join(format!("default-{round}"));
        default_slots.push(runtime.block_on(through_the_daemon(&dir, &manifest, &[])));
        let dir = work.path().join(format!("one-{round}"));
        one_slot.push(runtime.block_on(through_the_daemon(&dir, &manifest, &["--cpu-slots", "1"])));
    }
    let show = |samples: &[Duration]| {
        samples
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (python, default_slots, one_slot) = (
        (median(python.clone()), show(&python)),
        (median(default_slots.clone()), show(&default_slots)),
        (median(one_slot.clone()), show(&one_slot)),
    );
    println!(
        "8 cold variants of ocr-det (fp32), median of {rounds} (s): Python API one after another \
         {:.1} [{}]; daemon, {cpus} slots (default) {:.1} [{}] = {:.2}x faster; daemon, 1 slot \
         {:.1} [{}] = {:.2}x",
        python.0.as_secs_f64(),
        python.1,
        default_slots.0.as_secs_f64(),
        default_slots.1,
        python.0.as_secs_f64() / default_slots.0.as_secs_f64(),
        one_slot.0.as_secs_f64(),
        one_slot.1,
        python.0.as_secs_f64() / one_slot.0.as_secs_f64(),
    );
}
