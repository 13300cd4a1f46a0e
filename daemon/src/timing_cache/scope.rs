//! Which timing caches belong together: the registry keeps one line of cache versions per
//! [`TimingCacheScope`], and a cache is only ever loaded into, or merged with, a build of the
//! same scope.

use std::fmt;

use manifest_schema::{BuildSettings, Flavour, Variant};
use serde::{Deserialize, Serialize};
use trtfarm_store::ActionKey;
use trtfarm_types::ComputeCapability;

use crate::inventory::ToolchainIdentity;

/// Version of the scope encoding (and of the registry's derived keys).
pub const SCOPE_ENCODING_VERSION: u32 = 1;

/// Everything a timing cache's entries depend on. Two builds share a cache line exactly when
/// all of it is equal; the model and its profiles are *not* part of it, because TensorRT keys
/// cache entries by layer signature and shape, so one cache serves many models.
///
/// From the manifest's `BuildSettings`, the settings that change which tactics are candidates
/// or how they time are included:
/// - `precision`: other data types, other kernels;
/// - `optimization_level`: the breadth of the tactic search (a cache recorded at 3 misses at 5);
/// - `avg_timing_iterations`: the measurements behind each choice;
/// - `tactic_sources`: which tactic families exist;
/// - `tiling`: the tiling search adds and times tactics;
/// - `mps_percentage`: the SMs the tactics were timed on;
/// - `memory_pools` (workspace, tactic DRAM, tactic shared memory): which tactics fit;
/// - `compatibility.hardware` and `compatibility.version_compatible`: both restrict tactics;
/// - `weights.refit`: refittable weights rule out tactics that bake weights in.
///
/// Left out, because they do not change tactic choice: `max_aux_streams` (scheduling across
/// streams, not per-layer timing), `exclude_lean_runtime` and `weights.strip` (what goes into
/// the plan file), `build_timeout`, the profiles, the toolchain *requirement* (the resolved
/// toolchain is in), and the timing-cache policy itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingCacheScope {
    /// `tensorrt` (Enterprise; TensorRT-RTX has no timing cache).
    pub flavour: String,
    /// Full toolchain version, e.g. `11.4.0.106`.
    pub toolchain_version: String,
    /// blake3 of the builder library that timed the tactics, hex.
    pub library_digest: String,
    /// GPU model, e.g. `NVIDIA H100 80GB HBM3`.
    pub gpu_model: String,
    /// Compute capability; serialised as its text, e.g. `"9.0"`.
    pub compute_capability: ComputeCapability,
    /// CUDA MPS active-thread percentage the build ran under (`None`: the whole GPU).
    pub mps_percentage: Option<u8>,
    /// The timing-relevant settings, as manifest spellings, in a fixed order.
    pub settings: TimingSettings,
}

/// The builder settings of a [`TimingCacheScope`] (see there for why each is included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingSettings {
    /// `precision`.
    pub precision: String,
    /// `optimization_level`.
    pub optimization_level: u8,
    /// `avg_timing_iterations`.
    pub avg_timing_iterations: u32,
    /// `tactic_sources`, sorted; `None` for the toolchain's default set.
    pub tactic_sources: Option<Vec<String>>,
    /// `tiling_optimization_level`.
    pub tiling: String,
    /// `memory_pools.workspace` in bytes.
    pub workspace: Option<u64>,
    /// `memory_pools.tactic_dram` in bytes.
    pub tactic_dram: Option<u64>,
    /// `memory_pools.tactic_shared_memory` in bytes.
    pub tactic_shared_memory: Option<u64>,
    /// `compatibility.hardware`.
    pub hardware: String,
    /// `compatibility.version_compatible`.
    pub version_compatible: bool,
    /// `weights.refit`.
    pub refit: String,
}

impl TimingSettings {
    /// The timing-relevant part of `settings`.
    pub fn of(settings: &BuildSettings) -> TimingSettings {
        TimingSettings {
            precision: settings.precision.as_str().to_owned(),
            optimization_level: settings.optimization_level,
            avg_timing_iterations: settings.avg_timing_iterations,
            tactic_sources: settings
                .tactic_sources
                .as_ref()
                .map(|set| set.iter().map(|s| s.as_str().to_owned()).collect()),
            tiling: settings.tiling.as_str().to_owned(),
            workspace: settings.memory_pools.workspace,
            tactic_dram: settings.memory_pools.tactic_dram,
            tactic_shared_memory: settings.memory_pools.tactic_shared_memory,
            hardware: settings.compatibility.hardware.as_str().to_owned(),
            version_compatible: settings.compatibility.version_compatible,
            refit: settings.weights.refit.as_str().to_owned(),
        }
    }
}

/// The GPU an Enterprise build times its tactics on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildGpu {
    /// Marketing name, as the driver reports it.
    pub model: String,
    /// e.g. 9.0.
    pub compute_capability: ComputeCapability,
}

impl TimingCacheScope {
    /// The scope of building `variant` with `toolchain` on `gpu`, or why it has none
    /// (TensorRT-RTX does not time tactics).
    pub fn for_build(
        variant: &Variant,
        toolchain: &ToolchainIdentity,
        gpu: &BuildGpu,
    ) -> Result<TimingCacheScope, String> {
        if variant.settings.toolchain.flavour != Flavour::TensorRt {
            return Err(format!(
                "engine `{}` builds with {}, whose timing-cache calls are no-ops; only \
                 TensorRT Enterprise builds have a timing cache",
                variant.name, variant.settings.toolchain.flavour
            ));
        }
        Ok(TimingCacheScope {
            flavour: toolchain.flavour.to_string(),
            toolchain_version: toolchain.version.to_string(),
            library_digest: toolchain.library.hex(),
            gpu_model: gpu.model.clone(),
            compute_capability: gpu.compute_capability,
            mps_percentage: variant.settings.mps_percentage,
            settings: TimingSettings::of(&variant.settings),
        })
    }

    /// The key the registry keeps this scope's index under: blake3 over a versioned framing of
    /// the scope (its JSON with fields in declaration order, which serde keeps fixed).
    pub fn registry_key(&self) -> ActionKey {
        let json = serde_json::to_vec(self).expect("a scope always serialises");
        derived_key(b"trtfarm.timing-cache.index\0", &json)
    }

    /// What differs between `self` and `other`, for a refusal message; empty when equal.
    pub fn differences(&self, other: &TimingCacheScope) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{what} {a} vs {b}"));
            }
        };
        check("toolchain", self.toolchain(), other.toolchain());
        check(
            "GPU",
            format!("{} ({})", self.gpu_model, self.compute_capability),
            format!("{} ({})", other.gpu_model, other.compute_capability),
        );
        check(
            "MPS percentage",
            format!("{:?}", self.mps_percentage),
            format!("{:?}", other.mps_percentage),
        );
        check(
            "timing settings",
            format!("{:?}", self.settings),
            format!("{:?}", other.settings),
        );
        out
    }

    fn toolchain(&self) -> String {
        format!(
            "{} {} (blake3:{})",
            self.flavour,
            self.toolchain_version,
            &self.library_digest[..self.library_digest.len().min(12)]
        )
    }
}

impl fmt::Display for TimingCacheScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} ({})",
            self.toolchain(),
            self.gpu_model,
            self.compute_capability
        )?;
        if let Some(percentage) = self.mps_percentage {
            write!(f, " at {percentage}% MPS")?;
        }
        Ok(())
    }
}

/// An action-cache key that can never equal a build's action key: blake3 over a purpose tag
/// (builds use `trtfarm.action\0`), the encoding version and the payload.
pub(crate) fn derived_key(purpose: &[u8], payload: &[u8]) -> ActionKey {
    let mut hasher = blake3::Hasher::new();
    hasher.update(purpose);
    hasher.update(&SCOPE_ENCODING_VERSION.to_le_bytes());
    hasher.update(&(payload.len() as u64).to_le_bytes());
    hasher.update(payload);
    ActionKey(*hasher.finalize().as_bytes())
}
