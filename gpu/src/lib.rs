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
//! binary (a shell script that creates and removes a `control` FIFO and writes a pid file like
//! NVIDIA's does) and a `SOCK_SEQPACKET` listener standing in for NVIDIA's socket.
//!
//! What needs a real driver was run on a lent H100 (driver 580.159.04, CUDA 13.0) with
//! `examples/gpu_probe.rs` (2026-11-22): the inventory (NVML joined by UUID), the context probe
//! and its bf16 GEMM (785 TFLOP/s at n = 8192), an owned `nvidia-cuda-mps-control` started,
//! refused a second time, used by clients and stopped; a client at 25% got 32 of 132 SMs and
//! 232 TFLOP/s; `quit` with a client still running stays pending until that client ends. The
//! unit tests also pass there. Run `cargo run --release -p trtfarm-gpu --example gpu_probe --
//! inventory` (or `context 0 8192`, or `mps ...`) to check another host.

#![warn(missing_docs)]

pub mod context;
mod driver;
pub mod inventory;
pub mod mps;

pub use context::{ContextReport, MatmulReport, MatmulSpec, ProbeError, probe_context};
pub use inventory::{
    ComputeCapability, DriverInfo, GpuInfo, GpuProcess, Inventory, probe, summary_line,
};
pub use mps::{MpsControl, MpsError};
