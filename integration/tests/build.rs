//! `trtfarmd toolchains` and `trtfarmd build` as a user runs them: the real binary, the real
//! TensorRT-RTX libraries (installed by scripts/setup), real example models.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use integration::{binary, examples_copy};

fn trtfarmd(args: &[&str], cwd: &Path) -> Output {
    Command::new(binary("trtfarmd"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run trtfarmd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn file_digest(path: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).expect("open plan"))
        .expect("hash plan");
    hasher.finalize().to_hex().to_string()
}

#[test]
fn toolchains_reports_tensorrt_rtx_with_the_digest_of_its_library() {
    let dir = tempfile::tempdir().unwrap();
    let output = trtfarmd(&["toolchains", "--json"], dir.path());
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rtx = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["flavour"] == "tensorrt-rtx")
        .expect("a TensorRT-RTX row");
    let version = rtx["version"].as_str().unwrap_or_else(|| {
        panic!(
            "TensorRT-RTX not found (run scripts/setup): {}",
            rtx["error"]
        )
    });
    assert!(version.starts_with("1.7."), "{version}");
    let library = Path::new(rtx["library"].as_str().unwrap());
    assert_eq!(
        rtx["library_digest"],
        format!("blake3:{}", file_digest(library))
    );
    // The stamp that lets each build skip hashing the library again: this very file.
    let metadata = std::fs::metadata(library).unwrap();
    let stamp = &rtx["stamps"]["library"];
    assert_eq!(stamp["inode"], metadata.ino(), "{rtx}");
    assert_eq!(stamp["size"], metadata.len(), "{rtx}");
    assert!(rtx["stamps"]["parser"].is_object(), "{rtx}");
}

#[test]
fn builds_an_example_engine_and_reports_its_real_digest() {
    let examples = examples_copy();
    let out = examples.path().join("out");

    let output = trtfarmd(
        &[
            "build",
            "cnn-dynamic-batch/engine.toml",
            "--out-dir",
            out.to_str().unwrap(),
        ],
        examples.path(),
    );

    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    let plan = out.join("fp32.engine");
    let size = std::fs::metadata(&plan).expect("the plan exists").len();
    assert!(size > 0);
    assert!(
        stdout.contains(&format!("blake3:{} {size} bytes", file_digest(&plan))),
        "{stdout}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "fp32.engine")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn converts_fp16_before_building_and_refuses_int8_without_qdq_nodes() {
    let examples = examples_copy();
    let out = examples.path().join("out");
    // The same model as an int8 engine: it has no Q/DQ nodes, so there is nothing to build int8
    // from, and building it as fp32 would be a lie.
    let manifest = examples.path().join("precision-fanout/engine.toml");
    let text_of = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{text_of}\n[[engine]]\nname = \"int8\"\nprecision = \"int8\"\n\
             compatibility.compute_capabilities = [\"8.9\"]\n"
        ),
    )
    .unwrap();

    let output = trtfarmd(
        &[
            "build",
            "precision-fanout/engine.toml",
            "--engine",
            "fp32-sm86",
            "--engine",
            "fp16-sm89",
            "--engine",
            "int8",
            "--out-dir",
            out.to_str().unwrap(),
        ],
        examples.path(),
    );

    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(stdout.contains("built  fp32-sm86"), "{stdout}");
    assert!(stdout.contains("built  fp16-sm89"), "{stdout}\n{stderr}");
    // TensorRT's own listing of what it built: every layer of the fp32 engine is fp32, and
    // (with fp32 I/O kept only by fp16-portable) most of fp16-sm89 is fp16.
    let layers = |engine: &str| {
        let line = stdout
            .lines()
            .skip_while(|l| !l.starts_with(&format!("built  {engine}:")))
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(line.starts_with("layers: "), "{engine}: {stdout}");
        line
    };
    assert!(!layers("fp32-sm86").contains("fp16"), "{stdout}");
    assert!(layers("fp16-sm89").starts_with("layers: fp16 "), "{stdout}");
    assert!(
        stderr.contains("fp16-sm89: info: trtfarm autocast to fp16"),
        "{stderr}"
    );
    assert!(out.join("fp16-sm89.engine.model.onnx").is_file());
    assert!(
        stdout.contains("FAILED int8") && stdout.contains("ModelOpt"),
        "{stdout}"
    );
    assert!(!out.join("int8.engine").exists());
}

#[test]
fn an_unknown_engine_name_lists_the_known_ones() {
    let examples = examples_copy();
    let output = trtfarmd(
        &["build", "multi-input/engine.toml", "--engine", "nope"],
        examples.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no engine `nope`") && stderr.contains("fp32"),
        "{stderr}"
    );
}
