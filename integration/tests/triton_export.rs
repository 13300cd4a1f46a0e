//! `trtfarm export --triton` against a real daemon (TensorRT-RTX builds on the CPU): the model
//! repository's `config.pbtxt` is parsed with Triton's own model-configuration protobuf
//! definitions (`model_config_pb2` from NVIDIA's `tritonclient` wheel, which `scripts/setup`
//! installs into `TRTFARM_PYTHON`'s environment), and every plan is the locked engine.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::cli::{Ran, run, trtfarm};
use integration::daemon::Daemon;
use trtfarm_types::lock::Lock;

/// Parses `config.pbtxt` (argv[1]) with `google.protobuf.text_format` into Triton's
/// `ModelConfig` and prints the fields the test checks as JSON. `model_config_pb2` is loaded by
/// file from the installed `tritonclient` package: its `grpc/__init__.py` wants grpcio, which
/// parsing does not need.
const PARSE_WITH_TRITON: &str = r#"
import importlib.util, json, os, sys
from google.protobuf import text_format
package = importlib.util.find_spec("tritonclient").submodule_search_locations[0]
spec = importlib.util.spec_from_file_location(
    "model_config_pb2", os.path.join(package, "grpc", "model_config_pb2.py"))
pb2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb2)
config = text_format.Parse(open(sys.argv[1]).read(), pb2.ModelConfig())
tensors = lambda ts: [
    {"name": t.name, "type": pb2.DataType.Name(t.data_type), "dims": list(t.dims)} for t in ts]
print(json.dumps({
    "name": config.name,
    "platform": config.platform,
    "max_batch_size": config.max_batch_size,
    "inputs": tensors(config.input),
    "outputs": tensors(config.output),
    "profiles": [list(g.profile) for g in config.instance_group],
    "cc_model_filenames": dict(config.cc_model_filenames),
}))
"#;

fn python() -> String {
    std::env::var("TRTFARM_PYTHON").expect(
        "TRTFARM_PYTHON is not set: run `scripts/setup` and `eval \"$(scripts/setup \
         --print-env)\"` (it installs tritonclient, whose model_config_pb2 this test parses with)",
    )
}

/// Triton's own reading of `config`, as JSON.
fn parse_with_triton(config: &Path) -> serde_json::Value {
    let ran = run(Command::new(python())
        .args(["-c", PARSE_WITH_TRITON])
        .arg(config))
    .expect_code(0, "Triton's model_config_pb2 parses config.pbtxt");
    serde_json::from_str(&ran.stdout).unwrap()
}

fn file_digest(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("blake3:{}/{}", blake3::hash(&bytes).to_hex(), bytes.len())
}

fn locked_engine(manifest: &Path, engine: &str) -> String {
    let lock = Lock::read_file(&manifest.with_file_name("engine.lock"))
        .unwrap()
        .unwrap_or_else(|| panic!("no lock beside {}", manifest.display()));
    lock.engine(engine).unwrap().engine.to_string()
}

/// One test's world: a real daemon, a user's home and the directory commands run in.
struct Exporting {
    root: tempfile::TempDir,
    daemon: Daemon,
    /// Where `trtfarm` runs: a copy of the examples, or the root.
    dir: PathBuf,
    /// Keeps the examples' copy.
    _examples: Option<tempfile::TempDir>,
}

impl Exporting {
    /// Runs in a copy of `examples/manifests`.
    fn in_examples() -> Exporting {
        let examples = integration::examples_copy();
        let mut world = Exporting::in_root();
        world.dir = examples.path().to_path_buf();
        world._examples = Some(examples);
        world
    }

    /// Runs in an empty directory.
    fn in_root() -> Exporting {
        let root = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(&root.path().join("daemon"), &[]);
        let dir = root.path().to_path_buf();
        Exporting {
            root,
            daemon,
            dir,
            _examples: None,
        }
    }

    /// `trtfarm --daemon … ARGS` in [`dir`](Self::dir).
    fn trtfarm(&self, args: &[&str]) -> Ran {
        let mut command = trtfarm(&self.root.path().join("home"));
        command
            .current_dir(&self.dir)
            .args(["--daemon", &self.daemon.endpoint])
            .args(args);
        run(&mut command)
    }

    /// Where the Triton repository goes.
    fn repository(&self) -> PathBuf {
        self.root.path().join("triton")
    }
}

#[test]
fn an_exported_repository_is_what_triton_reads_with_the_locked_plans() {
    let world = Exporting::in_examples();
    let trtfarm_in = |args: &[&str]| world.trtfarm(args);
    let dir = world.dir.as_path();
    let repository = world.repository();
    let repo_arg = repository.to_str().unwrap();

    // Nothing locked yet: export says what to run.
    let unlocked = trtfarm_in(&["export", "--triton", repo_arg, "multi-input"]);
    assert_eq!(unlocked.code, 2, "{unlocked:#?}");
    assert!(
        unlocked
            .stderr
            .contains("lock them first with `trtfarm submit multi-input/engine.toml`"),
        "{unlocked:#?}"
    );

    trtfarm_in(&["submit", "multi-input"]).expect_code(0, "submit");
    let exported =
        trtfarm_in(&["export", "--triton", repo_arg, "multi-input"]).expect_code(0, "export");
    let manifest = dir.join("multi-input/engine.toml");
    let locked = locked_engine(&manifest, "fp32");
    let model = repository.join("multi-input-fp32");
    let plan = model.join("1/model.plan");
    assert!(exported.stdout.contains("fetched"), "{exported:#?}");
    assert_eq!(
        file_digest(&plan),
        locked,
        "model.plan is the locked engine"
    );

    let config = parse_with_triton(&model.join("config.pbtxt"));
    assert_eq!(
        config,
        serde_json::json!({
            "name": "multi-input-fp32",
            "platform": "tensorrt_plan",
            "max_batch_size": 0,
            "inputs": [
                {"name": "features", "type": "TYPE_FP32", "dims": [-1, 32]},
                {"name": "context", "type": "TYPE_FP32", "dims": [-1, 16]},
            ],
            "outputs": [{"name": "score", "type": "TYPE_FP32", "dims": [-1, 1]}],
            "profiles": [],
            "cc_model_filenames": {},
        })
    );

    // Again: the plan there has its digest and is not fetched; a chosen name and version.
    let again =
        trtfarm_in(&["export", "--triton", repo_arg, "multi-input"]).expect_code(0, "export again");
    assert!(again.stdout.contains("unchanged"), "{again:#?}");
    trtfarm_in(&[
        "export",
        "--triton",
        repo_arg,
        "--model-name",
        "ranker",
        "--model-version",
        "3",
        "multi-input",
    ])
    .expect_code(0, "export under a name");
    assert_eq!(file_digest(&repository.join("ranker/3/model.plan")), locked);
    assert_eq!(
        parse_with_triton(&repository.join("ranker/config.pbtxt"))["name"],
        "ranker"
    );
}

#[test]
fn fp32_and_fp16_engines_with_two_profiles_export_their_types_and_profiles() {
    let world = Exporting::in_examples();
    let trtfarm_in = |args: &[&str]| world.trtfarm(args);
    let dir = world.dir.as_path();
    let repository = world.repository();
    let repo_arg = repository.to_str().unwrap();
    trtfarm_in(&["submit", "segmenter-dynamic-hw"]).expect_code(0, "submit");
    trtfarm_in(&["export", "--triton", repo_arg, "segmenter-dynamic-hw"]).expect_code(0, "export");
    let manifest = dir.join("segmenter-dynamic-hw/engine.toml");
    for (engine, data_type) in [("fp32", "TYPE_FP32"), ("fp16", "TYPE_FP16")] {
        let model = repository.join(format!("segmenter-dynamic-hw-{engine}"));
        assert_eq!(
            file_digest(&model.join("1/model.plan")),
            locked_engine(&manifest, engine)
        );
        let config = parse_with_triton(&model.join("config.pbtxt"));
        assert_eq!(
            config["inputs"],
            serde_json::json!([{"name": "image", "type": data_type, "dims": [1, 3, -1, -1]}]),
            "{engine}"
        );
        assert_eq!(
            config["outputs"],
            serde_json::json!([{"name": "mask_logits", "type": data_type, "dims": [1, 4, -1, -1]}]),
            "{engine}"
        );
        assert_eq!(
            config["profiles"],
            serde_json::json!([["0", "1"]]),
            "{engine}"
        );
    }
    // Two engines for the same GPUs cannot be one model with a plan per compute capability.
    let merged = trtfarm_in(&[
        "export",
        "--triton",
        repo_arg,
        "--model-name",
        "segmenter",
        "segmenter-dynamic-hw",
    ]);
    assert_eq!(merged.code, 2, "{merged:#?}");
    assert!(
        merged.stderr.contains("differ in their inputs or outputs"),
        "{merged:#?}"
    );
}

#[test]
fn engines_for_different_gpus_become_one_model_with_a_plan_per_compute_capability() {
    let world = Exporting::in_root();
    let project = world.dir.join("ranker");
    std::fs::create_dir_all(&project).unwrap();
    onnx_graph::write_model(
        &onnx_graph::example_models::ranker(),
        &project.join("ranker.onnx"),
    )
    .unwrap();
    let manifest = project.join("engine.toml");
    std::fs::write(
        &manifest,
        r#"schema_version = 1
[model]
path = "ranker.onnx"
[defaults]
toolchain = "tensorrt-rtx 1.7"
[[profile]]
inputs.features = { min = [1, 32], opt = [8, 32], max = [64, 32] }
inputs.context = { min = [1, 16], opt = [8, 16], max = [64, 16] }
[[engine]]
name = "ampere"
compatibility.compute_capabilities = ["8.6"]
[[engine]]
name = "ada-blackwell"
compatibility.compute_capabilities = ["8.9", "12.0"]
"#,
    )
    .unwrap();
    let trtfarm_in = |args: &[&str]| world.trtfarm(args);
    trtfarm_in(&["submit", "ranker"]).expect_code(0, "submit");
    let repository = world.repository();
    trtfarm_in(&[
        "export",
        "--triton",
        repository.to_str().unwrap(),
        "--model-name",
        "ranker",
        "ranker",
    ])
    .expect_code(0, "export as one model");
    let config = parse_with_triton(&repository.join("ranker/config.pbtxt"));
    assert_eq!(
        config["cc_model_filenames"],
        serde_json::json!({
            "8.6": "ampere.plan",
            "8.9": "ada-blackwell.plan",
            "12.0": "ada-blackwell.plan",
        })
    );
    for engine in ["ampere", "ada-blackwell"] {
        assert_eq!(
            file_digest(&repository.join(format!("ranker/1/{engine}.plan"))),
            locked_engine(&manifest, engine),
            "{engine}"
        );
    }
    assert!(!repository.join("ranker/1/model.plan").exists());
}

/// Triton's name for an ONNX element type, as the engine's bindings have it.
fn triton_type(element: &onnx_graph::ElementType) -> String {
    use onnx_graph::DataType;
    match element {
        onnx_graph::ElementType::Known(DataType::Float) => "TYPE_FP32",
        onnx_graph::ElementType::Known(DataType::Float16) => "TYPE_FP16",
        onnx_graph::ElementType::Known(DataType::Bfloat16) => "TYPE_BF16",
        onnx_graph::ElementType::Known(DataType::Int64) => "TYPE_INT64",
        onnx_graph::ElementType::Known(DataType::Int32) => "TYPE_INT32",
        other => panic!("a type this test does not map: {other}"),
    }
    .to_owned()
}

/// Real networks at fp16 and bf16 (a text detector with dynamic height and width, a voice
/// detector with an int64 input and a state, its LSTM version): the types `export` writes are
/// the types of the converted model TensorRT really built from, which the daemon keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_networks_export_the_types_of_the_model_their_engine_was_built_from() {
    let world = Exporting::in_root();
    for name in ["ocr-det", "silero-vad", "silero-vad-lstm"] {
        let network = integration::real_models::network(name);
        network.write_project(&world.dir.join(name));
    }
    let cli = |args: Vec<String>| {
        let world = &world;
        tokio::task::block_in_place(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            world.trtfarm(&args)
        })
    };
    let engines = ["--engine", "fp16", "--engine", "bf16"].map(String::from);
    let mut submit = vec!["submit".to_owned(), ".".to_owned()];
    submit.extend(engines.iter().cloned());
    cli(submit).expect_code(0, "submit the real networks");
    let repository = world.repository();
    let mut export = vec![
        "export".to_owned(),
        "--triton".to_owned(),
        repository.display().to_string(),
        ".".to_owned(),
    ];
    export.extend(engines.iter().cloned());
    cli(export).expect_code(0, "export");

    let mut client = world.daemon.client().await;
    let mut checked = 0;
    for name in ["ocr-det", "silero-vad", "silero-vad-lstm"] {
        let manifest = world.dir.join(name).join("engine.toml");
        let lock = Lock::read_file(&manifest.with_file_name("engine.lock"))
            .unwrap()
            .unwrap();
        for engine in ["fp16", "bf16"] {
            let locked = lock.engine(engine).unwrap();
            let result = client
                .get_action_result(trtfarm_proto::v1::GetActionResultRequest {
                    action_key: locked.action_key.to_string(),
                })
                .await
                .unwrap()
                .into_inner();
            let converted = world.root.path().join(format!("{name}-{engine}.onnx"));
            let digest = result.transformed_model.expect("a converted model");
            trtfarm::transfer::download_to_file(&mut client, &digest, &converted)
                .await
                .unwrap();
            let (inputs, outputs) = onnx_graph::read_graph_io(&converted).unwrap();
            let built: Vec<(String, String)> = inputs
                .iter()
                .chain(&outputs)
                .map(|io| (io.name.clone(), triton_type(&io.element_type)))
                .collect();
            let model = repository.join(format!("{name}-{engine}"));
            let config = parse_with_triton(&model.join("config.pbtxt"));
            let exported: Vec<(String, String)> = (config["inputs"].as_array().unwrap().iter())
                .chain(config["outputs"].as_array().unwrap())
                .map(|t| {
                    let field = |f: &str| t[f].as_str().unwrap().to_owned();
                    (field("name"), field("type"))
                })
                .collect();
            assert_eq!(exported, built, "{name} {engine}");
            assert_eq!(
                file_digest(&model.join("1/model.plan")),
                locked.engine.to_string()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}
