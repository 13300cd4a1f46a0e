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
