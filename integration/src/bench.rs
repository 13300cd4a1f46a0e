//! What the benchmarks share: percentiles of timings, and a tiny project to build.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::models::{deep_cnn, images_manifest};

/// The `p` percentile (0–1) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    percentile(&mut samples, 0.5)
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `root/tiny-<seed>/engine.toml`: a CNN of one 4-channel block on 8×8 images, weights from
/// `seed` (a different action key per seed), one fp32 engine: a build of well under a second.
pub fn tiny_project(root: &Path, seed: u64) -> PathBuf {
    let dir = root.join(format!("tiny-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    deep_cnn(&dir, 1, 4, 8, seed);
    let manifest = dir.join("engine.toml");
    std::fs::write(&manifest, images_manifest("deep.onnx", 8, &[("fp32", 1)])).unwrap();
    manifest
}
