//! The contract between `trtfarm` and a local `trtfarmd` on the same machine: where the daemon
//! keeps its state by default, the Unix socket it listens on there, and the info file it writes
//! there once it listens. The state directory is private to the user (mode 0700, see
//! [`private`]): that, not a secret, is what keeps other local users away from the daemon.

pub mod private;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use private::{NotPrivate, check_private_dir, current_uid, ensure_private_dir};

/// Name of the info file in the daemon's state directory.
pub const INFO_FILE: &str = "daemon.json";

/// Name of the Unix socket a private daemon listens on, in its state directory.
pub const SOCKET_FILE: &str = "daemon.sock";

/// How an endpoint or a `listen` address names a Unix socket: `unix:/path/to/daemon.sock`.
pub const UNIX_SCHEME: &str = "unix:";

/// Longest path a Unix socket may have: `sun_path` holds 108 bytes with the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// The default state directory of a local daemon: the platform state dir (else the cache dir),
/// under `trtfarm/daemon`; for an account without a home, `trtfarm-<uid>/daemon` in the temp
/// dir, so that no other user owns a directory above it.
pub fn default_state_dir() -> PathBuf {
    match dirs::state_dir().or_else(dirs::cache_dir) {
        Some(base) => base.join("trtfarm").join("daemon"),
        None => std::env::temp_dir()
            .join(format!("trtfarm-{}", current_uid()))
            .join("daemon"),
    }
}

/// The socket of the private daemon whose state directory is `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// The endpoint (`unix:/…`) of a daemon listening on the Unix socket `path`.
pub fn unix_endpoint(path: &Path) -> String {
    format!("{UNIX_SCHEME}{}", path.display())
}

/// The socket an endpoint names, when it is a `unix:` endpoint.
pub fn endpoint_socket(endpoint: &str) -> Option<&Path> {
    let rest = endpoint.strip_prefix(UNIX_SCHEME)?;
    // tonic also reads `unix:///path`; both name the same absolute path.
    let path = rest.strip_prefix("//").unwrap_or(rest);
    Some(Path::new(path))
}

/// What a listening daemon writes to its info file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// The daemon's process id.
    pub pid: u32,
    /// `unix:/…/daemon.sock` for a private daemon, `http://127.0.0.1:<port>` (or `https://`)
    /// for one started by hand on TCP.
    pub endpoint: String,
    /// The daemon's version (`trtfarmd --version`).
    pub version: String,
}

/// Why the info file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InfoFileError {
    /// The state directory or the file is not private to this user (or cannot be opened).
    #[error(transparent)]
    NotPrivate(#[from] NotPrivate),
    /// The file is not an info file.
    #[error("{} is not a daemon info file ({source}); remove it, the daemon rewrites it", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
}

impl DaemonInfo {
    /// Whether only the user who started the daemon can reach it: it listens on a Unix socket
    /// (in its private state directory) rather than on TCP.
    pub fn is_private(&self) -> bool {
        endpoint_socket(&self.endpoint).is_some()
    }

    /// Writes the info file atomically (a private temp file, then rename): a reader sees all
    /// or nothing, and only this user can read it.
    pub fn write(&self, state_dir: &Path) -> Result<(), NotPrivate> {
        let tmp = state_dir.join(format!("{INFO_FILE}.{}.tmp", self.pid));
        let text = serde_json::to_vec_pretty(self).map_err(|error| NotPrivate::Io {
            path: tmp.clone(),
            source: std::io::Error::other(error),
        })?;
        private::write_private_file(&tmp, &text)?;
        let path = state_dir.join(INFO_FILE);
        std::fs::rename(&tmp, &path).map_err(|source| NotPrivate::Io { path, source })
    }

    /// Reads the info file of the daemon in `state_dir`; `None` if there is none (or no
    /// directory). Refuses a directory or file that is not private to this user.
    pub fn read(state_dir: &Path) -> Result<Option<DaemonInfo>, InfoFileError> {
        match check_private_dir(state_dir) {
            Err(NotPrivate::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            checked => checked?,
        }
        let path = state_dir.join(INFO_FILE);
        let file = match private::open_private_file(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(NotPrivate::Symlink { path }.into());
            }
            Err(source) => return Err(NotPrivate::Io { path, source }.into()),
        };
        private::check_private_file(&path, &file)?;
        serde_json::from_reader(std::io::BufReader::new(file))
            .map(Some)
            .map_err(|source| InfoFileError::Malformed { path, source })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn info() -> DaemonInfo {
        DaemonInfo {
            pid: 42,
            endpoint: "unix:/run/user/1000/daemon.sock".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn info_round_trips_privately_and_absence_is_none() {
        let dir = private_dir();
        assert_eq!(DaemonInfo::read(dir.path()).unwrap(), None);
        assert_eq!(
            DaemonInfo::read(&dir.path().join("never-made")).unwrap(),
            None
        );
        info().write(dir.path()).unwrap();
        assert_eq!(DaemonInfo::read(dir.path()).unwrap(), Some(info()));
        let mode = std::fs::metadata(dir.path().join(INFO_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn an_info_file_or_directory_others_can_read_is_refused() {
        let dir = private_dir();
        info().write(dir.path()).unwrap();
        let path = dir.path().join(INFO_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = DaemonInfo::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("has mode 0644"), "{error}");
        assert!(error.contains("chmod 600"), "{error}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = DaemonInfo::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("has mode 0755"), "{error}");
        assert!(error.contains("chmod 700"), "{error}");
    }

    #[test]
    fn a_symbolic_link_as_info_file_is_refused() {
        let dir = private_dir();
        let elsewhere = private_dir();
        info().write(elsewhere.path()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join(INFO_FILE), dir.path().join(INFO_FILE))
            .unwrap();
        let error = DaemonInfo::read(dir.path()).unwrap_err();
        assert!(
            matches!(error, InfoFileError::NotPrivate(NotPrivate::Symlink { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn unix_endpoints_name_their_socket_and_tcp_ones_none() {
        let socket = socket_path(Path::new("/home/ana/.local/state/trtfarm/daemon"));
        let endpoint = unix_endpoint(&socket);
        assert_eq!(
            endpoint,
            "unix:/home/ana/.local/state/trtfarm/daemon/daemon.sock"
        );
        assert_eq!(endpoint_socket(&endpoint), Some(socket.as_path()));
        assert_eq!(
            endpoint_socket("unix:///tmp/d.sock"),
            Some(Path::new("/tmp/d.sock"))
        );
        assert_eq!(endpoint_socket("http://127.0.0.1:50051"), None);
        assert!(info().is_private());
        let tcp = DaemonInfo {
            endpoint: "http://127.0.0.1:50051".into(),
            ..info()
        };
        assert!(!tcp.is_private());
    }
}
