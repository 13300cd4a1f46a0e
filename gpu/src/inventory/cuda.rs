//! The CUDA driver API's view of the devices: device queries only, no context.

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdevice_attribute};

use super::{ComputeCapability, format_gpu_uuid, format_pci_bus_id};
use crate::driver::{cuda_unavailable, describe, format_cuda_version, guard};

/// What the CUDA driver reported.
pub(super) struct CudaFacts {
    /// `13.0`.
    pub driver_version: Option<String>,
    /// Devices CUDA counts (after `CUDA_VISIBLE_DEVICES`).
    pub device_count: u32,
    /// One entry per ordinal; `Err` says which query failed.
    pub devices: Vec<Result<CudaDevice, String>>,
}

/// One device, by ordinal.
pub(super) struct CudaDevice {
    pub ordinal: u32,
    pub name: String,
    pub uuid: String,
    pub compute_capability: ComputeCapability,
    pub multiprocessors: u32,
    pub memory_bytes: u64,
    pub pci_bus_id: Option<String>,
}

/// Queries every visible device; `Err` when the driver is missing or `cuInit` fails.
pub(super) fn query() -> Result<CudaFacts, String> {
    if let Some(why) = cuda_unavailable() {
        return Err(why);
    }
    guard("CUDA device query", query_loaded)?
}

fn query_loaded() -> Result<CudaFacts, String> {
    result::init().map_err(|e| format!("the CUDA driver failed to initialise: {}", describe(e)))?;
    let driver_version = {
        let mut version = 0;
        // SAFETY: writes one int.
        unsafe { sys::cuDriverGetVersion(&mut version) }
            .result()
            .ok()
            .map(|()| format_cuda_version(version))
    };
    let count = result::device::get_count()
        .map_err(|e| format!("cuDeviceGetCount failed: {}", describe(e)))?;
    let count = u32::try_from(count).unwrap_or(0);
    let devices = (0..count).map(query_device).collect();
    Ok(CudaFacts {
        driver_version,
        device_count: count,
        devices,
    })
}

fn query_device(ordinal: u32) -> Result<CudaDevice, String> {
    let failed = |what: &str, e| format!("gpu {ordinal}: {what} failed: {}", describe(e));
    let dev = result::device::get(ordinal as i32).map_err(|e| failed("cuDeviceGet", e))?;
    let attribute = |attrib: CUdevice_attribute| {
        // SAFETY: `dev` came from cuDeviceGet.
        unsafe { result::device::get_attribute(dev, attrib) }
            .map(|v| u32::try_from(v).unwrap_or(0))
            .map_err(|e| failed(&format!("attribute {attrib:?}"), e))
    };
    let name = result::device::get_name(dev).map_err(|e| failed("cuDeviceGetName", e))?;
    let uuid = result::device::get_uuid(dev).map_err(|e| failed("cuDeviceGetUuid", e))?;
    // SAFETY: `dev` came from cuDeviceGet.
    let memory_bytes =
        unsafe { result::device::total_mem(dev) }.map_err(|e| failed("cuDeviceTotalMem", e))?;
    use CUdevice_attribute::*;
    let pci_bus_id = match (
        attribute(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID),
        attribute(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID),
        attribute(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID),
    ) {
        (Ok(domain), Ok(bus), Ok(device)) => Some(format_pci_bus_id(domain, bus, device)),
        _ => None,
    };
    Ok(CudaDevice {
        ordinal,
        name,
        uuid: format_gpu_uuid(uuid.bytes.map(|b| b as u8)),
        compute_capability: ComputeCapability::new(
            attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        multiprocessors: attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        memory_bytes: memory_bytes as u64,
        pci_bus_id,
    })
}
