//! The real `trtfarm` binary against a real daemon on loopback (TensorRT-RTX builds): `submit`
//! builds, fetches and locks, answers from the cache, `--locked` and `--json`; `verify`
//! rebuilds and compares with the lock; `watch` rebuilds on new weights but not on a `touch`;
//! models with external data build and their data is part of the engine's identity.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use integration::cli::{Ran, run, trtfarm};
use integration::daemon::Daemon;
use integration::models::{deep_cnn, images_manifest};
use onnx_graph::{DataType, GraphBuilder, ModelBuilder, dims};

const BUILDS: &str = "trtfarm_builds_started_total";

/// Generous bound for anything a test waits on (builds take about a second here).
const PATIENCE: Duration = Duration::from_secs(180);

/// A daemon, a home for the CLI's caches, and a working directory.
struct Farm {
    daemon: Daemon,
    home: tempfile::TempDir,
    _root: tempfile::TempDir,
}

impl Farm {
    fn start() -> Farm {
        let root = tempfile::tempdir().unwrap();
        Farm {
            daemon: Daemon::start(root.path(), &[]),
            home: tempfile::tempdir().unwrap(),
            _root: root,
        }
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> std::process::Command {
        let mut command = trtfarm(self.home.path());
        command
            .current_dir(cwd)
            .args(["--daemon", &self.daemon.endpoint])
            .args(args);
        command
    }

    fn trtfarm(&self, cwd: &Path, args: &[&str]) -> Ran {
        run(&mut self.command(cwd, args))
    }

    fn builds(&self) -> f64 {
        self.daemon.metric(BUILDS)
    }
}

fn lock_value(manifest: &Path, engine: &str, key: &str) -> String {
    let lock = trtfarm::lock::read_lock(manifest)
        .unwrap()
        .unwrap_or_else(|| panic!("no lock beside {}", manifest.display()));
    let entry = lock
        .engine(engine)
        .unwrap_or_else(|| panic!("{engine} is not in the lock of {}", manifest.display()));
    match key {
        "engine" => entry.engine.to_string(),
        "action_key" => entry.action_key.to_string(),
        other => panic!("no key {other}"),
    }
}

fn file_digest(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("blake3:{}/{}", blake3::hash(&bytes).to_hex(), bytes.len())
}

#[test]
fn submit_builds_locks_and_fetches_then_answers_from_the_cache_and_locked_catches_changes() {
    let farm = Farm::start();
    let examples = integration::examples_copy();
    let dir = examples.path();
    let lock = dir.join("cnn-dynamic-batch/engine.lock");
    let manifest = dir.join("cnn-dynamic-batch/engine.toml");
    let engine_file = dir.join("cnn-dynamic-batch/build/classifier.fp32.engine");

    let first = farm
        .trtfarm(dir, &["submit", "cnn-dynamic-batch"])
        .expect_code(0, "first submit");
    assert!(
        first
            .stdout
            .contains("cnn-dynamic-batch/engine.toml#fp32  built"),
        "{first:#?}"
    );
    assert_eq!(farm.builds(), 1.0);
    let locked_engine = lock_value(&manifest, "fp32", "engine");
    assert_eq!(
        file_digest(&engine_file),
        locked_engine,
        "the fetched file is the locked engine"
    );
    assert!(first.stdout.contains(&locked_engine), "{first:#?}");
    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert!(lock_text.starts_with("# engine.lock"), "{lock_text}");
    assert!(
        lock_text.contains("flavour = \"tensorrt-rtx\""),
        "{lock_text}"
    );
    assert!(lock_text.contains("target = \"sm86,sm89\""), "{lock_text}");

    let inode = std::fs::metadata(&engine_file).unwrap().ino();
    let second = farm
        .trtfarm(dir, &["submit", "cnn-dynamic-batch"])
        .expect_code(0, "second submit");
    assert!(
        second.stdout.contains("#fp32  cached  blake3:"),
        "{second:#?}"
    );
    assert_eq!(farm.builds(), 1.0, "a cache hit builds nothing");
    assert_eq!(
        std::fs::metadata(&engine_file).unwrap().ino(),
        inode,
        "an output that already has the engine's digest is not downloaded again"
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        lock_text,
        "the lock is unchanged"
    );

    let json = farm
        .trtfarm(dir, &["submit", "--json", "cnn-dynamic-batch"])
        .expect_code(0, "--json");
    let document: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {}", json.stdout));
    assert_eq!(document["ok"], true);
    let variant = &document["variants"][0];
    assert_eq!(variant["status"], "cached");
    assert_eq!(variant["engine"], locked_engine.as_str());
    assert_eq!(
        variant["action_key"],
        lock_value(&manifest, "fp32", "action_key").as_str()
    );
    assert_eq!(variant["toolchain"]["flavour"], "tensorrt-rtx");
    assert_eq!(variant["manifest"], "cnn-dynamic-batch/engine.toml");

    farm.trtfarm(dir, &["submit", "--locked", "cnn-dynamic-batch"])
        .expect_code(0, "--locked");

    let text = std::fs::read_to_string(&manifest).unwrap();
    let changed = text.replace(
        "toolchain = \"tensorrt-rtx 1.7\"",
        "toolchain = \"tensorrt-rtx 1.7\"\noptimization_level = 2",
    );
    assert_ne!(changed, text);
    std::fs::write(&manifest, changed).unwrap();
    let refused = farm
        .trtfarm(dir, &["submit", "--locked", "cnn-dynamic-batch"])
        .expect_code(1, "--locked after a change");
    let old_key = lock_value(&manifest, "fp32", "action_key");
    assert!(refused.stderr.contains("[[engine]] fp32"), "{refused:#?}");
    assert!(
        refused
            .stderr
            .contains(&format!("- action_key = \"{old_key}\"")),
        "{refused:#?}"
    );
    assert!(refused.stderr.contains("+ action_key = \""), "{refused:#?}");
    // Why: the lock recorded the settings, so the one that moved is named.
    assert!(
        refused
            .stderr
            .contains("setting optimization_level: \"3\" -> \"2\""),
        "{refused:#?}"
    );
    let refused = farm
        .trtfarm(dir, &["submit", "--locked", "--json", "cnn-dynamic-batch"])
        .expect_code(1, "--locked --json after a change");
    let document: serde_json::Value = serde_json::from_str(&refused.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}): {refused:#?}"));
    let diff = &document["lock_diff"][0];
    assert_eq!(diff["engine"], "fp32", "{document:#}");
    assert_eq!(diff["kind"], "changed", "{document:#}");
    assert_eq!(
        diff["reasons"][0],
        serde_json::json!({"kind": "setting", "name": "optimization_level", "locked": "3", "now": "2"}),
        "{document:#}"
    );
    assert_eq!(farm.builds(), 1.0, "--locked built nothing");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        lock_text,
        "nor touched the lock"
    );
}

#[test]
fn reduced_precisions_build_from_converted_models_int8_without_qdq_fails_and_no_wait_returns() {
    let farm = Farm::start();
    let examples = integration::examples_copy();
    let dir = examples.path();
    let fanout = dir.join("precision-fanout/engine.toml");
    let text = std::fs::read_to_string(&fanout).unwrap();
    // One more engine: int8 on a model without Q/DQ nodes must fail, and say why.
    std::fs::write(
        &fanout,
        format!("{text}\n[[engine]]\nname = \"int8-sm86\"\nprecision = \"int8\"\ncompatibility.compute_capabilities = [\"8.6\"]\n"),
    )
    .unwrap();
    let ran = farm
        .trtfarm(dir, &["submit", "precision-fanout"])
        .expect_code(1, "the int8 variant fails");
    let line = |variant: &str| {
        ran.stdout
            .lines()
            .find(|l| l.starts_with(&format!("precision-fanout/engine.toml#{variant}  ")))
            .unwrap_or_else(|| panic!("no line for {variant}: {ran:#?}"))
            .to_string()
    };
    for variant in [
        "fp32-sm86",
        "fp16-sm86",
        "fp16-sm89",
        "bf16-sm89",
        "bf16-sm120",
        "fp16-portable",
    ] {
        assert!(line(variant).contains("  built "), "{variant}: {ran:#?}");
    }
    assert!(line("int8-sm86").contains("  FAILED  "), "{ran:#?}");
    let int8 = ran.stdout.clone() + &ran.stderr;
    assert!(
        int8.contains("QuantizeLinear") && int8.contains("modelopt"),
        "{ran:#?}"
    );
    let lock = std::fs::read_to_string(dir.join("precision-fanout/engine.lock")).unwrap();
    assert_eq!(
        lock.matches("[[engine]]").count(),
        6,
        "every built variant is locked: {lock}"
    );

    // An invalid manifest is reported like `trtfarm check` does, and nothing is submitted.
    let segmenter = dir.join("segmenter-dynamic-hw/engine.toml");
    let text = std::fs::read_to_string(&segmenter).unwrap();
    std::fs::write(
        &segmenter,
        text.replace(
            "schema_version = 1",
            "schema_version = 1\nprecison = \"fp16\"",
        ),
    )
    .unwrap();
    let invalid = farm
        .trtfarm(dir, &["submit", "segmenter-dynamic-hw"])
        .expect_code(1, "an invalid manifest");
    assert!(
        invalid.stderr.contains("unknown key `precison`"),
        "{invalid:#?}"
    );
    assert!(invalid.stdout.is_empty(), "{invalid:#?}");

    // Plugins are sent (role PLUGIN) and refused by today's daemon, which says why.
    let plugin_repo = tempfile::tempdir().unwrap();
    deep_cnn(plugin_repo.path(), 1, 4, 8, 1);
    std::fs::write(
        plugin_repo.path().join("libroi.so"),
        b"not really a library",
    )
    .unwrap();
    let manifest = images_manifest("deep.onnx", 8, &[("fp32", 3)]).replace(
        "path = \"deep.onnx\"",
        "path = \"deep.onnx\"\nplugins = [\"libroi.so\"]",
    );
    std::fs::write(plugin_repo.path().join("engine.toml"), manifest).unwrap();
    let refused = farm
        .trtfarm(plugin_repo.path(), &["submit"])
        .expect_code(1, "plugins are refused");
    assert!(
        refused
            .stdout
            .contains("plugin libraries are not supported"),
        "{refused:#?}"
    );

    let queued = farm
        .trtfarm(dir, &["submit", "--no-wait", "multi-input"])
        .expect_code(0, "--no-wait");
    assert!(
        queued
            .stdout
            .contains("multi-input/engine.toml#fp32  queued as job "),
        "{queued:#?}"
    );
    assert!(
        !dir.join("multi-input/engine.lock").exists(),
        "--no-wait writes no lock"
    );
}

#[test]
fn verify_rebuilds_bypassing_the_cache_and_compares_with_the_lock() {
    let farm = Farm::start();
    let examples = integration::examples_copy();
    let dir = examples.path();
    farm.trtfarm(dir, &["submit", "cnn-dynamic-batch", "multi-input"])
        .expect_code(0, "submit");
    assert_eq!(farm.builds(), 2.0);

    let verified = farm.trtfarm(dir, &["verify", "cnn-dynamic-batch", "multi-input"]);
    // TensorRT-RTX plans are byte-identical for the same key (docs/architecture.md); a DIFFERS
    // here is a real finding, not noise.
    let verified = verified.expect_code(0, "verify of fresh locks");
    assert!(
        verified
            .stdout
            .contains("cnn-dynamic-batch/engine.toml#fp32  match (engine digest)"),
        "{verified:#?}"
    );
    assert!(
        verified
            .stdout
            .contains("multi-input/engine.toml#fp32  match"),
        "{verified:#?}"
    );
    assert_eq!(
        farm.builds(),
        4.0,
        "verify rebuilt both, bypassing the cache"
    );

    // A lock whose engine digest is not what the build makes fails the check.
    let manifest = dir.join("cnn-dynamic-batch/engine.toml");
    let lock = dir.join("cnn-dynamic-batch/engine.lock");
    let real = lock_value(&manifest, "fp32", "engine");
    let forged = format!("blake3:{}/{}", "0".repeat(64), 1);
    let text = std::fs::read_to_string(&lock)
        .unwrap()
        .replace(&real, &forged);
    std::fs::write(&lock, text).unwrap();
    let differs = farm
        .trtfarm(dir, &["verify", "--json", "cnn-dynamic-batch"])
        .expect_code(1, "verify against a wrong lock");
    let document: serde_json::Value = serde_json::from_str(&differs.stdout).unwrap();
    assert_eq!(document["variants"][0]["verdict"], "differs");
    assert_eq!(document["variants"][0]["rebuilt_engine"], real.as_str());
}

/// A small model whose weights live in `net.onnx.data` beside it.
fn model_with_external_data(dir: &Path, seed: u64) -> PathBuf {
    let mut g = GraphBuilder::new("net", seed);
    let x = g.input("images", DataType::Float, dims!["N", 3, 16, 16]);
    let x = g.conv2d(&x, onnx_graph::Conv2d::new(3, 8, 3));
    let x = g.relu(&x);
    let x = g.global_average_pool(&x);
    g.output("features", &x, DataType::Float, dims!["N", 8, 1, 1]);
    let path = dir.join("net.onnx");
    onnx_graph::external_data::write_with_external_data(
        &ModelBuilder::new(g).build(),
        &path,
        "net.onnx.data",
    )
    .unwrap();
    path
}

#[test]
fn a_model_with_external_data_builds_and_its_data_is_part_of_the_key() {
    let farm = Farm::start();
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    model_with_external_data(dir, 1);
    std::fs::write(
        dir.join("engine.toml"),
        images_manifest("net.onnx", 16, &[("fp32", 3)]),
    )
    .unwrap();
    let first = farm
        .trtfarm(dir, &["submit", "--json"])
        .expect_code(0, "external data builds");
    let first: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(first["variants"][0]["status"], "built");

    // Same model file, different bytes in the data file: a different engine identity.
    let data = dir.join("net.onnx.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.iter_mut().step_by(4).for_each(|b| *b ^= 0x40);
    std::fs::write(&data, bytes).unwrap();
    let second = farm
        .trtfarm(dir, &["submit", "--json"])
        .expect_code(0, "new data builds");
    let second: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(second["variants"][0]["status"], "built");
    assert_ne!(
        first["variants"][0]["action_key"],
        second["variants"][0]["action_key"]
    );
    assert_eq!(farm.builds(), 2.0);
}

/// Lines of a child's stdout (its reports) and stderr (its progress and notes), as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    let forward = |stream: Box<dyn std::io::Read + Send>| {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    };
    forward(Box::new(child.stdout.take().unwrap()));
    forward(Box::new(child.stderr.take().unwrap()));
    receiver
}

/// Reads lines into `seen` until `done(seen)`; panics with what was seen after [`PATIENCE`].
fn wait_until(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "watch never showed {what}; it printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn count(seen: &[String], needle: &str) -> usize {
    seen.iter().filter(|line| line.contains(needle)).count()
}

#[test]
fn watch_rebuilds_on_new_weights_and_not_on_a_touch() {
    let farm = Farm::start();
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    let model = deep_cnn(dir, 1, 8, 32, 1);
    std::fs::write(
        dir.join("engine.toml"),
        images_manifest("deep.onnx", 32, &[("fp32", 3)]),
    )
    .unwrap();

    let mut child = farm
        .command(dir, &["watch", "--debounce-ms", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trtfarm watch");
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    let built = "engine.toml#fp32  built";
    let unchanged = "no content changed; nothing to rebuild";
    wait_until(&lines, &mut seen, "the first build", |seen| {
        count(seen, built) == 1 && count(seen, "watching 1 manifest and") == 1
    });
    assert_eq!(farm.builds(), 1.0);

    // A touch: new mtime, same bytes. The watcher looks, re-digests, and builds nothing.
    std::fs::File::options()
        .write(true)
        .open(&model)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    wait_until(&lines, &mut seen, "a look at the touched model", |seen| {
        count(seen, unchanged) >= 1
    });
    assert_eq!(count(&seen, built), 1, "{}", seen.join("\n"));
    assert_eq!(farm.builds(), 1.0, "a touch rebuilt: {}", seen.join("\n"));

    // New weights (another seed), written the way exporters do: a new file renamed over it.
    deep_cnn(dir, 1, 8, 32, 2);
    wait_until(&lines, &mut seen, "a second build", |seen| {
        count(seen, built) == 2
    });
    assert_eq!(farm.builds(), 2.0, "{}", seen.join("\n"));

    // Ctrl-C ends it cleanly.
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("watch ignored Ctrl-C");
    };
    assert!(status.success(), "watch after Ctrl-C: {status}");
}

#[test]
fn watch_carries_on_after_its_local_daemon_is_killed() {
    let home = tempfile::tempdir().unwrap();
    let daemon_dir = home.path().join("daemon");
    let _cleanup = integration::cli::LocalDaemons::new(&daemon_dir);
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    deep_cnn(dir, 1, 8, 32, 1);
    std::fs::write(
        dir.join("engine.toml"),
        images_manifest("deep.onnx", 32, &[("fp32", 3)]),
    )
    .unwrap();
    let mut child = trtfarm(home.path())
        .current_dir(dir)
        .args(["watch", "--debounce-ms", "200", "--daemon-dir"])
        .arg(&daemon_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trtfarm watch");
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    let built = "engine.toml#fp32  built";
    wait_until(&lines, &mut seen, "the first build", |seen| {
        count(seen, built) == 1
    });

    // The daemon dies between two changes; the next change starts it again and builds.
    let info = trtfarm_proto::local::DaemonInfo::read(&daemon_dir)
        .unwrap()
        .expect("the daemon watch started");
    // SAFETY: kill(2) on the daemon this test's watch started for its own directory.
    unsafe { libc::kill(info.pid as i32, libc::SIGKILL) };
    deep_cnn(dir, 1, 8, 32, 2);
    wait_until(&lines, &mut seen, "a build after the daemon died", |seen| {
        count(seen, built) == 2
    });
    assert!(
        count(&seen, "starting it again") >= 1,
        "{}",
        seen.join("\n")
    );
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
}

#[test]
fn an_engine_without_an_output_goes_where_fetch_puts_it_and_submit_says_where() {
    let farm = Farm::start();
    let root = tempfile::tempdir().unwrap();
    let manifest = integration::bench::tiny_project(root.path(), 7);
    let ran = farm
        .trtfarm(root.path(), &["submit", "tiny-7"])
        .expect_code(0, "submit");
    let engine = root.path().join("tiny-7/build/fp32.engine");
    assert!(
        ran.stdout.contains("-> tiny-7/build/fp32.engine"),
        "{ran:#?}"
    );
    let locked = lock_value(&manifest, "fp32", "engine");
    assert_eq!(file_digest(&engine), locked, "submit wrote the engine");
    std::fs::remove_file(&engine).unwrap();
    farm.trtfarm(root.path(), &["fetch", "tiny-7/engine.toml#fp32"])
        .expect_code(0, "fetch");
    assert_eq!(file_digest(&engine), locked, "fetch writes the same file");
}
