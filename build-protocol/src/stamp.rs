//! Which version of a file is on disk, known from its metadata alone: the builder stamps the
//! libraries it loaded, the daemon compares the stamps with its probe's.
//!
//! Every build must run with the TensorRT libraries the daemon probed (and keyed) at start-up.
//! Hashing the 234 MB TensorRT-RTX library after each build to prove it would cost every build
//! a tenth of a second or more; a stamp costs one `stat`. The stamp holds the change time,
//! which no unprivileged process can set back, so a library rewritten in place (even with its
//! old mtime restored) or replaced by a rename never matches its old stamp.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Device, inode, size and both timestamps of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Device the file lives on.
    pub device: u64,
    /// Its inode there.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Last status change (any write, rename, chmod or `utimes`), nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl FileStamp {
    /// The stamp of the file at `path`, symlinks followed.
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let metadata = std::fs::metadata(path)?;
        let ns = |seconds: i64, nanos: i64| seconds.saturating_mul(1_000_000_000) + nanos;
        Ok(FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// The stamp of `path` when it can vouch for the file's bytes later: not when the file
    /// changed within the last second, since a second change within the same clock tick could
    /// leave every field as it is (git's "racy clean" problem). Errors also give `None`: the
    /// file is then hashed when a build needs it.
    pub fn settled(path: &Path) -> Option<FileStamp> {
        let stamp = FileStamp::of(path).ok()?;
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        (now_ns.saturating_sub(stamp.ctime_ns) > RACY_WINDOW_NS).then_some(stamp)
    }
}

/// How long after its last change a file's stamp is trusted (see [`FileStamp::settled`]).
const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// The stamps the daemon's probe took of a toolchain's libraries; `None` where it took none
/// (the file is then hashed after each build).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbedStamps {
    /// The builder library.
    pub library: Option<FileStamp>,
    /// The ONNX parser library.
    pub parser: Option<FileStamp>,
}

/// One library a build loaded: where, and its stamp after the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedLibrary {
    /// The path it was loaded from (in a worker, under the build root's library symlink).
    pub path: PathBuf,
    /// Its stamp.
    pub stamp: FileStamp,
}

impl LoadedLibrary {
    /// Stamps the library at `path`.
    pub fn at(path: &Path) -> std::io::Result<LoadedLibrary> {
        Ok(LoadedLibrary {
            path: path.to_path_buf(),
            stamp: FileStamp::of(path)?,
        })
    }

    /// Whether this is, byte for byte, the library probed as `probed` with blake3 `digest`
    /// (hex): an equal stamp answers without reading; otherwise (a `touch`, a reinstall of the
    /// same release) the file is hashed. Blocking: call from a blocking task.
    pub fn matches(&self, probed: Option<&FileStamp>, digest: &str) -> std::io::Result<bool> {
        if probed == Some(&self.stamp) {
            return Ok(true);
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(&self.path)?)?;
        Ok(hasher.finalize().to_hex().as_str() == digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn digest(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// A library file holding `bytes`, in a directory that lives as long as the guard.
    fn library(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libtensorrt_rtx.so.1");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn set_mtime(path: &Path, mtime: SystemTime) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(mtime).unwrap();
    }

    #[test]
    fn an_untouched_file_matches_by_stamp_without_being_read() {
        let (_dir, path) = library(b"library v1");
        let probed = FileStamp::of(&path).unwrap();
        let loaded = LoadedLibrary::at(&path).unwrap();
        // A wrong digest still matches: the stamp alone decided, nothing was hashed.
        assert!(loaded.matches(Some(&probed), &digest(b"other")).unwrap());
    }

    #[test]
    fn a_touched_file_with_the_same_bytes_is_hashed_and_matches() {
        let (_dir, path) = library(b"library v1");
        let probed = FileStamp::of(&path).unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        set_mtime(&path, later);
        let loaded = LoadedLibrary::at(&path).unwrap();
        assert_ne!(loaded.stamp, probed);
        assert!(
            loaded
                .matches(Some(&probed), &digest(b"library v1"))
                .unwrap()
        );
        assert!(!loaded.matches(Some(&probed), &digest(b"other")).unwrap());
    }

    #[test]
    fn a_rewrite_with_the_old_size_and_mtime_restored_does_not_match() {
        let (_dir, path) = library(b"library v1");
        let probed = FileStamp::of(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"library v2").unwrap();
        set_mtime(&path, mtime);
        let loaded = LoadedLibrary::at(&path).unwrap();
        assert_eq!(
            (loaded.stamp.size, loaded.stamp.mtime_ns, loaded.stamp.inode),
            (probed.size, probed.mtime_ns, probed.inode)
        );
        assert_ne!(loaded.stamp.ctime_ns, probed.ctime_ns);
        assert!(
            !loaded
                .matches(Some(&probed), &digest(b"library v1"))
                .unwrap()
        );
    }

    #[test]
    fn a_file_changed_just_now_has_no_settled_stamp() {
        let (dir, path) = library(b"library v1");
        assert_eq!(FileStamp::settled(&path), None);
        assert_eq!(FileStamp::settled(&dir.path().join("missing")), None);
        // The change time cannot be set back, so a settled file must be an old one.
        let old = Path::new("/bin/sh");
        assert_eq!(FileStamp::settled(old), Some(FileStamp::of(old).unwrap()));
    }

    #[test]
    fn without_a_probed_stamp_the_file_is_hashed() {
        let (_dir, path) = library(b"library v1");
        let loaded = LoadedLibrary::at(&path).unwrap();
        assert!(loaded.matches(None, &digest(b"library v1")).unwrap());
        assert!(!loaded.matches(None, &digest(b"library v2")).unwrap());
    }
}
