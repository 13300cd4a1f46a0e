//! How many distinct plans N builds of the same model give: through NVIDIA's TensorRT-RTX
//! Python API, each build in a fresh Python process (the normal way to run it), and through
//! the daemon, each build in a fresh worker with `skip_cache` and a differently written client
//! request. Same models, same number of builds, same run. Prints both counts per model and the
//! mean seconds per build; asserts nothing.
//!
//! `cargo build --release -p trtfarmd && cargo bench -p integration --bench determinism`
//! (needs scripts/setup; a bench runs the `trtfarmd` of the release profile, so build that one
//! first). `TRTFARM_BENCH_BUILDS` sets the builds per model and side (default 10).
//!
//! The Python side uses `trt-ffi/benches/build_with_python.py` with the variant's targets and
//! first profile, in one fixed working directory and environment: the most favourable setting
//! for it. Its plans are not byte-comparable with the daemon's (the daemon also sets TF32 off
//! and detailed profiling verbosity); only the number of distinct plans per side is compared.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use integration::daemon::Daemon;
use integration::determinism::{Case, cases, vary_request};
use integration::farm::{follow, job_of, request_for, succeeded};

/// Distinct plan digests and mean seconds per build.
struct Tally {
    digests: BTreeSet<String>,
    seconds: f64,
}

fn python_builds(case: &Case, builds: usize, dir: &Path) -> Tally {
    let python = onnx_graph::deps::python().expect("set up the Python venv (scripts/setup)");
    let script = integration::repo_root().join("trt-ffi/benches/build_with_python.py");
    let plan = dir.join(format!("{}.python.plan", case.name));
    let mut digests = BTreeSet::new();
    let started = Instant::now();
    for _ in 0..builds {
        let output = Command::new(&python)
            .arg(&script)
            .args(case.python_args())
            .arg("--plan")
            .arg(&plan)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup)", python.display()));
        assert!(
            output.status.success(),
            "{}: the Python build failed: {}",
            case.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let bytes = std::fs::read(&plan).expect("the Python build wrote its plan");
        digests.insert(blake3::hash(&bytes).to_hex().to_string());
    }
    Tally {
        digests,
        seconds: started.elapsed().as_secs_f64() / builds as f64,
    }
}

async fn daemon_builds(daemon: &Daemon, case: &Case, builds: usize) -> Tally {
    let mut client = daemon.client().await;
    let mut digests = BTreeSet::new();
    let started = Instant::now();
    for index in 0..builds {
        let request = request_for(&mut client, &case.manifest, case.variant).await;
        let response = client
            .submit(vary_request(request, index))
            .await
            .expect("submit")
            .into_inner();
        let result = succeeded(&follow(&mut client, job_of(&response).id).await);
        digests.insert(result.engine.expect("an engine digest").blake3);
    }
    Tally {
        digests,
        seconds: started.elapsed().as_secs_f64() / builds as f64,
    }
}

fn main() {
    let builds: usize = std::env::var("TRTFARM_BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let work = tempfile::tempdir().expect("a temporary directory");
    let cases = cases(&work.path().join("models"));
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let daemon = Daemon::start(&work.path().join("daemon"), &[]);

    println!(
        "{:<12} {:>8} {:>16} {:>16} {:>12} {:>12}  daemon plan",
        "model", "builds", "python digests", "daemon digests", "python s/b", "daemon s/b"
    );
    for case in &cases {
        let python = python_builds(case, builds, work.path());
        let ours = runtime.block_on(daemon_builds(&daemon, case, builds));
        let first = ours.digests.iter().next().map_or("", |d| &d[..16]);
        println!(
            "{:<12} {:>8} {:>16} {:>16} {:>12.2} {:>12.2}  blake3:{first}",
            case.name,
            builds,
            python.digests.len(),
            ours.digests.len(),
            python.seconds,
            ours.seconds
        );
    }
}
