//! The daemon's GPUs: what it found at start-up, which one an Enterprise build goes to, and the
//! environment that puts a worker on that GPU under its MPS share.
//!
//! Like the toolchains, the GPUs are probed by a child (`trtfarmd probe-gpu --json`): the
//! daemon never loads the CUDA driver into its own process, so a driver that hangs or crashes
//! costs a probe, and the daemon holds no CUDA context of its own on a GPU it hands to builds.

mod mps;
mod probe;
mod select;

use trtfarm_proto::v1;
use trtfarm_types::ComputeCapability;

pub use mps::{MpsConfig, MpsService};
pub use probe::{PROBE_GPU_ARG, probe, probe_in_process};
pub use select::GpuChoice;

/// One GPU as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSlot {
    /// CUDA ordinal on this host.
    pub index: u32,
    /// Model name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `GPU-…`, as nvidia-smi prints it; workers are pinned by UUID, which no
    /// `CUDA_DEVICE_ORDER` setting can renumber.
    pub uuid: String,
    /// e.g. 9.0.
    pub compute_capability: ComputeCapability,
    /// All its SMs (an MPS client gets a share of them).
    pub multiprocessors: u32,
}

/// Whether builds can be limited to a share of a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpsState {
    /// An MPS control daemon answers at this pipe directory.
    Running {
        /// `CUDA_MPS_PIPE_DIRECTORY` for workers.
        pipe_dir: std::path::PathBuf,
        /// Whether this daemon started it (and stops it on shutdown).
        owned: bool,
    },
    /// No MPS: builds asking for a share are refused.
    Off {
        /// Why, for the error a request gets.
        reason: String,
    },
}

/// Every GPU of this daemon, the probe's full report, and the MPS state.
#[derive(Debug, Clone)]
pub struct GpuSet {
    /// GPUs builds may use.
    pub gpus: Vec<GpuSlot>,
    /// Why there are none, when there are none.
    pub unavailable: Option<String>,
    /// MPS for per-build compute limits.
    pub mps: MpsState,
    /// What the probe found, for the capabilities RPC.
    pub inventory: Option<trtfarm_gpu::inventory::Inventory>,
    /// The daemon's `LD_LIBRARY_PATH`, passed to GPU workers: on many hosts the CUDA driver
    /// library is found only through it (containers mount it under `/usr/local/nvidia`).
    pub driver_library_path: Option<String>,
}

impl Default for GpuSet {
    fn default() -> GpuSet {
        GpuSet {
            gpus: Vec::new(),
            unavailable: Some("GPUs were not probed".into()),
            mps: MpsState::Off {
                reason: "GPUs were not probed".into(),
            },
            inventory: None,
            driver_library_path: None,
        }
    }
}

impl GpuSet {
    /// The set from a probe's inventory, restricted to the GPUs the config allows.
    pub fn from_inventory(
        inventory: trtfarm_gpu::inventory::Inventory,
        allowed: Option<&[u32]>,
        mps: MpsState,
    ) -> GpuSet {
        let gpus: Vec<GpuSlot> = inventory
            .gpus
            .iter()
            .filter(|gpu| allowed.is_none_or(|allowed| allowed.contains(&gpu.index)))
            .map(|gpu| GpuSlot {
                index: gpu.index,
                name: gpu.name.clone(),
                uuid: gpu.uuid.clone(),
                compute_capability: gpu.compute_capability,
                multiprocessors: gpu.multiprocessors,
            })
            .collect();
        let unavailable = match (&inventory.unavailable, gpus.is_empty()) {
            (Some(reason), _) => Some(reason.clone()),
            (None, true) if !inventory.gpus.is_empty() => {
                Some("the config's gpu.devices leaves none of this host's GPUs".into())
            }
            (None, true) => Some("the NVIDIA driver reports no GPU".into()),
            (None, false) => None,
        };
        GpuSet {
            gpus,
            unavailable,
            mps,
            inventory: Some(inventory),
            driver_library_path: std::env::var("LD_LIBRARY_PATH").ok(),
        }
    }

    /// The GPU with this index, if the daemon uses it.
    pub fn get(&self, index: u32) -> Option<&GpuSlot> {
        self.gpus.iter().find(|gpu| gpu.index == index)
    }

    /// The environment that puts a worker on `gpu`, under MPS with `percentage` of its SMs if
    /// asked. Only variables fixed for the build action: the same request gets the same
    /// environment on every GPU of the model.
    pub fn builder_env(&self, gpu: &GpuSlot, percentage: Option<u8>) -> Vec<(String, String)> {
        let mut env = vec![("CUDA_VISIBLE_DEVICES".to_owned(), gpu.uuid.clone())];
        if let Some(path) = &self.driver_library_path {
            env.push(("LD_LIBRARY_PATH".to_owned(), path.clone()));
        }
        if let MpsState::Running { pipe_dir, .. } = &self.mps {
            // Every worker on an MPS host is an MPS client, limited or not: a non-MPS context
            // beside MPS clients would time-slice with them and distort their timings.
            env.extend(trtfarm_gpu::mps::client_env(pipe_dir, percentage).unwrap_or_default());
        }
        env
    }

    /// The GPUs in the wire form of the capabilities RPC.
    pub fn wire(&self) -> Vec<v1::Gpu> {
        let Some(inventory) = &self.inventory else {
            return Vec::new();
        };
        inventory
            .gpus
            .iter()
            .filter(|gpu| self.get(gpu.index).is_some())
            .map(|gpu| v1::Gpu {
                index: gpu.index,
                name: gpu.name.clone(),
                uuid: gpu.uuid.clone(),
                compute_capability: gpu.compute_capability.to_string(),
                multiprocessors: gpu.multiprocessors,
                memory_bytes: gpu.memory_bytes,
                pci_bus_id: gpu.pci_bus_id.clone().unwrap_or_default(),
                max_sm_clock_mhz: gpu.max_sm_clock_mhz.unwrap_or(0),
                max_memory_clock_mhz: gpu.max_memory_clock_mhz.unwrap_or(0),
                mig_mode: match gpu.mig_mode {
                    None => v1::gpu::MigMode::Unknown,
                    Some(false) => v1::gpu::MigMode::Disabled,
                    Some(true) => v1::gpu::MigMode::Enabled,
                } as i32,
                processes: gpu.processes.len() as u32,
            })
            .collect()
    }

    /// The host-level GPU facts of the capabilities RPC.
    pub fn wire_host(&self) -> v1::GpuHost {
        let inventory = self.inventory.as_ref();
        let (mps, mps_pipe_dir, mps_owned) = match &self.mps {
            MpsState::Running { pipe_dir, owned } => {
                (String::new(), pipe_dir.display().to_string(), *owned)
            }
            MpsState::Off { reason } => (reason.clone(), String::new(), false),
        };
        v1::GpuHost {
            driver_version: inventory
                .and_then(|i| i.driver.driver_version.clone())
                .unwrap_or_default(),
            cuda_driver_version: inventory
                .and_then(|i| i.driver.cuda_driver_version.clone())
                .unwrap_or_default(),
            unavailable: self.unavailable.clone().unwrap_or_default(),
            mps_running: matches!(self.mps, MpsState::Running { .. }),
            mps_owned,
            mps_pipe_dir,
            mps_unavailable: mps,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A made-up GPU set for scheduling tests (no GPU exists on the test machines).
    use super::*;

    /// GPUs named by (name, "major.minor"), indexed in order.
    pub(crate) fn fake_gpu_set(gpus: &[(&str, &str)], mps: MpsState) -> GpuSet {
        GpuSet {
            gpus: gpus
                .iter()
                .enumerate()
                .map(|(index, (name, cc))| GpuSlot {
                    index: index as u32,
                    name: (*name).into(),
                    uuid: format!("GPU-{index:08x}-0000-0000-0000-000000000000"),
                    compute_capability: cc.parse().expect("a compute capability"),
                    multiprocessors: 132,
                })
                .collect(),
            unavailable: gpus.is_empty().then(|| "no NVIDIA driver".into()),
            mps,
            inventory: None,
            driver_library_path: None,
        }
    }
}
