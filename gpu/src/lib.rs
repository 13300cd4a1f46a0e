//! The GPUs of a build host, as `trtfarmd` and its workers see them.
//!
//! - [`inventory`]: which GPUs there are (CUDA driver API) and what NVML adds about them
//!   (driver version, clocks, MIG mode, running processes). The daemon calls
//!   [`inventory::probe`] at start-up; it never creates a CUDA context.
//! - [`mps`]: the CUDA Multi-Process Service control daemon: start one this process owns, or
//!   use one someone else runs, and the environment a worker needs to be its client.
//! - [`context`]: run inside a worker, reports what its CUDA context actually gets (SM count
//!   under an MPS limit) and, optionally, the bf16 GEMM throughput it reaches.
//!
//! CUDA, cuBLAS and NVML are all loaded at run time, so this crate builds and runs on machines
//! without them; every entry point reports a missing driver as a value, never a panic.
//!
//! # What is verified where
//!
//! The development machines and CI have no GPU and no NVIDIA driver. There the tests cover the
//! pure parts (UUID and version formatting, matching NVML devices to CUDA devices, summary
//! lines, MPS commands and environments), the no-driver paths of [`inventory::probe`] and
//! [`context::probe_context`], and the MPS control daemon's lifecycle against a fake control
//! binary (a shell script that creates and removes the `control` FIFO and writes a pid file like
//! NVIDIA's does). Everything that talks to a real driver, a real `nvidia-cuda-mps-control` or
//! cuBLAS is only exercised on a GPU host.

pub mod context;
mod driver;
pub mod inventory;
pub mod mps;

pub use context::{ContextReport, MatmulReport, MatmulSpec, ProbeError, probe_context};
pub use inventory::{
    ComputeCapability, DriverInfo, GpuInfo, GpuProcess, Inventory, probe, summary_line,
};
pub use mps::{MpsControl, MpsError, MpsMode};
