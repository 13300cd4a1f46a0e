//! `[gpu]`: which GPUs TensorRT Enterprise builds use, and CUDA MPS for per-build compute limits.

use std::path::PathBuf;

use serde::Deserialize;

/// `[gpu]`: GPUs and MPS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// CUDA ordinals of the GPUs builds may use (as `nvidia-smi` numbers them when
    /// `CUDA_DEVICE_ORDER=PCI_BUS_ID`; the daemon pins each worker by UUID).
    ///
    /// Default: none, meaning every GPU the driver reports. Example: `devices = [0, 1]`.
    /// Flag `--gpu-devices 0,1`, env `TRTFARMD_GPU_DEVICES`.
    pub devices: Option<Vec<u32>>,

    /// CUDA MPS, which limits a build to the share of SMs its manifest's `mps_percentage` asks
    /// for: `"off"` (a manifest with `mps_percentage` is refused, never built on the whole GPU),
    /// `"own"` (the daemon starts an MPS control daemon with its own pipe and log directories
    /// and stops it on shutdown) or `"existing"` (use one someone else runs, at `mps_pipe_dir`).
    /// With MPS on, every GPU build is an MPS client.
    ///
    /// Default: `"off"`: starting MPS changes how every process of this user shares the GPU, so
    /// the daemon does it only when asked. Example: `mps = "own"`.
    /// Flag `--mps`, env `TRTFARMD_MPS`.
    pub mps: MpsMode,

    /// The MPS pipe directory (`CUDA_MPS_PIPE_DIRECTORY`).
    ///
    /// Default: for `"own"`, `/tmp/trtfarm-mps-<16 hex digits of state_dir>` (short, because
    /// MPS puts Unix sockets there); for `"existing"`, `$CUDA_MPS_PIPE_DIRECTORY`, else
    /// NVIDIA's default `/tmp/nvidia-mps`. Example: `mps_pipe_dir = "/run/trtfarm/mps"`.
    /// Flag `--mps-pipe-dir`, env `TRTFARMD_MPS_PIPE_DIR`.
    pub mps_pipe_dir: Option<PathBuf>,

    /// The MPS log directory (`CUDA_MPS_LOG_DIRECTORY`) of a control daemon this daemon starts.
    ///
    /// Default: `<state_dir>/mps-log`. Example: `mps_log_dir = "/var/log/trtfarm/mps"`.
    /// Flag `--mps-log-dir`, env `TRTFARMD_MPS_LOG_DIR`.
    pub mps_log_dir: Option<PathBuf>,

    /// The `nvidia-cuda-mps-control` program.
    ///
    /// Default: found on `PATH`, else `/usr/local/nvidia/bin` or `/usr/bin`. Example:
    /// `mps_control = "/usr/local/nvidia/bin/nvidia-cuda-mps-control"`.
    /// Flag `--mps-control`, env `TRTFARMD_MPS_CONTROL`.
    pub mps_control: Option<PathBuf>,
}

/// How the daemon gets MPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MpsMode {
    /// No MPS.
    #[default]
    Off,
    /// Start and own a control daemon.
    Own,
    /// Use a control daemon someone else runs.
    Existing,
}
