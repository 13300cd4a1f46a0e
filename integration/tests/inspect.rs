//! `trtfarm inspect` with the real binary against a real daemon on loopback (a TensorRT-RTX
//! build of the example classifier): by engine file, by digest and by `MANIFEST#ENGINE`, the
//! digest, toolchain, action key and layer precisions agree with `engine.lock` and
//! `submit --json`, and the provenance names the model; an engine no lock names is an error
//! that says what to do.

use std::path::Path;

use integration::cli::{Ran, run, trtfarm};
use integration::daemon::Daemon;

fn inspect(home: &Path, endpoint: &str, cwd: &Path, args: &[&str]) -> Ran {
    run(trtfarm(home)
        .current_dir(cwd)
        .args(["--daemon", endpoint, "inspect"])
        .args(args))
}

#[test]
fn an_engine_is_described_by_file_digest_and_manifest_and_an_unlocked_one_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(root.path(), &[]);
    let home = tempfile::tempdir().unwrap();
    let examples = integration::examples_copy();
    let dir = examples.path();

    let submitted = run(trtfarm(home.path()).current_dir(dir).args([
        "--daemon",
        &daemon.endpoint,
        "submit",
        "--json",
        "cnn-dynamic-batch",
    ]))
    .expect_code(0, "submit");
    let document: serde_json::Value = serde_json::from_str(&submitted.stdout).unwrap();
    let variant = &document["variants"][0];
    let engine = variant["engine"].as_str().unwrap().to_string();
    let layers = variant["layers_by_precision"].clone();
    assert!(
        layers.as_object().is_some_and(|l| !l.is_empty()),
        "the build reported layer precisions: {variant}"
    );

    let manifest = dir.join("cnn-dynamic-batch/engine.toml");
    let lock = trtfarm::lock::read_lock(&manifest).unwrap().unwrap();
    let locked = lock.engine("fp32").unwrap();
    assert_eq!(locked.engine.to_string(), engine);

    let engine_file = "cnn-dynamic-batch/build/classifier.fp32.engine";
    for what in [engine_file, &engine, "cnn-dynamic-batch/engine.toml#fp32"] {
        let ran =
            inspect(home.path(), &daemon.endpoint, dir, &["--json", what]).expect_code(0, what);
        let seen: serde_json::Value = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{what}: one JSON document ({e}): {ran:#?}"));
        assert_eq!(seen["engine"], engine.as_str(), "{what}");
        assert_eq!(seen["daemon_record"], true, "{what}");
        let entry = &seen["locks"][0];
        assert_eq!(entry["name"], "fp32", "{what}");
        assert_eq!(entry["action_key"], locked.action_key.to_string(), "{what}");
        assert_eq!(entry["toolchain"]["flavour"], "tensorrt-rtx", "{what}");
        assert_eq!(
            entry["toolchain"]["version"],
            locked.toolchain.version.to_string(),
            "{what}"
        );
        let result = &seen["result"];
        assert_eq!(
            result["toolchain"]["version"],
            locked.toolchain.version.to_string(),
            "{what}"
        );
        assert_eq!(result["layers_by_precision"], layers, "{what}");
        assert_eq!(result["blobs"]["engine"], engine.as_str(), "{what}");
        assert!(result["blobs"]["build_log"].is_string(), "{what}: {result}");
        let predicate = &seen["provenance"]["predicate"];
        assert_eq!(
            predicate["actionKey"],
            locked.action_key.to_string(),
            "{what}"
        );
        assert_eq!(predicate["inputs"][0]["path"], "classifier.onnx", "{what}");
        assert_eq!(
            seen["profiles"][0]["inputs"]["images"]["max"],
            serde_json::json!([32, 3, 64, 64]),
            "{what}"
        );
    }

    let text = inspect(home.path(), &daemon.endpoint, dir, &[engine_file]).expect_code(0, "text");
    for expected in [
        format!("engine              {engine}\n"),
        "locked as           cnn-dynamic-batch/engine.toml#fp32\n".to_string(),
        format!("action key          {}\n", locked.action_key),
        format!(
            "toolchain           tensorrt-rtx {}",
            locked.toolchain.version
        ),
        "target              sm86,sm89\n".to_string(),
        "input               model classifier.onnx blake3:".to_string(),
        "setting             precision = \"fp32\"\n".to_string(),
        "profile             batch-1-to-32: images min [1, 3, 64, 64]".to_string(),
    ] {
        assert!(text.stdout.contains(&expected), "{expected:?}: {text:#?}");
    }
    let summary = layers
        .as_object()
        .unwrap()
        .iter()
        .map(|(precision, count)| format!("{precision} {count}"))
        .next()
        .unwrap();
    assert!(text.stdout.contains(&summary), "{summary}: {text:#?}");

    // A daemon that never built it: what the lock says, and that the daemon has no record.
    let other_root = tempfile::tempdir().unwrap();
    let other = Daemon::start(other_root.path(), &[]);
    let unknown = inspect(home.path(), &other.endpoint, dir, &["--json", engine_file])
        .expect_code(0, "another daemon");
    let seen: serde_json::Value = serde_json::from_str(&unknown.stdout).unwrap();
    assert_eq!(seen["daemon_record"], false, "{unknown:#?}");
    assert_eq!(seen["result"], serde_json::Value::Null, "{unknown:#?}");
    assert_eq!(
        seen["locks"][0]["action_key"],
        locked.action_key.to_string()
    );
    assert!(
        seen["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("the daemon has no record of action key")),
        "{unknown:#?}"
    );
    let unknown = inspect(home.path(), &other.endpoint, dir, &[engine_file]).expect_code(0, "text");
    assert!(
        unknown
            .stdout
            .contains("daemon              no record of this build\n"),
        "{unknown:#?}"
    );

    // Elsewhere no lock names it: the error says so and how to inspect it.
    let elsewhere = tempfile::tempdir().unwrap();
    let absolute = dir.join(engine_file);
    let refused = inspect(
        home.path(),
        &daemon.endpoint,
        elsewhere.path(),
        &[absolute.to_str().unwrap()],
    )
    .expect_code(2, "not in any lock");
    assert!(
        refused.stderr.contains("no engine.lock under")
            && refused.stderr.contains(&engine)
            && refused.stderr.contains("MANIFEST#ENGINE"),
        "{refused:#?}"
    );
    let missing = inspect(
        home.path(),
        &daemon.endpoint,
        dir,
        &["cnn-dynamic-batch/engine.toml#fp16"],
    )
    .expect_code(2, "no such engine in the lock");
    assert!(
        missing
            .stderr
            .contains("has no engine `fp16` (it has: fp32)"),
        "{missing:#?}"
    );
}
