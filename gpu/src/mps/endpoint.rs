//! What is in a pipe directory: is a control daemon listening, and which pid it wrote.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::socket::try_connect;
use super::{CONTROL_ENDPOINT, MpsError, PID_FILE};

/// What is at `<pipe_dir>/control`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// Nothing: no daemon.
    Missing,
    /// A socket or FIFO nobody listens on: a daemon that stopped left it.
    Stale,
    /// A daemon is listening.
    Answers,
    /// Cannot tell (permissions, not a socket or FIFO).
    Inaccessible(String),
}

/// Looks at the control endpoint without talking MPS: connects to the socket (modern drivers)
/// or opens the FIFO for writing without blocking (old drivers), and closes it at once. (The
/// daemon logs "Unable to accept connection" for each such probe: harmless.)
pub(super) fn probe_endpoint(pipe_dir: &Path) -> Endpoint {
    let path = pipe_dir.join(CONTROL_ENDPOINT);
    let file_type = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Endpoint::Missing,
        Err(e) => return Endpoint::Inaccessible(e.to_string()),
    };
    if file_type.is_socket() {
        // SEQPACKET is what NVIDIA's daemon listens on; STREAM in case another version differs.
        let connected = match try_connect(&path, libc::SOCK_SEQPACKET) {
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                try_connect(&path, libc::SOCK_STREAM)
            }
            other => other,
        };
        match connected {
            Ok(()) => Endpoint::Answers,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Endpoint::Stale,
            Err(e) => Endpoint::Inaccessible(e.to_string()),
        }
    } else if file_type.is_fifo() {
        // O_NONBLOCK: opening a FIFO for writing fails with ENXIO instead of blocking when
        // nobody has it open for reading.
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(_) => Endpoint::Answers,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Endpoint::Stale,
            Err(e) => Endpoint::Inaccessible(e.to_string()),
        }
    } else {
        Endpoint::Inaccessible("neither a socket nor a FIFO".to_string())
    }
}

/// Ok when a daemon answers at `pipe_dir`, else the error saying what is there instead.
pub(super) fn check_existing(pipe_dir: &Path) -> Result<(), MpsError> {
    match probe_endpoint(pipe_dir) {
        Endpoint::Answers => Ok(()),
        Endpoint::Missing => Err(MpsError::NotRunning {
            pipe_dir: pipe_dir.to_path_buf(),
        }),
        Endpoint::Stale => Err(MpsError::NotAnswering {
            pipe_dir: pipe_dir.to_path_buf(),
        }),
        Endpoint::Inaccessible(reason) => Err(MpsError::Inaccessible {
            path: pipe_dir.join(CONTROL_ENDPOINT),
            reason,
        }),
    }
}

/// The pid in `<pipe_dir>/nvidia-cuda-mps-control.pid`, if it names a live process.
pub(super) fn read_pid_file(pipe_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pipe_dir.join(PID_FILE)).ok()?;
    let pid = text.trim().parse::<u32>().ok().filter(|&pid| pid > 0)?;
    process_alive(pid).then_some(pid)
}

/// Whether `pid` runs; a zombie counts as gone (it has exited, only its parent has not reaped
/// it).
pub(super) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ')'.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => {
            // No /proc: fall back to signal 0, which only checks the pid exists.
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                return false;
            };
            // SAFETY: signal 0 sends nothing.
            let rc = unsafe { libc::kill(pid, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}
