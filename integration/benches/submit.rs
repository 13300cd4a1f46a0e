//! `trtfarm submit` benchmark, the real binary against a real daemon, every number next to a
//! baseline from the same run:
//!
//! - a cache-hit `trtfarm submit` process (wall time, p50 over 25 runs) against the cold build
//!   of the same manifest (`examples/manifests/cnn-dynamic-batch`);
//! - a repository of 100 manifests sharing 2 GiB of model files: two models whose weights are
//!   external data files of 1 GiB each (a few KiB of real weights followed by 1 GiB of
//!   pseudo-random bytes that no tensor references, so TensorRT builds stay small while the
//!   client must hash and upload every byte), each model named by 50 manifests. Timed: the
//!   first submit (hash 2 GiB, upload 2 GiB, 2 builds, 98 joins or hits), a no-op resubmit
//!   (digest cache warm: nothing hashed, nothing sent), and the same resubmit with an empty
//!   digest cache (everything re-hashed, nothing sent) to show what the cache saves.
//!
//! Run: `cargo build --release --bins && cargo bench -p integration --bench submit` (after
//! `scripts/setup`). Needs about 6 GiB of free disk in the temporary directory.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration::bench::{ms, percentile};
use integration::cli::{run, trtfarm};
use integration::daemon::Daemon;
use onnx_graph::{DataType, GraphBuilder, ModelBuilder, SplitMix64, dims};

const CACHE_HIT_RUNS: usize = 25;
const MANIFESTS: usize = 100;
const PADDING_BYTES: u64 = 1 << 30;

/// Runs `command` and returns its wall time; panics unless it exits 0.
fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let ran = run(command);
    let elapsed = started.elapsed();
    assert_eq!(ran.code, 0, "{command:?}: {ran:#?}");
    elapsed
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&work.path().join("daemon"), &[]);
    let home = work.path().join("home");
    let submit = |cwd: &Path, args: &[&str]| {
        let mut command = trtfarm(&home);
        command
            .current_dir(cwd)
            .args(["--daemon", &daemon.endpoint, "submit"])
            .args(args);
        command
    };

    // 1. Cold build vs cache-hit process.
    let examples = integration::examples_copy();
    let cold = timed(&mut submit(examples.path(), &["cnn-dynamic-batch"]));
    let mut hits: Vec<Duration> = (0..CACHE_HIT_RUNS)
        .map(|_| timed(&mut submit(examples.path(), &["cnn-dynamic-batch"])))
        .collect();
    let hit_p50 = percentile(&mut hits, 0.5);
    println!(
        "trtfarm submit, cnn-dynamic-batch: cold build {:.1} ms; cache hit p50 {:.1} ms, p90 {:.1} ms \
         ({CACHE_HIT_RUNS} runs); cold / hit = {:.1}x",
        ms(cold),
        ms(hit_p50),
        ms(percentile(&mut hits, 0.9)),
        cold.as_secs_f64() / hit_p50.as_secs_f64()
    );

    // 2. 100 manifests sharing 2 GiB of model files.
    let repo = work.path().join("repo");
    write_repository(&repo);
    // The digest cache does not remember files modified within the last second (they may
    // still change unseen within one mtime tick); let the freshly written ones settle.
    std::thread::sleep(Duration::from_millis(1500));
    let first = timed(&mut submit(&repo, &[]));
    let noop = timed(&mut submit(&repo, &[]));
    let mut without_cache = submit(&repo, &[]);
    without_cache.env(
        "TRTFARM_DIGEST_CACHE",
        work.path().join("empty-digest-cache.redb"),
    );
    let rehash = timed(&mut without_cache);
    let noop_again = timed(&mut submit(&repo, &[]));
    println!(
        "{MANIFESTS} manifests sharing 2 GiB (2 models x 1 GiB external data): first submit \
         (hash + upload 2 GiB + 2 builds) {:.0} ms; no-op resubmit {:.0} ms and {:.0} ms; \
         resubmit with an empty digest cache (re-hash 2 GiB) {:.0} ms",
        ms(first),
        ms(noop),
        ms(noop_again),
        ms(rehash)
    );
    println!(
        "  first / no-op = {:.1}x; re-hash / no-op = {:.1}x",
        first.as_secs_f64() / noop.as_secs_f64(),
        rehash.as_secs_f64() / noop.as_secs_f64()
    );

    // 3. 100 manifests, each with its own copy of a real 10.8 MB recogniser (1 GB of models,
    //    read by `check` unless it remembers them).
    let copies = work.path().join("copies");
    let recogniser = integration::real_models::network("ocr-rec");
    std::fs::create_dir_all(copies.join(".git")).unwrap();
    for i in 0..MANIFESTS {
        let manifest = recogniser.write_project(&copies.join(format!("r{i:03}")));
        let text = std::fs::read_to_string(&manifest).unwrap();
        // Only the fp32 engine: the point is the client's work, not the builds.
        let fp32_only = text
            .split("\n[[engine]]")
            .take(2)
            .collect::<Vec<_>>()
            .join("\n[[engine]]");
        std::fs::write(&manifest, fp32_only).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut check = trtfarm(&home);
    check.current_dir(&copies).arg("check");
    let check_cold = timed(&mut check);
    let first = timed(&mut submit(&copies, &[]));
    let mut noops: Vec<Duration> = (0..5).map(|_| timed(&mut submit(&copies, &[]))).collect();
    let noop = percentile(&mut noops, 0.5);
    let mut checks: Vec<Duration> = (0..5)
        .map(|_| {
            let mut check = trtfarm(&home);
            check.current_dir(&copies).arg("check");
            timed(&mut check)
        })
        .collect();
    let check_warm = percentile(&mut checks, 0.5);
    println!(
        "{MANIFESTS} manifests, each its own copy of the 10.8 MB PP-OCRv4 recogniser: trtfarm check \
         before any submit {:.0} ms; first submit {:.0} ms; no-op resubmit p50 {:.0} ms (5 runs); \
         trtfarm check after {:.0} ms; cold check / no-op resubmit = {:.1}x",
        ms(check_cold),
        ms(first),
        ms(noop),
        ms(check_warm),
        check_cold.as_secs_f64() / noop.as_secs_f64()
    );
}

/// `models/{a,b}.onnx` with 1 GiB external-data files, and `m000`..`m099/engine.toml`, half
/// naming each model.
fn write_repository(repo: &Path) {
    let models = repo.join("models");
    std::fs::create_dir_all(&models).unwrap();
    // A repository: the manifests' shared `../models` is inside their project.
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    for (index, name) in ["a", "b"].into_iter().enumerate() {
        let mut g = GraphBuilder::new(name, index as u64 + 1);
        let x = g.input("images", DataType::Float, dims!["N", 3, 16, 16]);
        let x = g.conv2d(&x, onnx_graph::Conv2d::new(3, 8, 3));
        let x = g.relu(&x);
        let x = g.global_average_pool(&x);
        g.output("features", &x, DataType::Float, dims!["N", 8, 1, 1]);
        let model = models.join(format!("{name}.onnx"));
        let data = format!("{name}.onnx.data");
        onnx_graph::external_data::write_with_external_data(
            &ModelBuilder::new(g).build(),
            &model,
            &data,
        )
        .unwrap();
        append_padding(&models.join(&data), index as u64);
    }
    for i in 0..MANIFESTS {
        let dir = repo.join(format!("m{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        let model = if i < MANIFESTS / 2 { "a" } else { "b" };
        let manifest = integration::models::images_manifest(
            &format!("../models/{model}.onnx"),
            16,
            &[("fp32", 3)],
        );
        std::fs::write(dir.join("engine.toml"), manifest).unwrap();
    }
}

/// Appends [`PADDING_BYTES`] of pseudo-random bytes (real blocks on disk, not a sparse hole).
fn append_padding(path: &Path, seed: u64) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let mut rng = SplitMix64::new(seed);
    let mut block: Vec<u8> = (0..(16 << 20) / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    for round in 0..PADDING_BYTES / block.len() as u64 {
        block[..8].copy_from_slice(&round.to_le_bytes());
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
}
