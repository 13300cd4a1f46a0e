//! What a worker's CUDA context actually gets: run inside the worker (with its MPS environment
//! and `CUDA_VISIBLE_DEVICES`), it reports the SMs the context may use and, optionally, the
//! bf16 GEMM throughput it reaches.
//!
//! Under MPS with `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`, both the context's execution affinity
//! (`cuCtxGetExecAffinity`) and the device's SM-count attribute name the client's share: on the
//! H100 lent here (driver 580), 25% gave 32 of 132 SMs in both, already before the context
//! existed, and about 30% of the unlimited GEMM throughput.

mod matmul;
#[cfg(test)]
mod tests;

use std::mem::MaybeUninit;

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdevice_attribute, CUexecAffinityType};
use cudarc::driver::{CudaContext, DriverError};
use serde::{Deserialize, Serialize};

use crate::driver::{cuda_unavailable, describe, guard};
use crate::inventory::ComputeCapability;
use crate::mps::{ACTIVE_THREAD_PERCENTAGE_ENV, PIPE_DIRECTORY_ENV};

pub use matmul::{MatmulReport, MatmulSpec};

/// What one CUDA context on one device got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextReport {
    /// The CUDA ordinal probed (after `CUDA_VISIBLE_DEVICES`).
    pub ordinal: usize,
    /// Device name.
    pub device_name: String,
    /// Device compute capability.
    #[serde(with = "crate::inventory::major_minor")]
    pub compute_capability: ComputeCapability,
    /// `CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT` before any context existed (already the MPS
    /// share under an active thread percentage, with driver 580).
    pub device_multiprocessors: u32,
    /// The same attribute read with the context current.
    pub multiprocessors_in_context: u32,
    /// SMs the context may use: `cuCtxGetExecAffinity(CU_EXEC_AFFINITY_TYPE_SM_COUNT)`.
    pub context_sm_count: Option<u32>,
    /// Why `context_sm_count` is missing, if it is.
    pub context_sm_count_error: Option<String>,
    /// Free device memory as the context sees it (`cuMemGetInfo`), in bytes.
    pub memory_free_bytes: Option<u64>,
    /// Total device memory as the context sees it (`cuMemGetInfo`), in bytes.
    pub memory_total_bytes: Option<u64>,
    /// `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` in this process's environment.
    pub mps_active_thread_percentage: Option<String>,
    /// Whether `CUDA_MPS_PIPE_DIRECTORY` is set (the context then belongs to that MPS daemon).
    pub mps_pipe_directory_set: bool,
    /// `CUDA_VISIBLE_DEVICES` in this process's environment.
    pub cuda_visible_devices: Option<String>,
    /// The GEMM measurement, when one was asked for.
    pub matmul: Option<MatmulReport>,
}

/// Why a context probe failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    /// libcuda cannot be loaded.
    #[error("{0}")]
    NoDriver(String),
    /// No device with that ordinal.
    #[error("no CUDA device {ordinal}: {count} visible (CUDA_VISIBLE_DEVICES={visible:?})")]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many CUDA sees.
        count: usize,
        /// `CUDA_VISIBLE_DEVICES`, if set.
        visible: Option<String>,
    },
    /// A CUDA driver call failed.
    #[error("{call} failed: {message}")]
    Cuda {
        /// The call, e.g. `cuCtxCreate`.
        call: &'static str,
        /// The driver's error name and text.
        message: String,
    },
    /// libcublas cannot be loaded.
    #[error(
        "cuBLAS not found (tried {}); install it (e.g. the nvidia-cublas wheel) and put its \
         directory on LD_LIBRARY_PATH", tried.join(", ")
    )]
    NoCublas {
        /// The library names tried.
        tried: Vec<String>,
    },
    /// A cuBLAS call failed.
    #[error("{call} failed: {message}")]
    Cublas {
        /// The call.
        call: &'static str,
        /// cuBLAS's status.
        message: String,
    },
    /// The GEMM spec cannot be run.
    #[error("invalid matmul spec: {0}")]
    InvalidSpec(String),
    /// cudarc panicked (a symbol missing from this driver, say).
    #[error("{0}")]
    Panicked(String),
}

/// Maps a driver error to [`ProbeError::Cuda`] naming the call.
pub(crate) fn cuda_err(call: &'static str) -> impl Fn(DriverError) -> ProbeError {
    move |e| ProbeError::Cuda {
        call,
        message: describe(e),
    }
}

/// Creates (retains) the primary CUDA context on `ordinal` and reports what it gets; runs the
/// GEMM of `matmul` in it when given. Returns [`ProbeError::NoDriver`] without a driver.
pub fn probe_context(
    ordinal: usize,
    matmul: Option<MatmulSpec>,
) -> Result<ContextReport, ProbeError> {
    if let Some(spec) = &matmul {
        spec.validate()?;
    }
    if let Some(why) = cuda_unavailable() {
        return Err(ProbeError::NoDriver(why));
    }
    guard("CUDA context probe", || probe_loaded(ordinal, matmul)).map_err(ProbeError::Panicked)?
}

fn probe_loaded(ordinal: usize, matmul: Option<MatmulSpec>) -> Result<ContextReport, ProbeError> {
    use CUdevice_attribute::*;
    result::init().map_err(cuda_err("cuInit"))?;
    let count = result::device::get_count().map_err(cuda_err("cuDeviceGetCount"))?;
    let count = usize::try_from(count).unwrap_or(0);
    if ordinal >= count {
        return Err(ProbeError::NoSuchDevice {
            ordinal,
            count,
            visible: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        });
    }
    let device = result::device::get(ordinal as i32).map_err(cuda_err("cuDeviceGet"))?;
    // SAFETY: `device` came from cuDeviceGet.
    let device_multiprocessors =
        unsafe { result::device::get_attribute(device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT) }
            .map_err(cuda_err("cuDeviceGetAttribute"))?;

    let ctx = CudaContext::new(ordinal).map_err(cuda_err("cuDevicePrimaryCtxRetain"))?;
    let attribute = |attrib| {
        ctx.attribute(attrib)
            .map(|v| u32::try_from(v).unwrap_or(0))
            .map_err(cuda_err("cuDeviceGetAttribute"))
    };
    let multiprocessors_in_context = attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    let compute_capability = ComputeCapability::new(
        attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
        attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
    );
    let device_name = ctx.name().map_err(cuda_err("cuDeviceGetName"))?;
    ctx.bind_to_thread().map_err(cuda_err("cuCtxSetCurrent"))?;
    let (context_sm_count, context_sm_count_error) = match context_sm_count() {
        Ok(count) => (Some(count), None),
        Err(e) => (None, Some(describe(e))),
    };
    let memory = ctx.mem_get_info().ok();
    let matmul = match matmul {
        Some(spec) => Some(matmul::run(&ctx, &spec)?),
        None => None,
    };
    Ok(ContextReport {
        ordinal,
        device_name,
        compute_capability,
        device_multiprocessors: u32::try_from(device_multiprocessors).unwrap_or(0),
        multiprocessors_in_context,
        context_sm_count,
        context_sm_count_error,
        memory_free_bytes: memory.map(|(free, _)| free as u64),
        memory_total_bytes: memory.map(|(_, total)| total as u64),
        mps_active_thread_percentage: std::env::var(ACTIVE_THREAD_PERCENTAGE_ENV).ok(),
        mps_pipe_directory_set: std::env::var_os(PIPE_DIRECTORY_ENV).is_some(),
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        matmul,
    })
}

/// The SM count of the current context's execution affinity.
fn context_sm_count() -> Result<u32, DriverError> {
    let mut param = MaybeUninit::<sys::CUexecAffinityParam>::zeroed();
    // SAFETY: a context is current (bound above); the driver fills `param`.
    unsafe {
        sys::cuCtxGetExecAffinity(
            param.as_mut_ptr(),
            CUexecAffinityType::CU_EXEC_AFFINITY_TYPE_SM_COUNT,
        )
        .result()?;
        // SM_COUNT was asked for, so `smCount` is the union member written.
        Ok(param.assume_init().param.smCount.val)
    }
}
