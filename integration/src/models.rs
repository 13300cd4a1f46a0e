//! Models and manifests generated for tests.

use std::path::Path;

use onnx_graph::{Conv2d, DataType, GraphBuilder, ModelBuilder, dims};

/// A plain CNN `[N, 3, size, size]` → `layers` conv-relu blocks of `channels` → global pool:
/// slow enough to build (seconds) that a test can act on a running worker.
pub fn deep_cnn(
    dir: &Path,
    layers: usize,
    channels: u64,
    size: u64,
    seed: u64,
) -> std::path::PathBuf {
    let mut g = GraphBuilder::new("deep_cnn", seed);
    let mut x = g.input("images", DataType::Float, dims!["N", 3, size, size]);
    x = g.conv2d(&x, Conv2d::new(3, channels, 3));
    for _ in 0..layers {
        x = g.conv2d(&x, Conv2d::new(channels, channels, 3));
        x = g.relu(&x);
    }
    let x = g.global_average_pool(&x);
    g.output("features", &x, DataType::Float, dims!["N", channels, 1, 1]);
    let path = dir.join("deep.onnx");
    ModelBuilder::new(g)
        .write(&path)
        .expect("write the deep CNN model");
    path
}

/// A manifest for a model with one `images [N, 3, size, size]` input and one engine per
/// `(name, optimization level)`.
pub fn images_manifest(model_file: &str, size: u64, engines: &[(&str, u8)]) -> String {
    let mut text = format!(
        r#"schema_version = 1

[model]
path = "{model_file}"

[defaults]
toolchain = "tensorrt-rtx 1.7"

[defaults.compatibility]
compute_capabilities = ["8.6", "8.9", "12.0"]

[[profile]]
inputs.images = {{ min = [1, 3, {size}, {size}], opt = [4, 3, {size}, {size}], max = [8, 3, {size}, {size}] }}
"#
    );
    for (name, level) in engines {
        text.push_str(&format!(
            "\n[[engine]]\nname = \"{name}\"\noptimization_level = {level}\n"
        ));
    }
    text
}

/// `dir/engine.toml` with one engine, `slow`, of a 48-block, 128-channel CNN (weights from
/// `seed`) at optimization level 5: a build that runs for seconds, so a test can act while its
/// worker runs. Returns the manifest's path.
pub fn slow_project(dir: &Path, seed: u64) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    deep_cnn(dir, 48, 128, 128, seed);
    let manifest = dir.join("engine.toml");
    std::fs::write(&manifest, images_manifest("deep.onnx", 128, &[("slow", 5)])).unwrap();
    manifest
}

/// A detector-shaped network on `image [1, 3, height, width]`, height and width two independent
/// symbolic dims: a trunk of `blocks` residual blocks (two 3×3 convolutions, `channels` wide),
/// then three heads: per-pixel logits `mask_logits [1, 8, height, width]`, a feature-pyramid
/// branch (two stride-2 convolutions, nearest `Resize` back up, `Concat`, as in DBNet-style text
/// detectors) giving `probability` (rank not stated: its size rounds with odd inputs), and a
/// pooled `scores [1, 1000]` softmax. `detector_dynamic_hw(dir, 4, 192, 11)` writes an 11 MiB
/// model. The pyramid branch matters: without it, plans of this network did not vary between
/// processes even with address-space randomisation on, so it would prove nothing.
pub fn detector_dynamic_hw(
    dir: &Path,
    blocks: usize,
    channels: u64,
    seed: u64,
) -> std::path::PathBuf {
    use onnx_graph::attr;

    let mut g = GraphBuilder::new("detector_dynamic_hw", seed);
    let image = g.input("image", DataType::Float, dims![1, 3, "height", "width"]);
    let mut x = g.conv2d(&image, Conv2d::new(3, channels, 3));
    x = g.relu(&x);
    for _ in 0..blocks {
        let skip = x.clone();
        let y = g.conv2d(&x, Conv2d::new(channels, channels, 3));
        let y = g.relu(&y);
        let y = g.conv2d(&y, Conv2d::new(channels, channels, 3));
        x = g.add(&y, &skip);
        x = g.relu(&x);
    }
    let logits = g.conv2d(&x, Conv2d::new(channels, 8, 1));
    g.output(
        "mask_logits",
        &logits,
        DataType::Float,
        dims![1, 8, "height", "width"],
    );

    let down1 = g.conv2d(&x, Conv2d::new(channels, 64, 3).stride(2));
    let down1 = g.relu(&down1);
    let down2 = g.conv2d(&down1, Conv2d::new(64, 64, 3).stride(2));
    let down2 = g.relu(&down2);
    // Resize's inputs are X, roi, scales; roi is unused in nearest mode but must be present.
    let roi = g.initializer_f32("resize_roi", &[0], &[]);
    let scales = g.initializer_f32("resize_scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let mode = || [attr::string("mode", "nearest")];
    let up2 = g.node("Resize", &[&down2, &roi, &scales], mode());
    let merged = g.concat(&[&down1, &up2], 1);
    let up1 = g.node("Resize", &[&merged, &roi, &scales], mode());
    let probability = g.conv2d(&up1, Conv2d::new(128, 1, 3));
    let probability = g.sigmoid(&probability);
    g.output_rank_unknown("probability", &probability, DataType::Float);

    let pooled = g.global_average_pool(&x);
    let pooled = g.flatten(&pooled);
    let scores = g.linear(&pooled, channels, 1000);
    let scores = g.softmax(&scores);
    g.output("scores", &scores, DataType::Float, dims![1, 1000]);

    let path = dir.join("detector.onnx");
    ModelBuilder::new(g)
        .write(&path)
        .expect("write the dynamic-HW detector model");
    path
}

/// A manifest for [`detector_dynamic_hw`]'s model: one engine `fp32`, one profile over height
/// and width from 64 to 1024, for sm86 and sm89.
pub fn detector_dynamic_hw_manifest(model_file: &str) -> String {
    format!(
        r#"schema_version = 1

[model]
path = "{model_file}"

[defaults]
toolchain = "tensorrt-rtx 1.7"

[defaults.compatibility]
compute_capabilities = ["8.6", "8.9"]

[[profile]]
inputs.image = {{ min = [1, 3, 64, 64], opt = [1, 3, 512, 768], max = [1, 3, 1024, 1024] }}

[[engine]]
name = "fp32"
"#
    )
}

/// Writes to `dst` a copy of the ONNX model `src` whose graph inputs and outputs (initializers
/// excepted) get a symbolic first dimension `batch_name`, like trt-ffi's `make_models.py
/// dynamic` does for the onnx wheel's light models.
pub fn with_symbolic_batch(src: &Path, dst: &Path, batch_name: &str) {
    use onnx_graph::proto::tensor_shape_proto::dimension;
    use onnx_graph::proto::{ModelProto, type_proto};
    use prost::Message;

    let bytes = std::fs::read(src).expect("read the model");
    let mut model = ModelProto::decode(bytes.as_slice()).expect("the model is a ModelProto");
    let graph = model.graph.as_mut().expect("the model has a graph");
    let initializers: std::collections::HashSet<String> = graph
        .initializer
        .iter()
        .filter_map(|i| i.name.clone())
        .collect();
    for value in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        if value
            .name
            .as_ref()
            .is_some_and(|n| initializers.contains(n))
        {
            continue;
        }
        let tensor = value.r#type.as_mut().and_then(|t| match t.value.as_mut() {
            Some(type_proto::Value::TensorType(tensor)) => Some(tensor),
            _ => None,
        });
        if let Some(first) = tensor
            .and_then(|t| t.shape.as_mut())
            .and_then(|s| s.dim.first_mut())
        {
            first.value = Some(dimension::Value::DimParam(batch_name.to_owned()));
        }
    }
    onnx_graph::write_model(&model, dst).expect("write the dynamic-batch model");
}
