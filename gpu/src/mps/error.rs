//! What can go wrong with MPS, each with what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use super::{ACTIVE_THREAD_PERCENTAGE_ENV, CONTROL_BINARY, LONGEST_ENDPOINT, socket};

/// Errors starting, finding or stopping an MPS control daemon, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum MpsError {
    /// No control binary on `PATH` or in the fallback directories.
    #[error(
        "MPS was asked for but {CONTROL_BINARY} is not on PATH or in /usr/local/nvidia/bin; \
         install the NVIDIA driver utilities or set gpu.mps = \"off\""
    )]
    ControlBinaryNotFound,
    /// The control binary given does not exist or cannot be run.
    #[error(
        "MPS control binary {} does not exist or is not executable; install the NVIDIA driver \
         utilities or set gpu.mps = \"off\"", binary.display()
    )]
    ControlBinaryMissing {
        /// The path given.
        binary: PathBuf,
    },
    /// The pipe directory is too long for the Unix sockets the daemon creates in it.
    #[error(
        "MPS pipe directory {} is too long: the control daemon's sockets in it (up to \
         {LONGEST_ENDPOINT}) must fit in {} bytes; choose a shorter one, e.g. under /tmp or /run",
        pipe_dir.display(), socket::MAX_SOCKET_PATH
    )]
    PipeDirTooLong {
        /// The directory.
        pipe_dir: PathBuf,
    },
    /// A pipe or log directory could not be created.
    #[error("cannot create MPS directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Someone else's control daemon already answers in the pipe directory.
    #[error(
        "an MPS control daemon{} already answers on {}/control and this process did not start \
         it; use it with gpu.mps = \"existing\" and gpu.mps_pipe_dir = {:?}, stop it with `echo quit | \
         CUDA_MPS_PIPE_DIRECTORY={} {CONTROL_BINARY}`, or choose another pipe_dir",
        pid_text(*pid), pipe_dir.display(), pipe_dir, pipe_dir.display()
    )]
    AlreadyRunning {
        /// The pipe directory.
        pipe_dir: PathBuf,
        /// Its pid, from its pid file.
        pid: Option<u32>,
    },
    /// The control binary could not be started.
    #[error("cannot run {}: {source}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `nvidia-cuda-mps-control -d` exited with an error.
    #[error(
        "{} -d failed ({status}): {stderr}; see {}/control.log",
        binary.display(), log_dir.display()
    )]
    StartFailed {
        /// The binary.
        binary: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
        /// Where its log is.
        log_dir: PathBuf,
    },
    /// The daemon started but never answered on its `control` endpoint.
    #[error(
        "the MPS control daemon did not answer on {}/control within {waited:?}; see {}/control.log",
        pipe_dir.display(), log_dir.display()
    )]
    StartTimedOut {
        /// The pipe directory.
        pipe_dir: PathBuf,
        /// Its log directory.
        log_dir: PathBuf,
        /// How long it was given.
        waited: Duration,
    },
    /// No control daemon in the pipe directory.
    #[error(
        "no MPS control daemon at {}: {}/control does not exist; start one (`{CONTROL_BINARY} -d` \
         with CUDA_MPS_PIPE_DIRECTORY set to it) or set gpu.mps to \"off\" or \"own\"",
        pipe_dir.display(), pipe_dir.display()
    )]
    NotRunning {
        /// The pipe directory.
        pipe_dir: PathBuf,
    },
    /// A `control` endpoint is there but nothing listens on it.
    #[error(
        "{}/control exists but no MPS control daemon answers on it (one that stopped left it \
         behind); start one or set gpu.mps to \"off\" or \"own\"",
        pipe_dir.display()
    )]
    NotAnswering {
        /// The pipe directory.
        pipe_dir: PathBuf,
    },
    /// The `control` endpoint cannot be reached (permissions, not a socket or FIFO).
    #[error("cannot reach the MPS control endpoint {}: {reason}", path.display())]
    Inaccessible {
        /// The endpoint.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An active thread percentage outside 1..=100.
    #[error("{ACTIVE_THREAD_PERCENTAGE_ENV} must be 1 to 100, got {0}")]
    InvalidPercentage(u8),
    /// The daemon was asked to quit but is still running.
    #[error(
        "the MPS control daemon{} on {} did not exit within {waited:?} of `quit` ({detail}); it \
         waits for its clients to finish: look for processes still using the GPU (nvidia-smi)",
        pid_text(*pid), pipe_dir.display()
    )]
    ShutdownTimedOut {
        /// The pipe directory.
        pipe_dir: PathBuf,
        /// Its pid, when known.
        pid: Option<u32>,
        /// How long it was given.
        waited: Duration,
        /// What was seen, e.g. the quit command's failure.
        detail: String,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}
