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
mod socket;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use control::MpsControl;

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

/// Whether and how builds share GPUs through MPS (`gpu.mps` in `daemon.toml`).
///
/// `mps = "off"`, `[gpu.mps.own]` with `pipe_dir` and `log_dir`, or `[gpu.mps.existing]` with
/// `pipe_dir`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum MpsMode {
    /// No MPS: each worker gets its own CUDA context, time-sliced with the others (default).
    #[default]
    Off,
    /// This process starts an MPS control daemon with these directories and stops it on exit.
    Own {
        /// `CUDA_MPS_PIPE_DIRECTORY`, created with mode 0700; e.g. `/run/trtfarm/mps`.
        pipe_dir: PathBuf,
        /// `CUDA_MPS_LOG_DIRECTORY`, created with mode 0700; e.g. `/var/log/trtfarm/mps`.
        log_dir: PathBuf,
    },
    /// Use a control daemon someone else runs (a systemd unit, the k8s device plugin).
    Existing {
        /// Its `CUDA_MPS_PIPE_DIRECTORY`, e.g. `/tmp/nvidia-mps`.
        pipe_dir: PathBuf,
    },
}

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
         it; use it with gpu.mps.existing.pipe_dir = {:?}, stop it with `echo quit | \
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
         with CUDA_MPS_PIPE_DIRECTORY set to it) or set gpu.mps to \"off\" or to own",
        pipe_dir.display(), pipe_dir.display()
    )]
    NotRunning {
        /// The pipe directory.
        pipe_dir: PathBuf,
    },
    /// A `control` endpoint is there but nothing listens on it.
    #[error(
        "{}/control exists but no MPS control daemon answers on it (one that stopped left it \
         behind); start one or set gpu.mps to \"off\" or to own",
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

/// Whether `mode` can work here, with an error a user can act on when it cannot: the control
/// binary for [`MpsMode::Own`] (and no foreign daemon in its pipe directory), an answering
/// daemon for [`MpsMode::Existing`].
pub fn availability(mode: &MpsMode) -> Result<(), MpsError> {
    match mode {
        MpsMode::Off => Ok(()),
        MpsMode::Own { pipe_dir, .. } => {
            let path = std::env::var_os("PATH");
            find_control_binary(path.as_deref()).ok_or(MpsError::ControlBinaryNotFound)?;
            check_pipe_dir_length(pipe_dir)?;
            match endpoint::probe_endpoint(pipe_dir) {
                endpoint::Endpoint::Answers => Err(MpsError::AlreadyRunning {
                    pipe_dir: pipe_dir.clone(),
                    pid: endpoint::read_pid_file(pipe_dir),
                }),
                _ => Ok(()),
            }
        }
        MpsMode::Existing { pipe_dir } => endpoint::check_existing(pipe_dir),
    }
}
