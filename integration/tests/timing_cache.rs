//! Locked timing caches end to end, through the real daemon (queue, store, registry, publish,
//! gRPC) and the real `trtfarm` CLI, with the FAKE Enterprise builder of `fake_enterprise`:
//! record → engine.lock pins the cache → a locked rebuild loads exactly that cache and keys on
//! it → another cache gives another key → a miss fails naming the layer and the fix → two
//! recordings finishing together both stay listed → refusals come at submit → `store gc` keeps
//! pinned caches. No real TensorRT Enterprise ran here (see README, "What is verified where").

mod fake_enterprise;

use std::path::{Path, PathBuf};

use fake_enterprise::{FAKE_GPU, FakeEnterpriseDaemon};
use integration::cli::{Ran, run, trtfarm};
use integration::models::deep_cnn;
use trtfarm_types::BlobDigest;
use trtfarm_types::lock::Lock;

/// A project directory `dir/name` holding a CNN (weights from `seed`) and a manifest building
/// it with TensorRT Enterprise under `policy`.
fn project(dir: &Path, name: &str, seed: u64, policy: &str, level: u8) -> PathBuf {
    let project = dir.join(name);
    std::fs::create_dir_all(&project).unwrap();
    deep_cnn(&project, 1, 4, 16, seed);
    write_manifest(&project, policy, level);
    project
}

fn write_manifest(project: &Path, policy: &str, level: u8) {
    let text = format!(
        r#"schema_version = 1

[model]
path = "deep.onnx"

[defaults]
toolchain = "tensorrt 10.13"
optimization_level = {level}
compatibility.gpu = "H100"
timing_cache.policy = "{policy}"

[[profile]]
inputs.images = {{ min = [1, 3, 16, 16], opt = [1, 3, 16, 16], max = [2, 3, 16, 16] }}

[[engine]]
name = "embed"
output = "build/embed.engine"
"#
    );
    std::fs::write(project.join("engine.toml"), text).unwrap();
}

fn lock_of(project: &Path) -> Lock {
    Lock::read_file(&project.join("engine.lock"))
        .unwrap()
        .expect("engine.lock was written")
}

fn pin_of(project: &Path) -> BlobDigest {
    lock_of(project)
        .engine("embed")
        .and_then(|e| e.timing_cache)
        .expect("engine.lock pins a timing cache")
}

fn action_key_of(project: &Path) -> String {
    lock_of(project)
        .engine("embed")
        .unwrap()
        .action_key
        .to_string()
}

/// Runs `trtfarm --daemon <fake> ARGS` off the async threads (the daemon runs on them).
async fn cli(home: &Path, daemon: &FakeEnterpriseDaemon, args: &[&str]) -> Ran {
    let mut command = trtfarm(home);
    command.arg("--daemon").arg(&daemon.endpoint).args(args);
    tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_pins_locked_loads_exactly_the_pin_and_a_miss_names_the_fix() {
    let daemon = FakeEnterpriseDaemon::start(2).await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let a = project(work.path(), "a", 1, "record", 3);

    // record: the build writes a cache, the registry publishes it, the lock pins it.
    cli(home.path(), &daemon, &["submit", path(&a)])
        .await
        .expect_code(0, "record build");
    let recorded = pin_of(&a);
    let builds = daemon.builds();
    assert_eq!(builds.len(), 1);
    assert!(builds[0].wrote_cache && builds[0].loaded_cache.is_none());
    let listed = cli(
        home.path(),
        &daemon,
        &["timing-cache", "ls", "--json", path(&a)],
    )
    .await
    .expect_code(0, "timing-cache ls");
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let engine = &listed["engines"][0];
    assert_eq!(engine["policy"], "record");
    assert_eq!(engine["scope"]["gpu_model"], FAKE_GPU);
    assert_eq!(engine["versions"].as_array().unwrap().len(), 1);
    assert_eq!(engine["versions"][0]["digest"], recorded.to_string());
    let pinned_by = engine["versions"][0]["pinned_by"][0].as_str().unwrap();
    assert!(pinned_by.ends_with("a/engine.toml#embed"), "{listed:#}");

    // locked: loads exactly the pinned cache with error-on-miss, writes nothing back, keeps
    // the pin, and the layer JSON shows the recorded tactics.
    write_manifest(&a, "locked", 3);
    cli(home.path(), &daemon, &["submit", path(&a)])
        .await
        .expect_code(0, "locked build");
    let locked = daemon.builds().last().cloned().unwrap();
    assert_eq!(
        locked.loaded_cache.as_deref(),
        Some(recorded.hex().as_str())
    );
    assert!(locked.error_on_miss && !locked.wrote_cache);
    assert_eq!(pin_of(&a), recorded, "a locked build keeps the pin");
    let key_with_recorded = action_key_of(&a);

    // The key follows the pin: `--locked` agrees with the lock, and a verifying rebuild held
    // to the same cache picks the same tactic for every layer.
    cli(home.path(), &daemon, &["submit", "--locked", path(&a)])
        .await
        .expect_code(0, "--locked with the same pin");
    let verified = cli(home.path(), &daemon, &["verify", "--json", path(&a)])
        .await
        .expect_code(0, "verify");
    assert!(verified.stdout.contains("\"match\""), "{verified:#?}");

    // A second recording (another model, same scope) starts from the newest cache and adds
    // its layers: a different cache. Pinned into a's lock, it gives a different key.
    let b = project(work.path(), "b", 2, "record", 3);
    cli(home.path(), &daemon, &["submit", path(&b)])
        .await
        .expect_code(0, "second recording");
    let second = pin_of(&b);
    assert_ne!(second, recorded);
    let lock_text = std::fs::read_to_string(a.join("engine.lock")).unwrap();
    std::fs::write(
        a.join("engine.lock"),
        lock_text.replace(&recorded.to_string(), &second.to_string()),
    )
    .unwrap();
    let drift = cli(home.path(), &daemon, &["submit", "--locked", path(&a)])
        .await
        .expect_code(1, "--locked with another pin");
    assert!(drift.stderr.contains("action"), "{drift:#?}");
    cli(home.path(), &daemon, &["submit", path(&a)])
        .await
        .expect_code(0, "locked build on the second cache");
    assert_eq!(
        daemon.builds().last().unwrap().loaded_cache.as_deref(),
        Some(second.hex().as_str())
    );
    assert_ne!(action_key_of(&a), key_with_recorded);
    assert_eq!(pin_of(&a), second);

    // A model the cache has never seen, locked: the build fails on the first layer it lacks,
    // naming it, the cache and the fix.
    let c = project(work.path(), "c", 3, "locked", 3);
    let miss = cli(home.path(), &daemon, &["submit", path(&c)])
        .await
        .expect_code(1, "a locked build that misses");
    let text = format!("{}{}", miss.stdout, miss.stderr);
    assert!(
        text.contains("timing cache miss for layer `conv_"),
        "{text}"
    );
    assert!(text.contains("is locked to timing cache blake3:"), "{text}");
    assert!(text.contains("timing_cache.policy = \"record\""), "{text}");
    assert!(text.contains(FAKE_GPU), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recordings_keep_every_version_and_refusals_come_at_submit() {
    let daemon = FakeEnterpriseDaemon::start(2).await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let d = project(work.path(), "d", 4, "record", 3);
    let e = project(work.path(), "e", 5, "record", 3);

    // One submit, two recordings of one scope on two slots, finishing together.
    cli(home.path(), &daemon, &["submit", path(&d), path(&e)])
        .await
        .expect_code(0, "two recordings");
    let (pin_d, pin_e) = (pin_of(&d), pin_of(&e));
    assert_ne!(pin_d, pin_e);
    let listed = cli(
        home.path(),
        &daemon,
        &["timing-cache", "ls", "--json", path(&d)],
    )
    .await
    .expect_code(0, "ls");
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let versions: Vec<String> = listed["engines"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(versions.len(), 2, "{listed:#}");
    assert!(versions.contains(&pin_d.to_string()) && versions.contains(&pin_e.to_string()));
    let shown = cli(
        home.path(),
        &daemon,
        &["timing-cache", "show", &pin_d.to_string()],
    )
    .await
    .expect_code(0, "show");
    assert!(shown.stdout.contains(FAKE_GPU), "{shown:#?}");

    let builds_before = daemon.builds().len();
    // Optimization level 0 ignores the timing cache: refused, naming the manifest.
    let zero = project(work.path(), "zero", 6, "locked", 0);
    let refused = cli(home.path(), &daemon, &["submit", path(&zero)])
        .await
        .expect_code(1, "level 0");
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("optimization_level = 0"),
        "{refused:#?}"
    );
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("zero/engine.toml"),
        "{refused:#?}"
    );

    // A pin the registry does not know.
    write_manifest(&d, "locked", 3);
    let lock_text = std::fs::read_to_string(d.join("engine.lock")).unwrap();
    let unknown = BlobDigest::of_bytes(b"never recorded");
    std::fs::write(
        d.join("engine.lock"),
        lock_text.replace(&pin_d.to_string(), &unknown.to_string()),
    )
    .unwrap();
    let refused = cli(home.path(), &daemon, &["submit", path(&d)])
        .await
        .expect_code(1, "unknown pin");
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("does not know"),
        "{refused:#?}"
    );
    // The daemon's refusal points at the line that sets the policy.
    assert!(
        refused.stdout.contains("engine.toml:10:23\n")
            && refused
                .stdout
                .contains("10 | timing_cache.policy = \"locked\"\n"),
        "{refused:#?}"
    );

    // A cache of another scope (recorded at optimization level 3, pinned by a level-4 build).
    write_manifest(&d, "locked", 4);
    std::fs::write(d.join("engine.lock"), &lock_text).unwrap();
    let refused = cli(home.path(), &daemon, &["submit", path(&d)])
        .await
        .expect_code(1, "another scope");
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("never merged"),
        "{refused:#?}"
    );
    assert_eq!(
        daemon.builds().len(),
        builds_before,
        "refusals never reach a builder"
    );

    // gc keeps the caches the locks pin (and every recorded version), even when old.
    let gc = tokio::task::spawn_blocking({
        let store = daemon.store_url.clone();
        let lock = e.join("engine.lock");
        move || {
            run(std::process::Command::new(integration::binary("trtfarmd"))
                .args([
                    "store",
                    "gc",
                    "--store",
                    &store,
                    "--older-than",
                    "0s",
                    "--json",
                    "--lock",
                ])
                .arg(lock))
        }
    })
    .await
    .unwrap()
    .expect_code(0, "store gc");
    let report: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    // It did collect: the uploaded models, which no result names, are gone.
    assert!(
        report["blobs_removed"]["objects"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    assert_eq!(
        report["failures"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    let fetched = work.path().join("fetched-cache");
    cli(
        home.path(),
        &daemon,
        &["fetch", &pin_e.to_string(), "-o", path(&fetched)],
    )
    .await
    .expect_code(0, "the pinned cache survives gc");
    assert_eq!(
        BlobDigest::of_bytes(&std::fs::read(&fetched).unwrap()),
        pin_e
    );
}
