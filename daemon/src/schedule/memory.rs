//! Admitting builds by memory as well as by slots, so a host with many cores and big models does
//! not swap: each build is expected to need what the last build of the same model needed at its
//! peak (or, for a model not built here yet, a base plus a multiple of its size), and a build
//! starts only when the memory the system has available, less what running builds may still
//! grow by, covers it. One build always may start when none runs.

use std::collections::HashMap;
use std::sync::Mutex;

use trtfarm_store::BlobDigest;

use crate::ingest::request::PreparedBuild;

/// A TensorRT-RTX builder's resident memory before its model counts (measured: 300–400 MiB for
/// 5–11 MB models).
const BASE: u64 = 384 << 20;
/// Bytes of builder memory per byte of model, for a model not built here yet.
const PER_MODEL_BYTE: u64 = 4;

/// What builds of each model needed at their peak.
#[derive(Debug, Default)]
pub struct MemoryBook {
    learned: Mutex<HashMap<BlobDigest, u64>>,
}

impl MemoryBook {
    /// The memory `prepared` is expected to need.
    pub fn estimate(&self, prepared: &PreparedBuild) -> u64 {
        let learned = self
            .learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&model_of(prepared))
            .copied();
        learned.unwrap_or_else(|| {
            let inputs: u64 = prepared.materialize.iter().map(|(d, _)| d.size).sum();
            BASE + PER_MODEL_BYTE * inputs
        })
    }

    /// Records what a build of `prepared` needed at its peak.
    pub fn learn(&self, prepared: &PreparedBuild, peak_rss: u64) {
        if peak_rss > 0 {
            self.learned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(model_of(prepared), peak_rss);
        }
    }
}

/// The least a build is expected to need (for offers made before the build is known).
pub const SMALLEST_BUILD: u64 = BASE;

fn model_of(prepared: &PreparedBuild) -> BlobDigest {
    prepared
        .materialize
        .first()
        .map(|(digest, _)| *digest)
        .unwrap_or_else(|| BlobDigest::of_bytes(&[]))
}

/// Whether a build needing `need` bytes fits in `available` bytes, with `running` builds
/// (each its expected need and its resident memory now) still growing towards their needs.
pub fn admits(need: u64, available: Option<u64>, running: &[(u64, u64)]) -> bool {
    let Some(available) = available else {
        return true;
    };
    if running.is_empty() {
        return true;
    }
    let growth: u64 = running
        .iter()
        .map(|(expected, now)| expected.saturating_sub(*now))
        .sum();
    available.saturating_sub(growth) >= need
}

/// `MemAvailable` from `/proc/meminfo`, bytes.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line["MemAvailable:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_build_waits_while_running_builds_may_still_take_the_memory_it_needs() {
        // Nothing runs: always, whatever the numbers.
        assert!(admits(64 * GIB, Some(GIB), &[]));
        // 8 GiB free, a running build expected at 6 GiB holding 1 GiB so far: 3 GiB left.
        assert!(admits(3 * GIB, Some(8 * GIB), &[(6 * GIB, GIB)]));
        assert!(!admits(3 * GIB + 1, Some(8 * GIB), &[(6 * GIB, GIB)]));
        // Once it has grown, its memory is already out of the free figure.
        assert!(admits(3 * GIB, Some(3 * GIB), &[(6 * GIB, 6 * GIB)]));
        // A build past its estimate owes nothing more.
        assert!(admits(GIB, Some(GIB), &[(GIB, 2 * GIB)]));
        // Unknown free memory: slots alone decide.
        assert!(admits(64 * GIB, None, &[(GIB, 0)]));
    }

    #[test]
    fn this_machine_reports_available_memory() {
        assert!(available().is_some_and(|bytes| bytes > 0));
    }
}
