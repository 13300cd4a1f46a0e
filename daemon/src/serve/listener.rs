//! Where `trtfarmd serve` accepts connections: a TCP port, or a Unix socket only the user who
//! started it can use. Binding (replacing a dead daemon's socket, never a live one's), the
//! endpoint written to the info file, and the start-up line that says who can reach the daemon.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixListener};
use trtfarm_proto::local::{current_uid, unix_endpoint};

use crate::config::ListenAddr;

/// Mode of the socket file: connecting needs write permission on it.
const SOCKET_MODE: u32 = 0o600;

/// A bound listener.
pub enum Listener {
    /// A TCP port.
    Tcp(TcpListener),
    /// A Unix socket (calls from other uids are refused by [`crate::serve::auth::RequireOwner`]).
    Unix {
        /// The listening socket.
        listener: UnixListener,
        /// Its path.
        path: PathBuf,
        /// Its inode, so that shutdown removes this socket and not a successor's.
        inode: u64,
    },
}

/// Who can reach a daemon, as its start-up line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A Unix socket: the user who started it, nobody else.
    Owner,
    /// TCP with bearer tokens: whoever holds a token.
    TokenHolders,
    /// Loopback TCP without a token: every user of this machine.
    AnyLocalUser,
}

/// Who can reach a daemon listening on `listen`, with or without a token file.
pub fn reach(listen: &ListenAddr, tokens: bool) -> Reach {
    match (listen, tokens) {
        (ListenAddr::Unix(_), _) => Reach::Owner,
        (ListenAddr::Tcp(_), true) => Reach::TokenHolders,
        // A non-loopback address without tokens never gets here: the config refuses it.
        (ListenAddr::Tcp(_), false) => Reach::AnyLocalUser,
    }
}

/// The line `trtfarmd serve` prints once it listens; scripts and tests read the endpoint as
/// the first word after `trtfarmd listening on `.
pub fn startup_line(endpoint: &str, reach: Reach) -> String {
    match reach {
        Reach::Owner => format!(
            "trtfarmd listening on {endpoint} (private: only uid {} can connect)",
            current_uid()
        ),
        Reach::TokenHolders => format!("trtfarmd listening on {endpoint} (bearer token required)"),
        Reach::AnyLocalUser => format!(
            "trtfarmd listening on {endpoint} (no token: any user of this machine can reach it, \
             list its jobs, fetch its engines and cancel or submit builds; for a private daemon \
             leave `listen` unset, a Unix socket, or give --token-file)"
        ),
    }
}

impl Listener {
    /// Binds `addr`. A Unix socket left by a daemon that died is replaced; one a live daemon
    /// answers on, or a file that is no socket, is an error.
    pub async fn bind(addr: &ListenAddr) -> anyhow::Result<Listener> {
        match addr {
            ListenAddr::Tcp(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                Ok(Listener::Tcp(listener))
            }
            ListenAddr::Unix(path) => bind_unix(path),
        }
    }

    /// The endpoint clients dial: `http://ADDR` (`https://` with TLS) or `unix:PATH`.
    pub fn endpoint(&self, scheme: &str) -> anyhow::Result<String> {
        match self {
            Listener::Tcp(listener) => Ok(format!("{scheme}://{}", listener.local_addr()?)),
            Listener::Unix { path, .. } => Ok(unix_endpoint(path)),
        }
    }
}

/// Removes the socket at `path` if it is still the one with `inode` (the one this daemon
/// bound), never a successor's.
pub fn remove_socket(path: &Path, inode: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == inode) {
        let _ = std::fs::remove_file(path);
    }
}

fn bind_unix(path: &Path) -> anyhow::Result<Listener> {
    clear_stale_socket(path)?;
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
    // The default directory is private already; the socket's own mode keeps others out of a
    // socket placed elsewhere, and the per-call peer uid check backs both up.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    let inode = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot inspect {}", path.display()))?
        .ino();
    Ok(Listener::Unix {
        listener,
        path: path.to_path_buf(),
        inode,
    })
}

/// Deletes a socket nobody answers on (a daemon killed without cleaning up); refuses to touch
/// a live socket or anything that is not a socket.
fn clear_stale_socket(path: &Path) -> anyhow::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !metadata.file_type().is_socket() {
        bail!(
            "cannot listen on unix:{}: a file that is not a socket is in the way; move it, or \
             listen elsewhere",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "cannot listen on unix:{}: another daemon answers there; stop it first (`trtfarm \
             daemon stop`), or give another --state-dir or --listen",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot check the socket {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_startup_line_says_who_can_reach_the_daemon() {
        let unix = ListenAddr::Unix("/s/daemon.sock".into());
        let tcp = ListenAddr::Tcp("127.0.0.1:50051".parse().unwrap());
        assert_eq!(reach(&unix, false), Reach::Owner);
        assert_eq!(reach(&unix, true), Reach::Owner);
        assert_eq!(reach(&tcp, true), Reach::TokenHolders);
        assert_eq!(reach(&tcp, false), Reach::AnyLocalUser);
        let line = startup_line("http://127.0.0.1:50051", Reach::AnyLocalUser);
        assert!(
            line.starts_with("trtfarmd listening on http://127.0.0.1:50051 (no token: any user"),
            "{line}"
        );
        let line = startup_line("unix:/s/daemon.sock", Reach::Owner);
        assert!(line.contains("(private: only uid"), "{line}");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_or_a_plain_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.sock");
        let addr = ListenAddr::Unix(path.clone());
        let first = Listener::bind(&addr).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let error = format!("{:#}", Listener::bind(&addr).await.err().unwrap());
        assert!(error.contains("another daemon answers there"), "{error}");
        // Dropping the listener leaves the socket file behind, as a SIGKILL would.
        drop(first);
        assert!(path.exists());
        let Listener::Unix { inode, .. } = Listener::bind(&addr).await.unwrap() else {
            panic!("a Unix listener");
        };
        remove_socket(&path, inode + 1);
        assert!(path.exists(), "another inode's socket is left alone");
        remove_socket(&path, inode);
        assert!(!path.exists());

        std::fs::write(&path, "precious").unwrap();
        let error = format!("{:#}", Listener::bind(&addr).await.err().unwrap());
        assert!(error.contains("not a socket is in the way"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }
}
