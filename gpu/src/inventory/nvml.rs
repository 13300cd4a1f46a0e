//! NVML's view of the devices, keyed by UUID so it can be matched with CUDA's.

use std::collections::HashMap;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::enums::device::UsedGpuMemory;

use super::GpuProcess;
use crate::driver::{format_cuda_version, guard};

/// NVML's `nvmlDeviceGetMigMode` value for "enabled".
const NVML_DEVICE_MIG_ENABLE: u32 = 1;

/// What NVML reported, for every device it sees (it ignores `CUDA_VISIBLE_DEVICES`).
pub(super) struct NvmlFacts {
    pub driver_version: Option<String>,
    pub cuda_driver_version: Option<String>,
    /// By UUID, `GPU-…`.
    pub devices: HashMap<String, NvmlDevice>,
}

/// NVML's facts about one physical device; each is optional because not every GPU supports
/// every query.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct NvmlDevice {
    pub index: u32,
    pub max_sm_clock_mhz: Option<u32>,
    pub max_memory_clock_mhz: Option<u32>,
    pub mig_mode: Option<bool>,
    pub processes: Vec<GpuProcess>,
}

/// Loads NVML (`libnvidia-ml.so.1`) and queries every device; `Err` when it is absent.
pub(super) fn query() -> Result<NvmlFacts, String> {
    // nvml-wrapper returns errors without a driver; the guard is for symbols an old driver
    // may lack.
    guard("NVML query", query_loaded)?
}

fn query_loaded() -> Result<NvmlFacts, String> {
    let nvml = Nvml::init().map_err(|e| e.to_string())?;
    let count = nvml.device_count().map_err(|e| e.to_string())?;
    let mut devices = HashMap::new();
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        let Ok(uuid) = device.uuid() else { continue };
        let processes = device
            .running_compute_processes()
            .map(|list| {
                list.into_iter()
                    .map(|p| GpuProcess {
                        pid: p.pid,
                        used_memory_bytes: match p.used_gpu_memory {
                            UsedGpuMemory::Used(bytes) => Some(bytes),
                            UsedGpuMemory::Unavailable => None,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        let facts = NvmlDevice {
            index,
            max_sm_clock_mhz: device.max_clock_info(Clock::SM).ok(),
            max_memory_clock_mhz: device.max_clock_info(Clock::Memory).ok(),
            mig_mode: device
                .mig_mode()
                .ok()
                .map(|m| m.current == NVML_DEVICE_MIG_ENABLE),
            processes,
        };
        devices.insert(uuid, facts);
    }
    Ok(NvmlFacts {
        driver_version: nvml.sys_driver_version().ok(),
        cuda_driver_version: nvml.sys_cuda_driver_version().ok().map(format_cuda_version),
        devices,
    })
}
