//! The processes behind the local daemon: spawning `trtfarmd serve` detached, telling whether
//! a pid is still a live `trtfarmd`, signalling it, and reading what it logged.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use trtfarm_proto::local::private::PRIVATE_FILE_MODE;
use trtfarm_proto::local::{socket_path, unix_endpoint};

use super::{CLIENT_VERSION, LOG_FILE};

/// Lines of `daemon.log` shown when a start fails.
const LOG_TAIL_LINES: usize = 20;

/// A `trtfarmd serve` just spawned, and where its output goes.
pub(super) struct Spawned {
    /// The daemon process.
    pub(super) child: Child,
    /// `daemon.log`.
    pub(super) log_path: PathBuf,
    /// Where this start's output begins in the log.
    pub(super) log_start: u64,
}

/// Spawns `trtfarmd serve --listen unix:DIR/daemon.sock --state-dir DIR` (`dir` absolute, and
/// private) in a session of its own, stdin closed, stdout and stderr appended to
/// `DIR/daemon.log`.
pub(super) fn spawn_daemon(dir: &Path) -> anyhow::Result<Spawned> {
    let program = daemon_program()?;
    let log_path = dir.join(LOG_FILE);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.seek(std::io::SeekFrom::End(0))?;
    writeln!(
        log,
        "--- {} trtfarm {CLIENT_VERSION} starts {} ---",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        program.display()
    )?;
    let mut command = Command::new(&program);
    // Named explicitly, so a `listen` in the user's daemon.toml cannot put it on TCP.
    let listen = unix_endpoint(&socket_path(dir));
    command
        .arg("serve")
        .args(["--listen", &listen, "--state-dir"])
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Local commands send no token or CA: settings meant for a remote daemon, left in this
    // shell, would make the local daemon refuse its own client.
    for name in [
        "TRTFARMD_TOKEN_FILE",
        "TRTFARMD_TLS_CERT",
        "TRTFARMD_TLS_KEY",
        "TRTFARMD_LISTEN",
    ] {
        command.env_remove(name);
    }
    if let Some(lib_dir) = std::env::var_os("TRTFARM_RTX_LIB_DIR").filter(|v| !v.is_empty()) {
        command.arg("--tensorrt-rtx-lib-dir").arg(lib_dir);
    }
    // SAFETY: setsid(2) is async-signal-safe; the daemon leaves our session and terminal, so
    // a Ctrl-C meant for this client never reaches it.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok(Spawned {
        child,
        log_path,
        log_start,
    })
}

/// Waits until `pid` is no live `trtfarmd`; false if it still is after `timeout`.
pub(super) async fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while daemon_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Sends `signal` to `pid`; a process already gone is no error.
pub(super) fn signal(pid: u32, signal: libc::c_int) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid).context("not a process id")?;
    // SAFETY: kill(2) with a positive pid that daemon_alive identified as a trtfarmd.
    if unsafe { libc::kill(pid, signal) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(error).with_context(|| format!("cannot signal the local daemon (pid {pid})"))
}

/// Whether `pid` is a live (not zombie) `trtfarmd` process. A pid reused by another program
/// counts as dead, so it is never signalled.
pub fn daemon_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(raw, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
    {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        // The state follows the parenthesised command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z" | "X")) {
            return false;
        }
    }
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(cmdline) => {
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            let name = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
            name.starts_with(b"trtfarmd")
        }
        // No /proc (not Linux) or not ours to read: trust kill(2).
        Err(_) => true,
    }
}

/// `trtfarmd` beside this executable, else on PATH.
pub(super) fn daemon_program() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let beside = exe.with_file_name("trtfarmd");
    if beside.is_file() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("trtfarmd"))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "cannot start a local daemon: `trtfarmd` is neither beside {} nor on PATH \
                 (install it, or name a running daemon with --daemon URL)",
                exe.display()
            )
        })
}

/// The last lines `daemon.log` gained since `from`, for an error message.
pub(super) fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|mut file| {
        file.seek(std::io::SeekFrom::Start(from))?;
        file.read_to_string(&mut text)
    });
    if read.is_err() {
        return format!("see {}", path.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!("the end of {}:\n{}", path.display(), tail.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_trtfarmd_processes_count_as_daemons() {
        // This test process lives but is no trtfarmd: a reused pid must not be signalled.
        assert!(!daemon_alive(std::process::id()));
        assert!(!daemon_alive(0));
        assert!(!daemon_alive(u32::MAX));
    }

    #[test]
    fn the_log_tail_starts_at_this_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, "old run\n").unwrap();
        let from = std::fs::metadata(&path).unwrap().len();
        let mut text = String::from("old run\n");
        for i in 0..30 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path, from);
        assert!(
            tail.contains("line 29") && tail.contains("line 10"),
            "{tail}"
        );
        assert!(
            !tail.contains("line 9\n") && !tail.contains("old run"),
            "{tail}"
        );
    }
}
