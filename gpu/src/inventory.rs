//! Which GPUs this host has: the CUDA driver API names them, NVML adds what only it knows.
//!
//! CUDA enumerates devices after applying `CUDA_VISIBLE_DEVICES`, exactly as every CUDA
//! program (and so every worker) will see them: [`GpuInfo::index`] is that post-mask ordinal.
//! NVML ignores the mask and numbers devices its own way (PCI order), so the two are matched by
//! UUID, never by index.

mod cuda;
mod nvml;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
/// A CUDA compute capability (the type every trtfarm crate shares); displays as `9.0`.
pub use trtfarm_types::ComputeCapability;

/// Everything [`probe`] learned; empty `gpus` with `unavailable` set when there is no driver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Driver versions, where known.
    pub driver: DriverInfo,
    /// The GPUs CUDA can use here, in CUDA ordinal order.
    pub gpus: Vec<GpuInfo>,
    /// Why there are no GPUs, e.g. `no NVIDIA driver: libcuda.so.1 not found`.
    pub unavailable: Option<String>,
    /// Partial failures: NVML missing, one device failing a query. The rest is still valid.
    pub warnings: Vec<String>,
    /// `CUDA_VISIBLE_DEVICES` as this process saw it (it decides which GPUs are listed).
    pub cuda_visible_devices: Option<String>,
}

/// Driver versions from NVML and the CUDA driver API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// Kernel driver version from NVML, e.g. `580.65.06`.
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. `13.0` (`cuDriverGetVersion`).
    pub cuda_driver_version: Option<String>,
}

/// One GPU as a CUDA program sees it, plus what NVML reports about the same physical device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// CUDA device ordinal, after `CUDA_VISIBLE_DEVICES` (what a worker passes to CUDA).
    pub index: u32,
    /// Marketing name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as `nvidia-smi -L` prints it.
    pub uuid: String,
    /// SM architecture, e.g. 9.0 for Hopper.
    #[serde(with = "major_minor")]
    pub compute_capability: ComputeCapability,
    /// Streaming multiprocessors as this process sees them: the whole device, unless this
    /// process itself has `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` set (then the MPS share).
    pub multiprocessors: u32,
    /// Total device memory in bytes.
    pub memory_bytes: u64,
    /// `00000000:18:00.0`, formatted like `nvidia-smi`.
    pub pci_bus_id: Option<String>,
    /// NVML's index of this device (what `nvidia-smi -i` takes); ignores `CUDA_VISIBLE_DEVICES`.
    pub nvml_index: Option<u32>,
    /// Highest SM clock in MHz (NVML).
    pub max_sm_clock_mhz: Option<u32>,
    /// Highest memory clock in MHz (NVML).
    pub max_memory_clock_mhz: Option<u32>,
    /// Whether MIG mode is on now (NVML); `None` when unknown or unsupported.
    pub mig_mode: Option<bool>,
    /// Compute processes running on the device (NVML); empty when NVML is absent. Under MPS
    /// this lists the MPS server, not its clients.
    pub processes: Vec<GpuProcess>,
}

/// A process holding a CUDA context on a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    /// Its pid (in NVML's view, i.e. the host's pid namespace).
    pub pid: u32,
    /// Device memory it uses, when the driver can say.
    pub used_memory_bytes: Option<u64>,
}

/// The JSON form of a compute capability in this crate's reports, `{"major":9,"minor":0}`:
/// older than the shared type (which serialises as `"9.0"`), and read by
/// `scripts/gpu-verify`, so kept.
pub(crate) mod major_minor {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ComputeCapability;

    #[derive(Serialize, Deserialize)]
    struct MajorMinor {
        major: u32,
        minor: u32,
    }

    pub(crate) fn serialize<S: Serializer>(
        cc: &ComputeCapability,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        MajorMinor {
            major: cc.major,
            minor: cc.minor,
        }
        .serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ComputeCapability, D::Error> {
        let MajorMinor { major, minor } = MajorMinor::deserialize(deserializer)?;
        Ok(ComputeCapability::new(major, minor))
    }
}

/// Lists the GPUs and driver versions; never fails and never panics (problems go into
/// [`Inventory::unavailable`] and [`Inventory::warnings`]).
///
/// Calls `cuInit` but creates no CUDA context, so it costs no device memory and does not
/// connect to an MPS daemon.
pub fn probe() -> Inventory {
    let mut warnings = Vec::new();
    let nvml = match nvml::query() {
        Ok(facts) => Some(facts),
        Err(why) => {
            warnings.push(format!(
                "NVML unavailable, no clocks, MIG mode or processes: {why}"
            ));
            None
        }
    };
    let cuda = cuda::query();
    let driver = DriverInfo {
        driver_version: nvml.as_ref().and_then(|n| n.driver_version.clone()),
        cuda_driver_version: cuda
            .as_ref()
            .ok()
            .and_then(|c| c.driver_version.clone())
            .or_else(|| nvml.as_ref().and_then(|n| n.cuda_driver_version.clone())),
    };
    let (gpus, unavailable) = match cuda {
        Err(why) => (Vec::new(), Some(why)),
        Ok(cuda) => {
            let mut gpus = Vec::new();
            for device in cuda.devices {
                match device {
                    Ok(device) => {
                        let facts = nvml.as_ref().and_then(|n| n.devices.get(&device.uuid));
                        if nvml.is_some() && facts.is_none() {
                            warnings.push(format!(
                                "gpu {}: NVML lists no device with UUID {}",
                                device.ordinal, device.uuid
                            ));
                        }
                        gpus.push(merge(device, facts));
                    }
                    Err(why) => warnings.push(why),
                }
            }
            let unavailable = gpus.is_empty().then(|| no_gpu_reason(cuda.device_count));
            (gpus, unavailable)
        }
    };
    Inventory {
        driver,
        gpus,
        unavailable,
        warnings,
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
    }
}

/// One line per GPU for logs, e.g.
/// `gpu 0: NVIDIA H100 80GB HBM3 (sm 9.0, 132 SMs, 79.6 GiB, GPU-…)`.
pub fn summary_line(gpu: &GpuInfo) -> String {
    let gib = gpu.memory_bytes as f64 / (1u64 << 30) as f64;
    let mig = if gpu.mig_mode == Some(true) {
        ", MIG on"
    } else {
        ""
    };
    format!(
        "gpu {}: {} (sm {}, {} SMs, {gib:.1} GiB, {}{mig})",
        gpu.index, gpu.name, gpu.compute_capability, gpu.multiprocessors, gpu.uuid
    )
}

/// Joins CUDA's view of a device with NVML's view of the same UUID.
fn merge(device: cuda::CudaDevice, nvml: Option<&nvml::NvmlDevice>) -> GpuInfo {
    GpuInfo {
        index: device.ordinal,
        name: device.name,
        uuid: device.uuid,
        compute_capability: device.compute_capability,
        multiprocessors: device.multiprocessors,
        memory_bytes: device.memory_bytes,
        pci_bus_id: device.pci_bus_id,
        nvml_index: nvml.map(|n| n.index),
        max_sm_clock_mhz: nvml.and_then(|n| n.max_sm_clock_mhz),
        max_memory_clock_mhz: nvml.and_then(|n| n.max_memory_clock_mhz),
        mig_mode: nvml.and_then(|n| n.mig_mode),
        processes: nvml.map(|n| n.processes.clone()).unwrap_or_default(),
    }
}

/// Why a working driver lists no GPU: usually `CUDA_VISIBLE_DEVICES`.
fn no_gpu_reason(device_count: u32) -> String {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(mask) if device_count == 0 => {
            format!("the CUDA driver sees no GPU (CUDA_VISIBLE_DEVICES={mask:?} hides the others?)")
        }
        _ if device_count == 0 => "the CUDA driver sees no GPU".to_string(),
        _ => "every GPU failed its query (see warnings)".to_string(),
    }
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from CUDA's 16 UUID bytes, as NVML spells it.
pub(crate) fn format_gpu_uuid(bytes: [u8; 16]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex[0..4].concat(),
        hex[4..6].concat(),
        hex[6..8].concat(),
        hex[8..10].concat(),
        hex[10..16].concat()
    )
}

/// `00000000:18:00.0`, the form `nvidia-smi` and NVML print (function is always 0 for a GPU).
pub(crate) fn format_pci_bus_id(domain: u32, bus: u32, device: u32) -> String {
    format!("{domain:08X}:{bus:02X}:{device:02X}.0")
}
