//! `autocast_file`: external-data inputs and outputs, byte-identical reruns, and the ONNX checker
//! (full shape inference) on what autocast writes, from hand-made graphs, the example models and
//! the real models of the `onnx` wheel.

mod common;
mod support;

use std::fs;
use std::path::{Path, PathBuf};

use onnx_graph::autocast::{AutocastOptions, AutocastTarget, autocast_file, autocast_model};
use onnx_graph::example_models::EXAMPLES;
use onnx_graph::external_data::{read_external_data_locations, write_with_external_data};
use onnx_graph::proto::ModelProto;
use onnx_graph::{DataType, GraphBuilder, ModelBuilder, OnnxError, attr, dims};
use prost::Message;
use support::*;

fn fp16() -> AutocastOptions {
    AutocastOptions::new(AutocastTarget::Half)
}

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(fs::read(path).unwrap().as_slice()).unwrap()
}

/// A model whose weight `gamma` is read by a converted Mul and a float32 LayerNormalization,
/// so the output needs it in both precisions.
fn shared_weight_model() -> ModelProto {
    let mut g = GraphBuilder::new("shared", 11);
    let x = g.input("x", DataType::Float, dims!["N", 64]);
    let w = g.random_f32("w", &[64, 64], 0.2);
    let h = g.matmul(&x, &w);
    let gamma = g.random_f32("gamma", &[64], 1.0);
    let h = g.mul(&h, &gamma);
    let h = g.node("LayerNormalization", &[&h, &gamma], [attr::int("axis", -1)]);
    g.output("y", &h, DataType::Float, dims!["N", 64]);
    ModelBuilder::new(g).build()
}

#[test]
fn external_data_is_read_streamed_and_the_output_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/model.onnx");
    fs::create_dir(input.parent().unwrap()).unwrap();
    let model = shared_weight_model();
    write_with_external_data(&model, &input, "model.onnx.data").unwrap();
    let output = dir.path().join("out.onnx");

    let report = autocast_file(&input, &output, &fp16()).unwrap();
    assert_eq!(report.external_data, None);
    assert!(read_external_data_locations(&output).unwrap().is_empty());
    // Exactly what autocast makes of the same model with inline weights.
    let mut inline = model.clone();
    let expected = autocast_model(&mut inline, &fp16());
    assert_eq!(decode(&output), inline);
    assert_eq!(report, expected);
    let g = graph(&inline);
    assert_eq!(initializer(g, "w").data_type(), FLOAT16);
    assert_eq!(initializer(g, "gamma").data_type(), FLOAT16);
    assert_eq!(initializer(g, "gamma/autocast_fp32").data_type(), FLOAT);
    assert_eq!(check_with_onnx(&[output]), 1);
}

#[test]
fn large_outputs_keep_their_weights_beside_them_and_reruns_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    write_with_external_data(&shared_weight_model(), &input, "weights.bin").unwrap();
    let mut options = fp16();
    options.inline_limit = 0; // as if it were over 2 GB

    let run = |name: &str, input: &Path| {
        let out_dir = dir.path().join(name);
        fs::create_dir(&out_dir).unwrap();
        let output = out_dir.join("model.fp16.onnx");
        let report = autocast_file(input, &output, &options).unwrap();
        assert_eq!(
            report.external_data,
            Some(out_dir.join("model.fp16.onnx.data"))
        );
        output
    };
    let first = run("a", &input);
    let again = run("b", &input);
    let twice = run("c", &first);
    assert_eq!(
        read_external_data_locations(&first).unwrap(),
        ["model.fp16.onnx.data"]
    );
    // w (64×64) and gamma (64) in fp16, and gamma's float32 copy.
    let data = fs::read(first.with_file_name("model.fp16.onnx.data")).unwrap();
    assert_eq!(data.len(), (64 * 64 + 64) * 2 + 64 * 4);
    for other in [&again, &twice] {
        assert!(
            fs::read(&first).unwrap() == fs::read(other).unwrap(),
            "{}",
            other.display()
        );
        let other_data = fs::read(other.with_file_name("model.fp16.onnx.data")).unwrap();
        assert!(data == other_data, "{}", other.display());
    }
    assert_eq!(check_with_onnx(&[first]), 1);
}

#[test]
fn external_data_outside_the_model_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("models")).unwrap();
    let input = dir.path().join("models/model.onnx");
    let secret = dir.path().join("secret.bin");
    fs::write(&secret, vec![0u8; 64 * 64 * 4]).unwrap();
    write_with_external_data(&shared_weight_model(), &input, "w.bin").unwrap();
    let mut model = decode(&input);
    for tensor in &mut model.graph.as_mut().unwrap().initializer {
        tensor.external_data[0].value = Some("../secret.bin".into());
    }
    onnx_graph::write_model(&model, &input).unwrap();
    let error = autocast_file(&input, &dir.path().join("out.onnx"), &fp16()).unwrap_err();
    assert!(matches!(error, OnnxError::Open { .. }), "{error}");
    assert!(
        error.to_string().contains("not a relative path inside"),
        "{error}"
    );
    assert!(!dir.path().join("out.onnx").exists());
}

#[test]
fn a_short_external_data_file_says_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    let written = write_with_external_data(&shared_weight_model(), &input, "w.bin").unwrap();
    let data = dir.path().join("w.bin");
    fs::write(&data, &fs::read(&data).unwrap()[..written as usize - 8]).unwrap();
    let error = autocast_file(&input, &dir.path().join("out.onnx"), &fp16()).unwrap_err();
    assert!(matches!(error, OnnxError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("gamma"), "{error}");
}

#[test]
fn the_onnx_checker_accepts_autocast_models_with_full_shape_inference() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    let mut autocast_to = |name: &str, model: &ModelProto, options: &AutocastOptions| {
        let input = write(dir.path(), &format!("{name}.onnx"), model);
        let output = dir
            .path()
            .join(format!("{name}.{}.onnx", options.target.name()));
        autocast_file(&input, &output, options).unwrap();
        outputs.push(output);
    };
    let mut keep_io = fp16();
    keep_io.keep_fp32_io = true;
    for options in [fp16(), keep_io] {
        let io = if options.keep_fp32_io { "io32" } else { "io16" };
        autocast_to(&format!("cnn-{io}"), &cnn(1), &options);
        autocast_to(&format!("attention-{io}"), &attention_block(1), &options);
        autocast_to(&format!("shapes-{io}"), &shape_arithmetic(1), &options);
        autocast_to(&format!("shared-{io}"), &shared_weight_model(), &options);
        for example in EXAMPLES {
            autocast_to(
                &format!("{}-{io}", example.dir),
                &(example.build)(),
                &options,
            );
        }
    }
    // bf16: only operators whose ONNX schema lists bfloat16 at the model's opset (MatMul, Add
    // and Cast do at opset 18; Conv only from opset 22).
    let bf16 = AutocastOptions::new(AutocastTarget::BFloat16);
    autocast_to("attention", &attention_block(1), &bf16);
    assert_eq!(check_with_onnx(&outputs), outputs.len());
}

/// Runs each (original, autocast, tolerance) triple through onnx's reference evaluator on the
/// same random inputs and prints the largest output difference relative to the output's scale;
/// fails when it is over the tolerance.
const COMPARE_OUTPUTS: &str = r#"
import sys, numpy as np, onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator
args = sys.argv[1:]
for original, converted, tolerance in zip(args[0::3], args[1::3], args[2::3]):
    rng = np.random.default_rng(0)
    models = [onnx.load(original), onnx.load(converted)]
    weights = {t.name for t in models[0].graph.initializer}
    feeds = [{}, {}]
    for inputs in zip(*[[i for i in m.graph.input if i.name not in weights] for m in models]):
        dims = [d.dim_value if d.HasField("dim_value") else (32 if d.dim_param in ("height", "width") else 2)
                for d in inputs[0].type.tensor_type.shape.dim]
        x = rng.standard_normal(dims).astype(np.float32)
        for feed, info in zip(feeds, inputs):
            feed[info.name] = x.astype(helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))
    expected, actual = (ReferenceEvaluator(m).run(None, f) for m, f in zip(models, feeds))
    worst = 0.0
    for e, a in zip(expected, actual):
        assert a.shape == e.shape, (converted, a.shape, e.shape)
        worst = max(worst, float(np.abs(a.astype(np.float32) - e).max() / max(1.0, np.abs(e).max())))
    assert worst <= float(tolerance), (converted, worst)
    print("close", converted, worst)
"#;

#[test]
fn autocast_models_compute_what_the_originals_compute_within_fp16_precision() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    let mut keep_io = fp16();
    keep_io.keep_fp32_io = true;
    let mut models: Vec<(String, ModelProto)> = vec![
        ("cnn".into(), cnn(1)),
        ("attention".into(), attention_block(1)),
        ("shapes".into(), shape_arithmetic(1)),
        ("shared".into(), shared_weight_model()),
    ];
    models.extend(EXAMPLES.iter().map(|e| (e.dir.to_owned(), (e.build)())));
    for (name, model) in &models {
        let original = write(dir.path(), &format!("{name}.onnx"), model);
        for (options, io) in [(fp16(), "io16"), (keep_io.clone(), "io32")] {
            let output = dir.path().join(format!("{name}.{io}.onnx"));
            autocast_file(&original, &output, &options).unwrap();
            args.extend([original.clone(), output, PathBuf::from("0.01")]);
        }
    }
    let refs: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
    let out = common::run_python(COMPARE_OUTPUTS, &refs);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("close ")).count(),
        args.len() / 3,
        "{out}"
    );
}

fn light_models() -> Vec<PathBuf> {
    let dir = onnx_graph::deps::onnx_test_models()
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| panic!("no ONNX test models: run scripts/setup"));
    let mut models: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    models
}

#[test]
fn the_real_models_of_the_onnx_wheel_autocast_check_and_settle() {
    let models = light_models();
    assert!(models.len() >= 5, "{models:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for model in &models {
        let name = model.file_name().unwrap().to_string_lossy().into_owned();
        let output = dir.path().join(format!("fp16-{name}"));
        let report = autocast_file(model, &output, &fp16()).unwrap();
        assert!(report.converted_nodes > 0, "{name}: {report:?}");
        let converted = decode(&output);
        let g = graph(&converted);
        assert!(g.node.iter().filter(|n| n.op_type() == "Conv").count() > 0);
        // Their weights come from ConstantOfShape nodes: now fp16, and the graph output too.
        assert!(
            g.node
                .iter()
                .filter(|n| n.op_type() == "ConstantOfShape")
                .all(|n| {
                    n.attribute[0]
                        .t
                        .as_ref()
                        .is_some_and(|t| t.data_type() == FLOAT16)
                }),
            "{name}"
        );
        assert_eq!(elem_type(&g.output[0]), FLOAT16, "{name}");
        // A second pass writes the same bytes.
        let again = dir.path().join(format!("again-{name}"));
        autocast_file(&output, &again, &fp16()).unwrap();
        assert!(
            fs::read(&output).unwrap() == fs::read(&again).unwrap(),
            "{name}"
        );
        outputs.push(output);
    }
    assert_eq!(check_with_onnx(&outputs), models.len());
}
