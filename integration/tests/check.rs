//! `trtfarm check` as a user runs it: the real binary on real manifests and models.

use std::path::Path;
use std::process::{Command, Output};

use integration::cli::{self, LocalDaemons, run, serve_processes};
use integration::daemon::Daemon;
use integration::{binary, examples_copy};

/// `trtfarm ARGS` in `cwd`, with per-user directories of its own: a local daemon the person
/// running the tests has started is not asked about toolchains.
fn trtfarm(args: &[&str], cwd: &Path) -> Output {
    let home = tempfile::tempdir().unwrap();
    cli::trtfarm(home.path())
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run trtfarm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_example_passes_check() {
    let examples = examples_copy();

    let output = trtfarm(&["check", "."], examples.path());

    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("checked 5 manifests: 5 ok, 0 failed"),
        "{stdout}"
    );
    for example in onnx_graph::example_models::EXAMPLES {
        assert!(
            stdout.contains(example.dir),
            "{example:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn every_example_passes_check_as_json() {
    let examples = examples_copy();

    let output = trtfarm(&["check", "--json", "."], examples.path());

    assert!(output.status.success(), "{}", text(&output.stderr));
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(document["ok"], true);
    let manifests = document["manifests"].as_array().expect("manifests array");
    assert_eq!(manifests.len(), 5);
    let fanout = manifests
        .iter()
        .find(|m| {
            m["path"]
                .as_str()
                .is_some_and(|p| p.contains("precision-fanout"))
        })
        .expect("precision-fanout is listed");
    assert!(fanout["engines"].as_array().is_some_and(|e| e.len() > 1));
}

#[test]
fn a_broken_manifest_fails_with_its_location_and_hint() {
    let examples = examples_copy();
    let manifest = examples.path().join("cnn-dynamic-batch/engine.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let broken = original.replacen("[defaults]\n", "[defaults]\nprecison = \"fp16\"\n", 1);
    assert_ne!(broken, original, "the example has a [defaults] table");
    std::fs::write(&manifest, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.starts_with("precison"))
        .unwrap()
        + 1;

    let output = trtfarm(&["check", "."], examples.path());

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("cnn-dynamic-batch/engine.toml:{line}:1")),
        "{stderr}"
    );
    assert!(stderr.contains("precision"), "{stderr}");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("4 ok, 1 failed"), "{stdout}");
}

#[test]
fn a_profile_for_an_input_the_model_lacks_is_reported() {
    let examples = examples_copy();
    let manifest = examples.path().join("cnn-dynamic-batch/engine.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let broken = original.replace("inputs.images", "inputs.image");
    assert_ne!(broken, original, "the example profiles `images`");
    std::fs::write(&manifest, broken).unwrap();

    let output = trtfarm(&["check", "--json", "cnn-dynamic-batch"], examples.path());

    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let messages: Vec<&str> = document["manifests"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("`image`")),
        "{messages:?}"
    );
}

#[test]
fn a_file_that_is_not_onnx_is_reported_at_the_model_path() {
    let examples = examples_copy();
    let model = examples.path().join("multi-input/ranker.onnx");
    std::fs::write(&model, "this is not a protobuf").unwrap();

    let output = trtfarm(&["check", "multi-input"], examples.path());

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not an ONNX model"), "{stderr}");
    assert!(stderr.contains("multi-input/engine.toml:"), "{stderr}");
}

#[test]
fn a_missing_path_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = trtfarm(&["check", "nowhere"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("nowhere"));
}

#[test]
fn a_model_outside_the_project_needs_its_directory_in_trtfarm_input_roots() {
    let examples = examples_copy();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let shared = dir.path().join("models");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::copy(
        examples.path().join("cnn-dynamic-batch/classifier.onnx"),
        shared.join("classifier.onnx"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(examples.path().join("cnn-dynamic-batch/engine.toml"))
        .unwrap()
        .replace(
            "path = \"classifier.onnx\"",
            "path = \"../models/classifier.onnx\"",
        );
    std::fs::write(project.join("engine.toml"), manifest).unwrap();

    let refused = trtfarm(&["check", "engine.toml"], &project);
    let stderr = text(&refused.stderr) + &text(&refused.stdout);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("outside the project") && stderr.contains("TRTFARM_INPUT_ROOTS"),
        "{stderr}"
    );

    let allowed = Command::new(binary("trtfarm"))
        .args(["check", "engine.toml"])
        .current_dir(&project)
        .env("NO_COLOR", "1")
        .env(
            "TRTFARM_INPUT_ROOTS",
            format!("relative:{}", shared.display()),
        )
        .output()
        .unwrap();
    assert!(
        allowed.status.success(),
        "{}{}",
        text(&allowed.stdout),
        text(&allowed.stderr)
    );
}

/// The cnn-dynamic-batch example with `toolchain` replaced by `toolchain`, as a project of its
/// own; returns its directory.
fn classifier_project(examples: &Path, toolchain: &str) -> std::path::PathBuf {
    let project = examples.join("cnn-dynamic-batch");
    let manifest = project.join("engine.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "toolchain = \"tensorrt-rtx 1.7\"",
        &format!("toolchain = \"{toolchain}\""),
    );
    assert!(text.contains(toolchain), "the example names its toolchain");
    std::fs::write(&manifest, text).unwrap();
    project
}

#[test]
fn toolchains_are_checked_against_a_reachable_daemon_and_never_start_one() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("daemon");
    let _cleanup = LocalDaemons::new(&dir);
    let examples = examples_copy();
    let project = classifier_project(examples.path(), "tensorrt-rtx 1.6");
    let check = |extra: &[&str]| {
        run(cli::trtfarm(home.path())
            .args(["check", "engine.toml", "--daemon-dir"])
            .arg(&dir)
            .args(extra)
            .current_dir(&project)
            .env("NO_COLOR", "1"))
    };

    // No daemon runs: one note, no error, and none started.
    let ran = check(&[]).expect_code(0, "nothing to check the toolchain against");
    let notes: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains("toolchains were not checked against a daemon"))
        .collect();
    assert_eq!(notes.len(), 1, "{ran:#?}");
    assert!(serve_processes(&dir).is_empty(), "check started no daemon");
    let ran = check(&["--json"]).expect_code(0, "json, no daemon");
    let document: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(document["daemon"]["checked"], false, "{document}");

    // A daemon named with --daemon has 1.7 only: 1.6 is an error at the toolchain value.
    let daemon = Daemon::start(&home.path().join("farm"), &[]);
    let ran = check(&["--daemon", &daemon.endpoint]).expect_code(1, "1.6 is missing");
    assert!(
        ran.stderr.contains(&format!(
            "error: toolchain `tensorrt-rtx 1.6` (for engine `fp32`) is not one the daemon at {} has",
            daemon.endpoint
        )) && ran.stderr.contains("engine.toml:12:13"),
        "{ran:#?}"
    );
    assert!(
        ran.stderr.contains("the daemon has `tensorrt-rtx 1.7.")
            && ran
                .stderr
                .contains("write toolchain = \"tensorrt-rtx 1.7\""),
        "{ran:#?}"
    );
    assert!(!ran.stderr.contains("not checked"), "{ran:#?}");
    // Submitted anyway, the daemon's refusal points at the same line.
    let ran = run(cli::trtfarm(home.path())
        .args(["submit", "engine.toml", "--daemon", &daemon.endpoint])
        .current_dir(&project)
        .env("NO_COLOR", "1"))
    .expect_code(1, "submit is refused");
    assert!(
        ran.stdout
            .contains("FAILED  engine `fp32` asks for `tensorrt-rtx 1.6`")
            && ran.stdout.contains(
                "    --> engine.toml:12:13\n       |\n    12 | toolchain = \"tensorrt-rtx 1.6\"\n"
            ),
        "{ran:#?}"
    );
    let ran = check(&["--json", "--daemon", &daemon.endpoint]).expect_code(1, "json");
    let document: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(document["daemon"]["checked"], true, "{document}");
    assert_eq!(document["daemon"]["endpoint"], daemon.endpoint.as_str());
    let message = document["manifests"][0]["diagnostics"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("`tensorrt-rtx 1.6`"), "{document}");

    // The private local daemon, once running, is asked without being named.
    run(cli::trtfarm(home.path())
        .args(["daemon", "start", "--daemon-dir"])
        .arg(&dir))
    .expect_code(0, "start the local daemon");
    let ran = check(&[]).expect_code(1, "the local daemon lacks 1.6 too");
    assert!(
        ran.stderr.contains("is not one the daemon at unix:"),
        "{ran:#?}"
    );
    std::fs::write(
        project.join("engine.toml"),
        std::fs::read_to_string(project.join("engine.toml"))
            .unwrap()
            .replace("tensorrt-rtx 1.6", "tensorrt-rtx 1.7"),
    )
    .unwrap();
    check(&[]).expect_code(0, "1.7 is there");
}

#[test]
fn autocast_operators_the_model_lacks_fail_with_the_right_spelling() {
    let examples = examples_copy();
    let project = classifier_project(examples.path(), "tensorrt-rtx 1.7");
    let manifest = project.join("engine.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let with_list = |list: &str| {
        format!("{original}\n[[engine]]\nname = \"fp16\"\nprecision = \"fp16\"\n{list}\n")
    };
    let last_line = |text: &str| text.lines().count();

    let keep = with_list("autocast.keep_fp32 = [\"conv\"]");
    std::fs::write(&manifest, &keep).unwrap();
    let output = trtfarm(&["check", "engine.toml"], &project);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: `autocast.keep_fp32` lists `conv`, but model `classifier.onnx` has no \
             operator of that type"
        ) && stderr.contains("did you mean `Conv`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("engine.toml:{}:23", last_line(&keep))),
        "{stderr}"
    );

    let convert = with_list("autocast.convert = [\"conv\"]");
    std::fs::write(&manifest, &convert).unwrap();
    let output = trtfarm(&["check", "engine.toml"], &project);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: `autocast.convert` lists `conv`")
            && stderr.contains("so it would convert nothing")
            && stderr.contains("did you mean `Conv`?")
            && stderr.contains(&format!("engine.toml:{}:21", last_line(&convert))),
        "{stderr}"
    );

    std::fs::write(&manifest, with_list("autocast.keep_fp32 = [\"Conv\"]")).unwrap();
    let output = trtfarm(&["check", "engine.toml"], &project);
    assert!(output.status.success(), "{}", text(&output.stderr));
}
