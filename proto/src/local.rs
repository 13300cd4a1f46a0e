//! The contract between `trtfarm` and a local `trtfarmd` on the same machine: where the daemon
//! keeps its state by default, and the info file it writes there once it listens.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the info file in the daemon's state directory.
pub const INFO_FILE: &str = "daemon.json";

/// The default state directory of a local daemon: the platform state dir (else the cache dir,
/// else the temp dir for an account without a home), under `trtfarm/daemon`.
pub fn default_state_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::cache_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("trtfarm")
        .join("daemon")
}

/// What a listening daemon writes to its info file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// The daemon's process id.
    pub pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The daemon's version (`trtfarmd --version`).
    pub version: String,
}

impl DaemonInfo {
    /// Writes the info file atomically (temp file, then rename): a reader sees all or nothing.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let tmp = state_dir.join(format!("{INFO_FILE}.{}.tmp", self.pid));
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, state_dir.join(INFO_FILE))
    }

    /// Reads the info file of the daemon in `state_dir`; `None` if there is none.
    pub fn read(state_dir: &Path) -> std::io::Result<Option<DaemonInfo>> {
        match std::fs::read(state_dir.join(INFO_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trips_and_absence_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DaemonInfo::read(dir.path()).unwrap(), None);
        let info = DaemonInfo {
            pid: 42,
            endpoint: "http://127.0.0.1:5000".into(),
            version: "0.1.0".into(),
        };
        info.write(dir.path()).unwrap();
        assert_eq!(DaemonInfo::read(dir.path()).unwrap(), Some(info));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
