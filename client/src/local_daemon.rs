//! The local daemon, Buck2-style: found through the info file it writes in its state
//! directory, checked with a version handshake, and started (or restarted) on demand under an
//! exclusive lifecycle lock, so clients racing on an empty directory end up with one daemon.
//!
//! It is private to the user who started it: it listens on a Unix socket in its state
//! directory, which must be this user's and mode 0700 (the info file 0600). A daemon found
//! there listening on TCP (started by hand with `--listen`) is never used implicitly, since any
//! local user could reach it too.

mod process;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use trtfarm_proto::local::private::PRIVATE_FILE_MODE;
use trtfarm_proto::local::{DaemonInfo, INFO_FILE, ensure_private_dir};
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
    /// One runs on TCP, where every local user can reach it (started by hand): neither use
    /// it without being told to nor stop it, say how to do either.
    RefuseShared,
}

/// What was observed about the local daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// There is an info file.
    pub info_present: bool,
    /// Its daemon process is alive.
    pub pid_alive: bool,
    /// It listens on a Unix socket (private), not on TCP.
    pub private: bool,
    /// The version it answered the handshake with (`None`: no answer).
    pub answered_version: Option<&'a str>,
}

/// Decides from what was observed; `ours` is this client's version.
pub fn decide(seen: Observation<'_>, ours: &str) -> Decision {
    match seen {
        Observation {
            info_present: false,
            ..
        }
        | Observation {
            pid_alive: false, ..
        } => Decision::Start,
        Observation { private: false, .. } => Decision::RefuseShared,
        Observation {
            answered_version: Some(version),
            ..
        } if version == ours => Decision::Reuse,
        Observation { .. } => Decision::Restart,
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
        let seen = |info: &DaemonInfo, pid_alive, answered_version| Observation {
            info_present: true,
            pid_alive,
            private: info.is_private(),
            answered_version,
        };
        let seen = match self {
            Probe::Absent => Observation {
                info_present: false,
                pid_alive: false,
                private: true,
                answered_version: None,
            },
            Probe::Stale(info) => seen(info, false, None),
            Probe::Silent(info, _) => seen(info, true, None),
            Probe::Answering(running) => seen(
                &running.info,
                true,
                Some(running.capabilities.server_version.as_str()),
            ),
        };
        decide(seen, CLIENT_VERSION)
    }
}

/// Looks at the daemon in `dir`: reads the info file, checks the process, shakes hands.
/// Refuses a directory or info file that is not private to this user.
pub async fn probe(dir: &Path) -> anyhow::Result<Probe> {
    let info = DaemonInfo::read(dir).map_err(|error| unusable(dir, error))?;
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

/// The private local daemon in `dir` if one is running and answers, without starting,
/// restarting or stopping anything (for commands such as `check` that only ask). `None` when
/// there is none, it is not private to this user, or it does not answer.
pub async fn find_running(dir: &Path) -> Option<Running> {
    match probe(dir).await {
        Ok(Probe::Answering(running)) if running.info.is_private() => Some(*running),
        _ => None,
    }
}

/// Why the local daemon in `dir` cannot be used (the error says what to fix).
fn unusable(dir: &Path, error: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
    anyhow::Error::new(error).context(format!("cannot use the local daemon in {}", dir.display()))
}

/// Why a daemon listening on TCP is not used as the local daemon, and what to do instead.
pub fn shared_daemon_message(dir: &Path, info: &DaemonInfo) -> String {
    format!(
        "the daemon in {} (pid {}) listens on {}, where any user of this machine can reach it \
         (it was started by hand with --listen), so trtfarm does not use it without being told \
         to: name it with `--daemon {}` (or TRTFARM_DAEMON), or stop it with `trtfarm daemon \
         stop` so that the next command starts a private one",
        dir.display(),
        info.pid,
        info.endpoint,
        info.endpoint
    )
}

/// The local daemon in `dir`, started (or restarted, when it runs another version or does not
/// answer) if need be.
pub async fn ensure(dir: &Path) -> anyhow::Result<Running> {
    // The common case needs no lock: a daemon of our version answers.
    if let (Decision::Reuse, Probe::Answering(running)) = decided(probe(dir).await?) {
        return Ok(*running);
    }
    let dir = absolute_dir(dir)?;
    let _lock = LifecycleLock::acquire(&dir).await?;
    // Someone may have started one while we waited for the lock.
    match decided(probe(&dir).await?) {
        (Decision::Reuse, Probe::Answering(running)) => return Ok(*running),
        (Decision::RefuseShared, Probe::Answering(running)) => {
            anyhow::bail!(shared_daemon_message(&dir, &running.info))
        }
        (Decision::RefuseShared, Probe::Silent(info, _)) => {
            anyhow::bail!(shared_daemon_message(&dir, &info))
        }
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

/// A probe with its decision, to match on both.
fn decided(found: Probe) -> (Decision, Probe) {
    (found.decision(), found)
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

/// `dir`, absolute, created private (0700) if missing and refused if it is not private.
fn absolute_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    ensure_private_dir(dir).map_err(|error| unusable(dir, error))?;
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
                .mode(PRIVATE_FILE_MODE)
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
                    if crate::term::get().verbosity > crate::term::Verbosity::Quiet {
                        eprintln!(
                            "trtfarm: started the local daemon (pid {pid}, {})",
                            info.endpoint
                        );
                    }
                    // Reaped whenever it exits: a client that runs for days (`watch`) and
                    // restarts its daemon must not collect zombies.
                    std::thread::spawn(move || child.wait());
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
        let seen = |info_present, pid_alive, private, answered_version| Observation {
            info_present,
            pid_alive,
            private,
            answered_version,
        };
        assert_eq!(
            decide(seen(false, false, true, None), ours),
            Decision::Start
        );
        assert_eq!(
            decide(seen(true, false, true, None), ours),
            Decision::Start,
            "stale pid"
        );
        assert_eq!(
            decide(seen(true, false, true, Some(ours)), ours),
            Decision::Start
        );
        assert_eq!(
            decide(seen(true, false, false, None), ours),
            Decision::Start,
            "a stale TCP daemon's info file is just stale"
        );
        assert_eq!(
            decide(seen(true, true, true, Some(ours)), ours),
            Decision::Reuse
        );
        assert_eq!(
            decide(seen(true, true, true, Some("0.0.9")), ours),
            Decision::Restart
        );
        assert_eq!(
            decide(seen(true, true, true, None), ours),
            Decision::Restart,
            "silent"
        );
        for answered in [Some(ours), Some("0.0.9"), None] {
            assert_eq!(
                decide(seen(true, true, false, answered), ours),
                Decision::RefuseShared,
                "a live TCP daemon is neither used nor stopped ({answered:?})"
            );
        }
    }

    #[test]
    fn a_shared_daemon_is_refused_naming_the_flag_that_uses_it() {
        let info = DaemonInfo {
            pid: 7,
            endpoint: "http://127.0.0.1:50051".into(),
            version: CLIENT_VERSION.into(),
        };
        let message = shared_daemon_message(Path::new("/home/ana/d"), &info);
        assert!(
            message.contains("any user of this machine can reach it"),
            "{message}"
        );
        assert!(
            message.contains("`--daemon http://127.0.0.1:50051`"),
            "{message}"
        );
        assert!(message.contains("`trtfarm daemon stop`"), "{message}");
    }
}
