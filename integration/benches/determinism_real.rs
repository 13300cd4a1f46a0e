//! Distinct plans from N builds of real public networks at fp32, fp16 and bf16: through
//! NVIDIA's TensorRT-RTX Python API, each build in a fresh Python process, and through the
//! daemon, each build in a fresh worker with `skip_cache` and a differently written client
//! request. Both sides build the same model: for fp16/bf16 the Python side builds the converted
//! model the daemon's first build published (`ActionResult.transformed_model`, fetched from the
//! daemon's store), so only the builders differ. Prints a table with the number of distinct
//! plans, the median seconds per build of each side and their ratio; asserts nothing.
//!
//! `cargo build --release -p trtfarmd && cargo bench -p integration --bench determinism_real`
//! (needs scripts/setup; `cargo bench` runs the release `trtfarmd`, so build that first; or
//! `cargo build -p trtfarmd && cargo test -p integration --bench determinism_real` with the
//! debug one). Settings:
//!
//! - `TRTFARM_BENCH_BUILDS`: builds per variant and side (default 10);
//! - `TRTFARM_BENCH_NETWORKS`: comma-separated network names (default all of
//!   `integration::real_models::NETWORKS`);
//! - `TRTFARM_BENCH_CPU_LOAD=1`: every build, on both sides, while `nproc` busy loops run.
//!
//! Timings are wall time per build as a user sees it: a Python process from start to exit, a
//! daemon job from upload and submit to its final event. Plans of the two sides are not
//! byte-comparable (the daemon also sets TF32 off and detailed profiling verbosity); only the
//! number of distinct plans per side is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use integration::cpu_load::CpuLoad;
use integration::daemon::Daemon;
use integration::determinism::{python_build_args, vary_request};
use integration::farm::{follow_to_end, job_of, request_for};
use integration::real_models::{NETWORKS, PRECISIONS, RealNetwork};
use trtfarm::transfer::download_to_file;
use trtfarm_proto::v1;

/// The builds of one side: the distinct plan digests and each build's seconds, or why a build
/// failed.
struct Side {
    digests: BTreeSet<String>,
    seconds: Vec<f64>,
    failure: Option<String>,
}

impl Side {
    fn new() -> Side {
        Side {
            digests: BTreeSet::new(),
            seconds: Vec::new(),
            failure: None,
        }
    }

    fn median(&self) -> Option<f64> {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    /// The plans column: a count, or the failure.
    fn plans(&self) -> String {
        match &self.failure {
            Some(_) => "failed".into(),
            None => self.digests.len().to_string(),
        }
    }
}

/// `builds` daemon builds of `engine`; also returns the converted model of the first, if the
/// precision converted it.
async fn daemon_builds(
    daemon: &Daemon,
    manifest: &Path,
    engine: &str,
    builds: usize,
) -> (Side, Option<v1::Digest>) {
    let mut client = daemon.client().await;
    let mut side = Side::new();
    let mut converted = None;
    for index in 0..builds {
        let started = Instant::now();
        let request = request_for(&mut client, manifest, engine).await;
        let response = match client.submit(vary_request(request, index)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                side.failure = Some(status.to_string());
                break;
            }
        };
        let (end, _) = follow_to_end(&mut client, job_of(&response).id, 5).await;
        let result = match end {
            v1::job_event::Event::Finished(result) => result,
            other => {
                side.failure = Some(format!("{other:?}"));
                break;
            }
        };
        side.seconds.push(started.elapsed().as_secs_f64());
        side.digests
            .insert(result.engine.expect("an engine digest").blake3);
        converted = converted.or(result.transformed_model);
    }
    (side, converted)
}

/// `builds` builds of the model `args` names, each in a fresh Python process started the same
/// way (same working directory, environment and arguments).
fn python_builds(args: &[String], builds: usize, dir: &Path) -> Side {
    let python = onnx_graph::deps::python().expect("set up the Python venv (scripts/setup)");
    let script = integration::repo_root().join("trt-ffi/benches/build_with_python.py");
    let plan = dir.join("python.plan");
    let mut side = Side::new();
    for _ in 0..builds {
        let started = Instant::now();
        let output = Command::new(&python)
            .arg(&script)
            .args(args)
            .arg("--plan")
            .arg(&plan)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup)", python.display()));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            side.failure = Some(stderr.lines().last().unwrap_or("no message").to_owned());
            break;
        }
        side.seconds.push(started.elapsed().as_secs_f64());
        let bytes = std::fs::read(&plan).expect("the Python build wrote its plan");
        side.digests
            .insert(blake3::hash(&bytes).to_hex().to_string());
    }
    side
}

/// The networks `TRTFARM_BENCH_NETWORKS` names, else all.
fn selected_networks() -> Vec<&'static RealNetwork> {
    let Ok(names) = std::env::var("TRTFARM_BENCH_NETWORKS") else {
        return NETWORKS.iter().collect();
    };
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    for name in &names {
        assert!(
            NETWORKS.iter().any(|n| n.name == *name),
            "TRTFARM_BENCH_NETWORKS: no network called {name}; known: {:?}",
            NETWORKS.iter().map(|n| n.name).collect::<Vec<_>>()
        );
    }
    NETWORKS
        .iter()
        .filter(|n| names.contains(&n.name))
        .collect()
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("-".into(), |s| format!("{s:.2}"))
}

fn main() {
    let builds: usize = std::env::var("TRTFARM_BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let loaded = std::env::var("TRTFARM_BENCH_CPU_LOAD").is_ok_and(|v| v == "1");
    let networks = selected_networks();
    let work = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let daemon = Daemon::start(&work.path().join("daemon"), &[]);
    let _load = loaded.then(CpuLoad::all_cpus);

    println!(
        "{builds} builds per variant and side{}; plans = distinct plan digests; s = median seconds per build",
        if loaded { ", every CPU kept busy" } else { "" }
    );
    println!(
        "{:<16} {:<5} {:>13} {:>14} {:>10} {:>11} {:>16}",
        "network",
        "prec",
        "python plans",
        "trtfarm plans",
        "python s",
        "trtfarm s",
        "trtfarm/python"
    );
    let mut failures = Vec::new();
    for network in networks {
        let project = work.path().join("projects").join(network.name);
        let manifest = network.write_project(&project);
        for precision in PRECISIONS {
            let engine = network.engine(precision);
            let (ours, converted) =
                runtime.block_on(daemon_builds(&daemon, &manifest, engine, builds));
            let model: PathBuf = match &converted {
                Some(digest) => {
                    let path = project.join(format!("{engine}.converted.onnx"));
                    runtime
                        .block_on(async {
                            download_to_file(&mut daemon.client().await, digest, &path).await
                        })
                        .expect("fetch the converted model");
                    path
                }
                None => project.join(network.file),
            };
            let python = if ours.failure.is_none() {
                let dir = work.path().join("python");
                std::fs::create_dir_all(&dir).expect("create the Python build directory");
                python_builds(&python_build_args(&manifest, engine, &model), builds, &dir)
            } else {
                let mut skipped = Side::new();
                skipped.failure = Some("not run: the daemon's build failed".into());
                skipped
            };
            let ratio = match (ours.median(), python.median()) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            println!(
                "{:<16} {:<5} {:>13} {:>14} {:>10} {:>11} {:>16}",
                network.name,
                engine,
                python.plans(),
                ours.plans(),
                seconds(python.median()),
                seconds(ours.median()),
                ratio
            );
            for (who, side) in [("trtfarm", &ours), ("python", &python)] {
                if let Some(failure) = &side.failure {
                    failures.push(format!("{} {engine} ({who}): {failure}", network.name));
                }
            }
        }
    }
    for failure in failures {
        println!("failed: {failure}");
    }
}
