//! `trtfarm init` with the real binary: for every real network (detectors, recognisers, RNNs,
//! classifiers) the manifest it writes passes `trtfarm check` as written and names each of the
//! model's inputs; it refuses to overwrite without `--force`, and says what to do when the
//! current directory holds no model or several.

use std::path::Path;

use integration::cli::{Ran, run, trtfarm};
use integration::models::deep_cnn;
use integration::real_models::NETWORKS;

fn init(home: &Path, cwd: &Path, args: &[&str]) -> Ran {
    run(trtfarm(home).current_dir(cwd).arg("init").args(args))
}

#[test]
fn every_real_network_gets_a_manifest_that_check_accepts_and_that_names_its_inputs() {
    let home = tempfile::tempdir().unwrap();
    for network in NETWORKS {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(network.source(), dir.path().join(network.file)).unwrap();
        let ran = init(home.path(), dir.path(), &[]).expect_code(0, network.name);
        assert!(
            ran.stdout.contains("trtfarm submit"),
            "{}: {ran:#?}",
            network.name
        );

        let manifest = std::fs::read_to_string(dir.path().join("engine.toml")).unwrap();
        assert!(
            manifest.contains(&format!("path = \"{}\"", network.file)),
            "{}: {manifest}",
            network.name
        );
        let inputs = onnx_graph::read_graph_inputs(&dir.path().join(network.file)).unwrap();
        assert!(!inputs.is_empty(), "{}", network.name);
        for input in &inputs {
            assert!(
                manifest.contains(&format!("#   {input}\n")),
                "{}: input {input} is not listed: {manifest}",
                network.name
            );
            let dynamic = input.dims.iter().flatten().any(|d| d.is_dynamic());
            assert_eq!(
                manifest.contains(&format!("inputs.{} = {{", input.name)),
                dynamic,
                "{}: a profile line for {input} exactly when it is dynamic: {manifest}",
                network.name
            );
        }
        // Whether profiles were written is the network's own: the list gives one exactly
        // for the networks with dynamic inputs.
        assert_eq!(
            manifest.contains("[[profile]]"),
            !network.profiles.is_empty(),
            "{}: {manifest}",
            network.name
        );

        let check = run(trtfarm(home.path())
            .current_dir(dir.path())
            .args(["check", "--json"]))
        .expect_code(0, network.name);
        let document: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
        assert_eq!(document["ok"], true, "{}: {check:#?}", network.name);
        let engines: Vec<&str> = document["manifests"][0]["engines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(engines, ["fp32", "fp16"], "{}", network.name);
        assert_eq!(
            document["manifests"][0]["diagnostics"],
            serde_json::json!([]),
            "{}: no warnings either",
            network.name
        );
    }
}

#[test]
fn an_existing_manifest_is_kept_unless_forced() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    deep_cnn(dir.path(), 1, 4, 8, 1);
    let manifest = dir.path().join("engine.toml");
    std::fs::write(&manifest, "# mine\n").unwrap();

    let refused = init(home.path(), dir.path(), &["deep.onnx"]).expect_code(2, "refused");
    assert!(
        refused.stderr.contains("already exists") && refused.stderr.contains("--force"),
        "{refused:#?}"
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "# mine\n");

    init(home.path(), dir.path(), &["deep.onnx", "--force"]).expect_code(0, "--force");
    let written = std::fs::read_to_string(&manifest).unwrap();
    assert!(written.contains("inputs.images = {"), "{written}");
    assert!(written.contains("# placeholder sizes"), "{written}");

    // Elsewhere: a manifest in a directory above the model names it by its relative path.
    let project = tempfile::tempdir().unwrap();
    let models = project.path().join("models");
    std::fs::create_dir(&models).unwrap();
    deep_cnn(&models, 1, 4, 8, 2);
    init(
        home.path(),
        project.path(),
        &["models/deep.onnx", "--output", "."],
    )
    .expect_code(0, "--output a directory");
    let written = std::fs::read_to_string(project.path().join("engine.toml")).unwrap();
    assert!(written.contains("path = \"models/deep.onnx\""), "{written}");
    run(trtfarm(home.path())
        .current_dir(project.path())
        .arg("check"))
    .expect_code(0, "check the manifest written above the model");

    let outside = init(
        home.path(),
        project.path(),
        &["models/deep.onnx", "--output", "elsewhere/engine.toml"],
    )
    .expect_code(2, "a manifest beside, not above, the model");
    assert!(outside.stderr.contains("is not inside"), "{outside:#?}");
}

#[test]
fn no_model_or_several_say_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let none = init(home.path(), dir.path(), &[]).expect_code(2, "no model");
    assert!(
        none.stderr
            .contains("no .onnx model in the current directory")
            && none.stderr.contains("trtfarm init path/to/model.onnx"),
        "{none:#?}"
    );

    deep_cnn(dir.path(), 1, 4, 8, 1);
    std::fs::copy(dir.path().join("deep.onnx"), dir.path().join("other.onnx")).unwrap();
    let several = init(home.path(), dir.path(), &[]).expect_code(2, "several models");
    assert!(
        several
            .stderr
            .contains("several models (deep.onnx, other.onnx)"),
        "{several:#?}"
    );
    assert!(!dir.path().join("engine.toml").exists());

    std::fs::write(dir.path().join("notes.onnx.txt"), b"").unwrap();
    std::fs::write(dir.path().join("broken.onnx"), b"not a model").unwrap();
    let broken = init(home.path(), dir.path(), &["broken.onnx"]).expect_code(2, "not ONNX");
    assert!(broken.stderr.contains("needs an ONNX model"), "{broken:#?}");
    assert!(!dir.path().join("engine.toml").exists(), "nothing written");
}
