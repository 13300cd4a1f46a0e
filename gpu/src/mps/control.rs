//! A handle on an MPS control daemon: one this process started (and stops), or someone else's.

use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::endpoint::{Endpoint, check_existing, probe_endpoint, process_alive, read_pid_file};
use super::{
    ControlAction, MpsDirs, MpsError, PID_FILE, SHUTDOWN_TIMEOUT, START_TIMEOUT,
    check_pipe_dir_length, client_env, control_command, is_executable,
};

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);
/// Where `-d`'s own output goes (the daemon itself logs to `control.log` beside it).
const START_OUTPUT: &str = "trtfarm-mps-control-start.out";

/// An MPS control daemon in use. An owned one is stopped by [`MpsControl::shutdown`], or
/// best-effort on drop.
#[derive(Debug)]
pub struct MpsControl {
    dirs: MpsDirs,
    /// Set for a daemon this process started: it is the one that sends `quit`.
    binary: Option<PathBuf>,
    /// The daemon's pid from its pid file, to see it exit.
    daemon_pid: Option<u32>,
    stopped: bool,
}

impl MpsControl {
    /// Starts a control daemon this process owns, with `pipe_dir` and `log_dir` (created 0700),
    /// and waits up to [`START_TIMEOUT`] until it answers on `<pipe_dir>/control`. Refuses when
    /// another daemon already answers there.
    pub fn start_own(binary: &Path, pipe_dir: &Path, log_dir: &Path) -> Result<Self, MpsError> {
        if !is_executable(binary) {
            return Err(MpsError::ControlBinaryMissing {
                binary: binary.to_path_buf(),
            });
        }
        check_pipe_dir_length(pipe_dir)?;
        for dir in [pipe_dir, log_dir] {
            // 0700: anyone who can reach the pipe can use (and stop) the daemon.
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| MpsError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        if probe_endpoint(pipe_dir) == Endpoint::Answers {
            return Err(MpsError::AlreadyRunning {
                pipe_dir: pipe_dir.to_path_buf(),
                pid: read_pid_file(pipe_dir),
            });
        }
        // Nobody answers, so a pid file here is a dead daemon's: remove it, or it could be read
        // below before the new daemon writes its own.
        let _ = std::fs::remove_file(pipe_dir.join(PID_FILE));
        let dirs = MpsDirs {
            pipe_dir: pipe_dir.to_path_buf(),
            log_dir: Some(log_dir.to_path_buf()),
        };
        let output_path = log_dir.join(START_OUTPUT);
        // A file, not a pipe: the forked daemon may inherit the descriptor and keep it open.
        let output = File::create(&output_path).map_err(|source| MpsError::CreateDir {
            path: output_path.clone(),
            source,
        })?;
        let spawn_err = |source| MpsError::Spawn {
            binary: binary.to_path_buf(),
            source,
        };
        let mut child = control_command(binary, &dirs, ControlAction::StartDaemon)
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(spawn_err)?)
            .stderr(output)
            .spawn()
            .map_err(spawn_err)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut exited = false;
        loop {
            if !exited && let Ok(Some(status)) = child.try_wait() {
                exited = true;
                if !status.success() {
                    let stderr = std::fs::read_to_string(&output_path).unwrap_or_default();
                    return Err(MpsError::StartFailed {
                        binary: binary.to_path_buf(),
                        status,
                        stderr: stderr.trim().to_string(),
                        log_dir: log_dir.to_path_buf(),
                    });
                }
            }
            if probe_endpoint(pipe_dir) == Endpoint::Answers {
                break;
            }
            if Instant::now() >= deadline {
                reap(&mut child);
                return Err(MpsError::StartTimedOut {
                    pipe_dir: pipe_dir.to_path_buf(),
                    log_dir: log_dir.to_path_buf(),
                    waited: START_TIMEOUT,
                });
            }
            sleep(POLL);
        }
        // `-d` returns once the daemon has forked; reap it so no zombie is left behind.
        reap(&mut child);
        Ok(MpsControl {
            dirs,
            binary: Some(binary.to_path_buf()),
            daemon_pid: wait_for_pid_file(pipe_dir, deadline),
            stopped: false,
        })
    }

    /// Uses a control daemon someone else runs at `pipe_dir`; checks that it answers.
    pub fn use_existing(pipe_dir: &Path) -> Result<Self, MpsError> {
        check_existing(pipe_dir)?;
        Ok(MpsControl {
            dirs: MpsDirs {
                pipe_dir: pipe_dir.to_path_buf(),
                log_dir: None,
            },
            binary: None,
            daemon_pid: read_pid_file(pipe_dir),
            stopped: false,
        })
    }

    /// The `CUDA_MPS_PIPE_DIRECTORY` clients connect through.
    pub fn pipe_dir(&self) -> &Path {
        &self.dirs.pipe_dir
    }

    /// Whether this process started the daemon (and so stops it).
    pub fn owned(&self) -> bool {
        self.binary.is_some()
    }

    /// The daemon's pid, from its pid file, when it wrote one.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon_pid
    }

    /// The environment a worker needs to be a client, capped at `percentage` of the SMs.
    pub fn client_env(&self, percentage: Option<u8>) -> Result<Vec<(String, String)>, MpsError> {
        client_env(&self.dirs.pipe_dir, percentage)
    }

    /// Stops an owned daemon: sends `quit`, then waits up to [`SHUTDOWN_TIMEOUT`] for it to
    /// exit. Does nothing for someone else's daemon.
    pub fn shutdown(mut self) -> Result<(), MpsError> {
        self.stop(SHUTDOWN_TIMEOUT)
    }

    pub(super) fn stop(&mut self, timeout: Duration) -> Result<(), MpsError> {
        let Some(binary) = self.binary.clone() else {
            return Ok(());
        };
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let deadline = Instant::now() + timeout;
        let quit = send_quit(&binary, &self.dirs, deadline);
        loop {
            let gone = match self.daemon_pid {
                Some(pid) => !process_alive(pid),
                None => probe_endpoint(&self.dirs.pipe_dir) != Endpoint::Answers,
            };
            if gone {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MpsError::ShutdownTimedOut {
                    pipe_dir: self.dirs.pipe_dir.clone(),
                    pid: self.daemon_pid,
                    waited: timeout,
                    detail: match quit {
                        Ok(()) => "quit was sent".to_string(),
                        Err(why) => format!("sending quit failed: {why}"),
                    },
                });
            }
            sleep(POLL);
        }
    }
}

impl Drop for MpsControl {
    fn drop(&mut self) {
        if let Err(error) = self.stop(SHUTDOWN_TIMEOUT) {
            tracing::warn!("MPS control daemon not stopped: {error}");
        }
    }
}

/// Runs the client with `quit` on its standard input and waits for it until `deadline`.
///
/// The client only returns once the daemon has exited, and NVIDIA's daemon first waits for its
/// clients to end (seen with driver 580: "Server 432 has 2 active worker threads. Server will
/// not shutdown", retried with backoff). Killing the client could drop the pending quit, so one
/// still running at `deadline` is left to finish (a thread reaps it) and the daemon still
/// exits once the last build is gone.
fn send_quit(binary: &Path, dirs: &MpsDirs, deadline: Instant) -> Result<(), String> {
    let mut child = control_command(binary, dirs, ControlAction::Quit)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), ControlAction::Quit.stdin_text()) {
        // Dropping stdin closes it: the client reads one command and exits.
        let _ = stdin.write_all(text.as_bytes());
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the quit command exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                std::thread::spawn(move || child.wait());
                return Err(
                    "quit is still pending, waiting for the daemon's clients to end".into(),
                );
            }
            Ok(None) => sleep(POLL),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Kills `child` if it still runs, and waits for it so it leaves no zombie.
fn reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The daemon may answer a moment before its pid file is written: wait for it until `deadline`.
fn wait_for_pid_file(pipe_dir: &Path, deadline: Instant) -> Option<u32> {
    loop {
        if let Some(pid) = read_pid_file(pipe_dir) {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(POLL);
    }
}
