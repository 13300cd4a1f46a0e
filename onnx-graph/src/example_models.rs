//! The models of `examples/manifests/`: small real networks TensorRT builds, written
//! deterministically (fixed seeds, fixed construction order) so every run writes the same bytes.
//!
//! `trtfarm-example-models <examples dir>` writes each next to its `engine.toml`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::ModelProto;
use crate::{Conv2d, DataType, GraphBuilder, ModelBuilder, OnnxError, Value, dims, write_model};

/// One example: its directory under `examples/manifests/`, the model file its `engine.toml`
/// names, and the function that builds the model.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Directory of the example, relative to the examples root.
    pub dir: &'static str,
    /// File name of the model inside that directory.
    pub model_file: &'static str,
    /// Builds the model.
    pub build: fn() -> ModelProto,
}

impl Example {
    /// Where the model goes under `root`.
    pub fn model_path(&self, root: &Path) -> PathBuf {
        root.join(self.dir).join(self.model_file)
    }
}

/// Every example, in the order of the examples README.
pub const EXAMPLES: [Example; 5] = [
    Example {
        dir: "cnn-dynamic-batch",
        model_file: "classifier.onnx",
        build: classifier,
    },
    Example {
        dir: "segmenter-dynamic-hw",
        model_file: "segmenter.onnx",
        build: segmenter,
    },
    Example {
        dir: "multi-input",
        model_file: "ranker.onnx",
        build: ranker,
    },
    Example {
        dir: "precision-fanout",
        model_file: "backbone.onnx",
        build: backbone,
    },
    Example {
        dir: "enterprise-locked-cache",
        model_file: "embedder.onnx",
        build: embedder,
    },
];

/// What [`write_examples`] did with one model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The file was missing or different, and was written.
    Written,
    /// The file already had these bytes and was left alone (its mtime too, so watchers stay
    /// quiet).
    Unchanged,
}

/// Writes every example's model under `root` (which must exist), creating example directories
/// as needed.
pub fn write_examples(root: &Path) -> Result<Vec<(PathBuf, WriteOutcome)>, OnnxError> {
    if !root.is_dir() {
        return Err(OnnxError::Write {
            path: root.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut written = Vec::with_capacity(EXAMPLES.len());
    for example in &EXAMPLES {
        let path = example.model_path(root);
        let model = (example.build)();
        if fs::read(&path).is_ok_and(|existing| existing == model.encode_to_vec()) {
            written.push((path, WriteOutcome::Unchanged));
            continue;
        }
        let dir = root.join(example.dir);
        fs::create_dir_all(&dir).map_err(|source| OnnxError::Write { path: dir, source })?;
        write_model(&model, &path)?;
        written.push((path, WriteOutcome::Written));
    }
    Ok(written)
}

/// conv → relu, then a 2×2 max pool.
fn conv_relu_pool(g: &mut GraphBuilder, x: &Value, in_channels: u64, out_channels: u64) -> Value {
    let x = g.conv2d(x, Conv2d::new(in_channels, out_channels, 3));
    let x = g.relu(&x);
    g.max_pool2d(&x, 2, 2)
}

/// conv (no bias) → batch norm, as exporters emit before fusing.
fn conv_bn(g: &mut GraphBuilder, x: &Value, conv: Conv2d) -> Value {
    let x = g.conv2d(x, conv.without_bias());
    g.batch_norm(&x, conv.out_channels)
}

/// `cnn-dynamic-batch`: images `[N, 3, 64, 64]` → three conv-relu-pool stages → global pool →
/// Gemm → softmax scores `[N, 10]`.
pub fn classifier() -> ModelProto {
    let mut g = GraphBuilder::new("classifier", 1);
    let mut x = g.input("images", DataType::Float, dims!["N", 3, 64, 64]);
    for (in_channels, out_channels) in [(3, 16), (16, 32), (32, 64)] {
        x = conv_relu_pool(&mut g, &x, in_channels, out_channels);
    }
    let x = g.global_average_pool(&x);
    let x = g.flatten(&x);
    let x = g.linear(&x, 64, 10);
    let x = g.softmax(&x);
    g.output("scores", &x, DataType::Float, dims!["N", 10]);
    ModelBuilder::new(g)
        .doc_string("Small image classifier with a dynamic batch (trtfarm example).")
        .build()
}

/// `segmenter-dynamic-hw`: image `[1, 3, height, width]` → dilated convolutions with a residual
/// → per-pixel logits `[1, 4, height, width]`. No striding or resizing, so the output has exactly
/// the input's height and width for every size a profile allows.
pub fn segmenter() -> ModelProto {
    let mut g = GraphBuilder::new("segmenter", 2);
    let image = g.input("image", DataType::Float, dims![1, 3, "height", "width"]);
    let stem = g.conv2d(&image, Conv2d::new(3, 16, 3));
    let stem = g.relu(&stem);
    let mut x = stem.clone();
    for dilation in [2, 4, 8] {
        x = g.conv2d(&x, Conv2d::new(16, 16, 3).dilation(dilation));
        x = g.relu(&x);
    }
    let x = g.add(&x, &stem);
    let x = g.conv2d(&x, Conv2d::new(16, 4, 1));
    g.output(
        "mask_logits",
        &x,
        DataType::Float,
        dims![1, 4, "height", "width"],
    );
    ModelBuilder::new(g)
        .doc_string(
            "Fully convolutional segmenter with dynamic height and width (trtfarm example).",
        )
        .build()
}

/// `multi-input`: features `[batch, 32]` and context `[batch, 16]`; the context is projected
/// (MatMul + Add + Relu), concatenated with the features, then Gemm → Relu → Gemm → Sigmoid gives
/// a score `[batch, 1]`.
pub fn ranker() -> ModelProto {
    let mut g = GraphBuilder::new("ranker", 3);
    let features = g.input("features", DataType::Float, dims!["batch", 32]);
    let context = g.input("context", DataType::Float, dims!["batch", 16]);
    let projection = g.random_f32(
        "context_projection.weight",
        &[16, 16],
        (6.0f32 / 16.0).sqrt(),
    );
    let projection_bias = g.random_f32("context_projection.bias", &[16], 0.25);
    let context = g.matmul(&context, &projection);
    let context = g.add(&context, &projection_bias);
    let context = g.relu(&context);
    let x = g.concat(&[&features, &context], 1);
    let x = g.linear(&x, 48, 64);
    let x = g.relu(&x);
    let x = g.linear(&x, 64, 1);
    let x = g.sigmoid(&x);
    g.output("score", &x, DataType::Float, dims!["batch", 1]);
    ModelBuilder::new(g)
        .doc_string("Two-input scoring model sharing a dynamic batch (trtfarm example).")
        .build()
}

/// `precision-fanout`: pixels `[1, 3, 128, 128]` (static) → conv-BN-SiLU stem, a residual block,
/// a strided stage, pooling → Gemm → softmax `[1, 100]`. BatchNormalization and Softmax are the
/// numerically sensitive parts a reduced-precision transform has to treat with care.
pub fn backbone() -> ModelProto {
    let mut g = GraphBuilder::new("backbone", 4);
    let pixels = g.input("pixels", DataType::Float, dims![1, 3, 128, 128]);
    let x = conv_bn(&mut g, &pixels, Conv2d::new(3, 16, 3).stride(2));
    let x = g.silu(&x);
    let y = conv_bn(&mut g, &x, Conv2d::new(16, 16, 3));
    let y = g.relu(&y);
    let y = conv_bn(&mut g, &y, Conv2d::new(16, 16, 3));
    let x = g.add(&x, &y);
    let x = g.relu(&x);
    let x = conv_bn(&mut g, &x, Conv2d::new(16, 32, 3).stride(2));
    let x = g.silu(&x);
    let x = g.max_pool2d(&x, 2, 2);
    let x = g.global_average_pool(&x);
    let x = g.flatten(&x);
    let x = g.linear(&x, 32, 100);
    let x = g.softmax(&x);
    g.output("class_probabilities", &x, DataType::Float, dims![1, 100]);
    ModelBuilder::new(g)
        .doc_string("Residual CNN with batch norm and softmax, built at several precisions (trtfarm example).")
        .build()
}

/// `enterprise-locked-cache`: frames `[batch, 3, 112, 112]` → strided conv-BN-ReLU stages, a
/// depthwise-separable block, pooling → Gemm embedding `[batch, 128]`. Tactic choice for its
/// depthwise convolution is what a locked timing cache pins down.
pub fn embedder() -> ModelProto {
    let mut g = GraphBuilder::new("embedder", 5);
    let mut x = g.input("frames", DataType::Float, dims!["batch", 3, 112, 112]);
    for conv in [
        Conv2d::new(3, 32, 3).stride(2),
        Conv2d::new(32, 64, 3).stride(2),
        Conv2d::new(64, 64, 3).groups(64),
        Conv2d::new(64, 64, 1),
    ] {
        x = conv_bn(&mut g, &x, conv);
        x = g.relu(&x);
    }
    let x = g.max_pool2d(&x, 2, 2);
    let x = g.global_average_pool(&x);
    let x = g.flatten(&x);
    let x = g.linear(&x, 64, 128);
    g.output("embedding", &x, DataType::Float, dims!["batch", 128]);
    ModelBuilder::new(g)
        .doc_string("Frame embedder with a depthwise-separable block (trtfarm example).")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_build_gives_the_same_bytes() {
        for example in &EXAMPLES {
            let first = blake3::hash(&(example.build)().encode_to_vec());
            let second = blake3::hash(&(example.build)().encode_to_vec());
            assert_eq!(first, second, "{} is not deterministic", example.dir);
        }
    }

    #[test]
    fn models_are_small_and_distinct() {
        let mut digests = std::collections::HashSet::new();
        for example in &EXAMPLES {
            let bytes = (example.build)().encode_to_vec();
            assert!(
                bytes.len() < 1 << 20,
                "{} is {} bytes",
                example.dir,
                bytes.len()
            );
            assert!(
                digests.insert(blake3::hash(&bytes)),
                "{} duplicates another model",
                example.dir
            );
        }
    }

    #[test]
    fn writes_once_then_leaves_identical_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_examples(dir.path()).unwrap();
        assert_eq!(first.len(), EXAMPLES.len());
        assert!(
            first
                .iter()
                .all(|(path, outcome)| *outcome == WriteOutcome::Written && path.is_file())
        );
        let second = write_examples(dir.path()).unwrap();
        assert!(
            second
                .iter()
                .all(|(_, outcome)| *outcome == WriteOutcome::Unchanged)
        );

        fs::write(EXAMPLES[0].model_path(dir.path()), b"stale").unwrap();
        let third = write_examples(dir.path()).unwrap();
        assert_eq!(third[0].1, WriteOutcome::Written);
        assert_eq!(
            fs::read(&third[0].0).unwrap(),
            (EXAMPLES[0].build)().encode_to_vec()
        );
    }

    #[test]
    fn refuses_a_missing_root() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_examples(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
