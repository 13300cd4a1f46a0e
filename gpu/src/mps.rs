//! The CUDA Multi-Process Service (MPS): one control daemon per pipe directory, whose clients
//! (the build workers) share the GPU with a per-client cap on the SMs they may use.
//!
//! How NVIDIA's `nvidia-cuda-mps-control` is driven:
//! - `nvidia-cuda-mps-control -d` starts the control daemon; it listens on
//!   `$CUDA_MPS_PIPE_DIRECTORY/control`, writes its pid to
//!   `$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid` and logs to
//!   `$CUDA_MPS_LOG_DIRECTORY/control.log`.
//! - `echo quit | nvidia-cuda-mps-control` (same environment) asks it to stop.
//! - A client finds it through the same `CUDA_MPS_PIPE_DIRECTORY`, and
//!   `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` (1–100) caps its share of the SMs.

mod control;
mod endpoint;
mod error;
#[cfg(test)]
mod fake_control;
#[cfg(test)]
mod lifecycle_tests;
mod socket;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use control::MpsControl;
pub use error::MpsError;

/// Environment variable naming the directory of the control daemon's `control` endpoint.
pub const PIPE_DIRECTORY_ENV: &str = "CUDA_MPS_PIPE_DIRECTORY";
/// Environment variable naming the control daemon's log directory.
pub const LOG_DIRECTORY_ENV: &str = "CUDA_MPS_LOG_DIRECTORY";
/// Environment variable capping a client's share of the SMs, in percent.
pub const ACTIVE_THREAD_PERCENTAGE_ENV: &str = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
/// The control binary's file name.
pub const CONTROL_BINARY: &str = "nvidia-cuda-mps-control";
/// Where NVIDIA's container images put the driver utilities; searched after `PATH`.
pub const FALLBACK_BINARY_DIRS: &[&str] = &["/usr/local/nvidia/bin"];
/// The control daemon's endpoint inside the pipe directory (a socket; a FIFO in old drivers).
pub const CONTROL_ENDPOINT: &str = "control";
/// The longest name the control daemon gives a socket in the pipe directory (driver 580).
pub const LONGEST_ENDPOINT: &str = "control_privileged";
/// The file the control daemon writes its pid to, inside the pipe directory.
pub const PID_FILE: &str = "nvidia-cuda-mps-control.pid";

/// How long [`MpsControl::start_own`] waits for the daemon to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`MpsControl::shutdown`] waits for the daemon to exit after `quit`.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the daemon's sockets fit in `pipe_dir` (a Unix socket path has at most 107 bytes).
pub fn check_pipe_dir_length(pipe_dir: &Path) -> Result<(), MpsError> {
    if pipe_dir.join(LONGEST_ENDPOINT).as_os_str().len() > socket::MAX_SOCKET_PATH {
        return Err(MpsError::PipeDirTooLong {
            pipe_dir: pipe_dir.to_path_buf(),
        });
    }
    Ok(())
}

/// The directories a control command runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpsDirs {
    /// `CUDA_MPS_PIPE_DIRECTORY`.
    pub pipe_dir: PathBuf,
    /// `CUDA_MPS_LOG_DIRECTORY`; `None` leaves the driver's default.
    pub log_dir: Option<PathBuf>,
}

/// What a control command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlAction {
    /// `-d`: start the control daemon in the background.
    StartDaemon,
    /// Client mode with `quit` written to its standard input.
    Quit,
}

impl ControlAction {
    /// What to write to the command's standard input, if anything.
    pub fn stdin_text(self) -> Option<&'static str> {
        match self {
            ControlAction::StartDaemon => None,
            ControlAction::Quit => Some("quit\n"),
        }
    }
}

/// The command that starts (`-d`) a control daemon, or the client that tells it to quit (write
/// [`ControlAction::stdin_text`] to its standard input). Standard streams are the caller's.
pub fn control_command(binary: &Path, dirs: &MpsDirs, action: ControlAction) -> Command {
    let mut command = Command::new(binary);
    if action == ControlAction::StartDaemon {
        command.arg("-d");
    }
    command.env(PIPE_DIRECTORY_ENV, &dirs.pipe_dir);
    if let Some(log_dir) = &dirs.log_dir {
        command.env(LOG_DIRECTORY_ENV, log_dir);
    }
    command
}

/// The environment a worker needs to be a client of the daemon at `pipe_dir`, with its share of
/// the SMs capped at `percentage` (1..=100; `None`: no cap).
pub fn client_env(
    pipe_dir: &Path,
    percentage: Option<u8>,
) -> Result<Vec<(String, String)>, MpsError> {
    let mut env = vec![(
        PIPE_DIRECTORY_ENV.to_string(),
        pipe_dir.to_string_lossy().into_owned(),
    )];
    if let Some(percentage) = percentage {
        if !(1..=100).contains(&percentage) {
            return Err(MpsError::InvalidPercentage(percentage));
        }
        env.push((
            ACTIVE_THREAD_PERCENTAGE_ENV.to_string(),
            percentage.to_string(),
        ));
    }
    Ok(env)
}

/// Finds `nvidia-cuda-mps-control` on `path_env` (a `PATH` value), then in
/// [`FALLBACK_BINARY_DIRS`].
pub fn find_control_binary(path_env: Option<&OsStr>) -> Option<PathBuf> {
    let fallbacks = FALLBACK_BINARY_DIRS.iter().map(PathBuf::from);
    find_binary_in(path_env, fallbacks)
}

fn find_binary_in(
    path_env: Option<&OsStr>,
    fallbacks: impl Iterator<Item = PathBuf>,
) -> Option<PathBuf> {
    let on_path = path_env.into_iter().flat_map(std::env::split_paths);
    on_path
        .chain(fallbacks)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(CONTROL_BINARY))
        .find(|candidate| is_executable(candidate))
}

/// A regular file with an execute bit (what `execve` would try).
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
