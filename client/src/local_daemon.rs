//! The local daemon, Buck2-style: found through the info file it writes in its state
//! directory, checked with a version handshake, and started (or restarted) on demand under an
//! exclusive lifecycle lock, so clients racing on an empty directory end up with one daemon.

mod process;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use trtfarm_proto::local::{DaemonInfo, INFO_FILE};
use trtfarm_proto::v1;

use crate::connect::{FarmConnection, open};
pub use process::daemon_alive;
use process::{Spawned, log_tail, signal, spawn_daemon, wait_for_exit};

/// This client's version; a local daemon must answer with the same one to be reused.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The lock file every start, restart and stop holds (`flock`, exclusive).
pub const LOCK_FILE: &str = "lifecycle.lock";
/// Where a started daemon's stdout and stderr are appended.
pub const LOG_FILE: &str = "daemon.log";

/// How long a started daemon may take to write its info file and answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped daemon may drain before it gets SIGKILL (its default drain is 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the handshake with a daemon that claims to listen may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do about the local daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It runs and speaks our version: use it.
    Reuse,
    /// None runs (no info file, or its process is gone): start one.
    Start,
    /// One runs but has another version or does not answer: stop it, then start ours.
    Restart,
}

/// Decides from what was observed: is there an info file, is its daemon process alive, and
/// which version did it answer the handshake with (`None`: no answer).
pub fn decide(
    info_present: bool,
    pid_alive: bool,
    answered_version: Option<&str>,
    ours: &str,
) -> Decision {
    match (info_present, pid_alive, answered_version) {
        (false, _, _) | (true, false, _) => Decision::Start,
        (true, true, Some(version)) if version == ours => Decision::Reuse,
        (true, true, _) => Decision::Restart,
    }
}

/// A local daemon that answered the handshake.
pub struct Running {
    /// Its info file.
    pub info: DaemonInfo,
    /// What it said about itself.
    pub capabilities: v1::Capabilities,
    /// A connected client.
    pub client: FarmConnection,
    /// Whether this call started it (rather than finding it running).
    pub started: bool,
}

/// The local daemon as found, without changing anything.
pub enum Probe {
    /// No info file.
    Absent,
    /// An info file whose process is gone (or is no `trtfarmd` any more).
    Stale(DaemonInfo),
    /// The process lives but does not answer.
    Silent(DaemonInfo, anyhow::Error),
    /// It answered.
    Answering(Box<Running>),
}

impl Probe {
    /// The decision for this observation.
    pub fn decision(&self) -> Decision {
        match self {
            Probe::Absent => decide(false, false, None, CLIENT_VERSION),
            Probe::Stale(_) => decide(true, false, None, CLIENT_VERSION),
            Probe::Silent(..) => decide(true, true, None, CLIENT_VERSION),
            Probe::Answering(running) => decide(
                true,
                true,
                Some(&running.capabilities.server_version),
                CLIENT_VERSION,
            ),
        }
    }
}

/// Looks at the daemon in `dir`: reads the info file, checks the process, shakes hands.
pub async fn probe(dir: &Path) -> anyhow::Result<Probe> {
    let info = DaemonInfo::read(dir)
        .with_context(|| format!("cannot read {}", dir.join(INFO_FILE).display()))?;
    let Some(info) = info else {
        return Ok(Probe::Absent);
    };
    if !daemon_alive(info.pid) {
        return Ok(Probe::Stale(info));
    }
    match handshake(&info.endpoint).await {
        Ok((client, capabilities)) => Ok(Probe::Answering(Box::new(Running {
            info,
            capabilities,
            client,
            started: false,
        }))),
        Err(error) => Ok(Probe::Silent(info, error)),
    }
}

/// The local daemon in `dir`, started (or restarted, when it runs another version or does not
/// answer) if need be.
pub async fn ensure(dir: &Path) -> anyhow::Result<Running> {
    // The common case needs no lock: a daemon of our version answers.
    if let Probe::Answering(running) = probe(dir).await?
        && running.capabilities.server_version == CLIENT_VERSION
    {
        return Ok(*running);
    }
    let dir = absolute_dir(dir)?;
    let _lock = LifecycleLock::acquire(&dir).await?;
    // Someone may have started one while we waited for the lock.
    let found = probe(&dir).await?;
    match (found.decision(), found) {
        (Decision::Reuse, Probe::Answering(running)) => return Ok(*running),
        (_, Probe::Answering(running)) => {
            eprintln!(
                "trtfarm: the local daemon (pid {}) runs version {}, this client is {CLIENT_VERSION}: restarting it",
                running.info.pid, running.capabilities.server_version
            );
            terminate(&dir, &running.info).await?;
        }
        (_, Probe::Silent(info, error)) => {
            eprintln!(
                "trtfarm: the local daemon (pid {}) does not answer ({error:#}): restarting it",
                info.pid
            );
            terminate(&dir, &info).await?;
        }
        (_, Probe::Stale(info)) => remove_info_of(&dir, info.pid),
        (_, Probe::Absent) => {}
    }
    start(&dir).await
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM (having drained).
    Exited,
    /// It did not exit within the timeout and got SIGKILL.
    Killed,
}

/// Stops the daemon `info` describes: SIGTERM, wait for it to drain and exit, SIGKILL after
/// the timeout; then makes sure its info file is gone. Holds the lifecycle lock.
pub async fn stop(dir: &Path, info: &DaemonInfo) -> anyhow::Result<Stopped> {
    let _lock = LifecycleLock::acquire(dir).await?;
    terminate(dir, info).await
}

/// Removes an info file whose daemon is gone (`pid` guards against a newer daemon's file).
pub fn remove_info_of(dir: &Path, pid: u32) {
    if let Ok(Some(info)) = DaemonInfo::read(dir)
        && info.pid == pid
    {
        let _ = std::fs::remove_file(dir.join(INFO_FILE));
    }
}

async fn terminate(dir: &Path, info: &DaemonInfo) -> anyhow::Result<Stopped> {
    let pid = info.pid;
    let mut how = Stopped::Exited;
    if daemon_alive(pid) {
        signal(pid, libc::SIGTERM)?;
        if !wait_for_exit(pid, STOP_TIMEOUT).await {
            signal(pid, libc::SIGKILL)?;
            how = Stopped::Killed;
            anyhow::ensure!(
                wait_for_exit(pid, Duration::from_secs(10)).await,
                "the local daemon (pid {pid}) survived SIGKILL"
            );
        }
    }
    remove_info_of(dir, pid);
    Ok(how)
}

async fn handshake(endpoint: &str) -> anyhow::Result<(FarmConnection, v1::Capabilities)> {
    let work = async {
        let mut client = open(endpoint, None, HANDSHAKE_TIMEOUT).await?;
        let capabilities = client
            .get_capabilities(v1::GetCapabilitiesRequest {})
            .await
            .map_err(|status| anyhow::anyhow!(crate::connect::describe_status(&status)))?
            .into_inner();
        anyhow::Ok((client, capabilities))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {endpoint} within {HANDSHAKE_TIMEOUT:?}"))?
}

fn absolute_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the daemon directory {}", dir.display()))?;
    std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// An exclusive `flock` on `dir/lifecycle.lock`, released when dropped (the file closes).
struct LifecycleLock {
    _file: std::fs::File,
}

impl LifecycleLock {
    async fn acquire(dir: &Path) -> anyhow::Result<LifecycleLock> {
        let path = dir.join(LOCK_FILE);
        tokio::task::spawn_blocking(move || {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            use std::os::fd::AsRawFd;
            loop {
                // SAFETY: flock(2) on a descriptor this function owns.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    return Ok(LifecycleLock { _file: file });
                }
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        })
        .await
        .context("the lock task failed")?
    }
}

/// Spawns `trtfarmd serve` for `dir` (absolute), detached, and waits until it answers.
async fn start(dir: &Path) -> anyhow::Result<Running> {
    let Spawned {
        mut child,
        log_path,
        log_start,
    } = spawn_daemon(dir)?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last_error = None;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the local daemon exited ({status}) before it listened; {}",
                log_tail(&log_path, log_start)
            );
        }
        if let Ok(Some(info)) = DaemonInfo::read(dir)
            && info.pid == pid
        {
            match handshake(&info.endpoint).await {
                Ok((client, capabilities)) => {
                    eprintln!(
                        "trtfarm: started the local daemon (pid {pid}, {})",
                        info.endpoint
                    );
                    return Ok(Running {
                        info,
                        capabilities,
                        client,
                        started: true,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let why = last_error.map(|e| format!(" ({e:#})")).unwrap_or_default();
            anyhow::bail!(
                "the local daemon did not answer within {}s{why}; {}",
                START_TIMEOUT.as_secs(),
                log_tail(&log_path, log_start)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_cover_every_observation() {
        let ours = "0.1.0";
        assert_eq!(decide(false, false, None, ours), Decision::Start);
        assert_eq!(
            decide(true, false, None, ours),
            Decision::Start,
            "stale pid"
        );
        assert_eq!(decide(true, false, Some(ours), ours), Decision::Start);
        assert_eq!(decide(true, true, Some(ours), ours), Decision::Reuse);
        assert_eq!(decide(true, true, Some("0.0.9"), ours), Decision::Restart);
        assert_eq!(decide(true, true, None, ours), Decision::Restart, "silent");
    }
}
