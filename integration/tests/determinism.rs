//! Byte-identical TensorRT-RTX plans through the real daemon: four models, each built ten
//! times with `skip_cache`, across two daemon restarts, in state dirs whose paths have
//! different lengths, with daemon environments and client requests (manifest comments, an
//! unrelated engine, the manifest's path, the client's name) that differ from build to build,
//! and daemon B's builds while every CPU is kept busy by other processes (plans have varied
//! under CPU load when they did not on an idle machine). Every build of one model must have the
//! same action key and give the same engine digest.
//!
//! Needs scripts/setup and the `trtfarmd` binary (`cargo build -p trtfarmd`).

use std::collections::BTreeMap;
use std::path::Path;

use integration::cpu_load::CpuLoad;
use integration::daemon::Daemon;
use integration::determinism::{Case, cases, describe_difference, vary_request};
use integration::farm::{follow_to_end, job_of, request_for};
use trtfarm::transfer::download_to_file;
use trtfarm_proto::v1;

/// Builds per model.
const BUILDS: usize = 10;

/// Which daemon runs build `index`: builds 0–2 on daemon A, 3–6 on daemon B (another state
/// dir, with a much longer path, and the CPUs busy), 7–9 on daemon A again after a restart.
fn segment(index: usize) -> usize {
    match index {
        0..=2 => 0,
        3..=6 => 1,
        _ => 2,
    }
}

/// One daemon of the run: where its state lives and what it finds in its environment.
fn start_daemon(segment: usize, short: &Path, long: &Path) -> Daemon {
    let noise = "n".repeat(2000);
    match segment {
        0 => Daemon::start_with_env(short, &[], &[]),
        1 => Daemon::start_with_env(
            long,
            &[],
            &[
                ("TRTFARM_DETERMINISM_NOISE", noise.as_str()),
                ("LANG", "de_DE.UTF-8"),
            ],
        ),
        _ => Daemon::start_with_env(
            short,
            &[],
            &[("TZ", "Pacific/Auckland"), ("HOME", "/nonexistent")],
        ),
    }
}

/// One build's result: its action key and engine.
struct Built {
    key: String,
    engine: v1::Digest,
    daemon: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_model_builds_to_one_digest_across_restarts_state_dirs_and_clients() {
    let work = tempfile::tempdir().unwrap();
    let cases = cases(&work.path().join("models"));
    let short = work.path().join("a");
    let long = work
        .path()
        .join("a-much-longer-state-directory-path")
        .join("nested".repeat(12));
    std::fs::create_dir_all(&long).unwrap();

    let mut built: BTreeMap<&str, Vec<Built>> = BTreeMap::new();
    for segment_index in 0..3 {
        let daemon = start_daemon(segment_index, &short, &long);
        let mut client = daemon.client().await;
        // Killed when this daemon's builds are done.
        let _load = (segment_index == 1).then(CpuLoad::all_cpus);
        for case in &cases {
            for index in (0..BUILDS).filter(|i| segment(*i) == segment_index) {
                let request = request_for(&mut client, &case.manifest, case.variant).await;
                let request = vary_request(request, index);
                let response = client.submit(request).await.unwrap().into_inner();
                let job = job_of(&response);
                let (end, broken) = follow_to_end(&mut client, job.id, 5).await;
                for status in broken {
                    // A transport failure, not a plan difference: reported, then resumed.
                    eprintln!("{} build {index}: event stream broke: {status}", case.name);
                }
                let v1::job_event::Event::Finished(result) = end else {
                    panic!("{} build {index} did not succeed: {end:?}", case.name);
                };
                built.entry(case.name).or_default().push(Built {
                    key: response.action_key,
                    engine: result.engine.expect("an engine digest"),
                    daemon: segment_index,
                });
            }
        }
        drop(client);
        // A clean stop for A's first run, a hard kill for B: both must leave nothing behind
        // that changes the next daemon's plans.
        let mut daemon = daemon;
        if segment_index == 0 {
            assert!(daemon.terminate().success());
        }
    }

    let mut failures = Vec::new();
    for case in &cases {
        let builds = &built[case.name];
        assert_eq!(builds.len(), BUILDS, "{}", case.name);
        let keys: std::collections::BTreeSet<&str> =
            builds.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            keys.len(),
            1,
            "{}: the action key varied: {keys:?}",
            case.name
        );
        let digests: std::collections::BTreeSet<&str> =
            builds.iter().map(|b| b.engine.blake3.as_str()).collect();
        println!(
            "{}: {} builds, {} distinct engine digest(s), plan {} bytes, first blake3:{}",
            case.name,
            builds.len(),
            digests.len(),
            builds[0].engine.size_bytes,
            &builds[0].engine.blake3[..16]
        );
        if digests.len() != 1 {
            failures.push(explain(case, builds, work.path(), &short, &long).await);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Fetches the first plan and one that differs from it, and says how they differ.
async fn explain(case: &Case, builds: &[Built], work: &Path, short: &Path, long: &Path) -> String {
    let first = &builds[0];
    let other = builds
        .iter()
        .find(|b| b.engine.blake3 != first.engine.blake3)
        .expect("a differing build");
    let mut plans = Vec::new();
    for build in [first, other] {
        // Both daemons wrote their engines to their own stores; restart the one that has it.
        let root = if build.daemon == 1 { long } else { short };
        let daemon = Daemon::start(root, &[]);
        let mut client = daemon.client().await;
        let path = work.join(format!("{}-{}.plan", case.name, build.engine.blake3));
        download_to_file(&mut client, &build.engine, &path)
            .await
            .expect("fetch the engine");
        plans.push(std::fs::read(&path).unwrap());
    }
    let digests: Vec<(usize, &str)> = builds
        .iter()
        .map(|b| (b.daemon, &b.engine.blake3[..12]))
        .collect();
    format!(
        "{}: engines differ ({digests:?} as (daemon, digest)):\n{}",
        case.name,
        describe_difference(&plans[0], &plans[1])
    )
}
