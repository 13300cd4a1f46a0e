//! Shared helpers for the store's integration tests: real `file://` and `memory://` stores.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tempfile::TempDir;
use trtfarm_store::{BlobDigest, ContentStore, StoreError, open};

/// A store under test plus the temporary directories it lives in.
pub struct TestStore {
    /// The store itself.
    pub store: Arc<dyn ContentStore>,
    /// The `file://` store's root directory (None for `memory://`).
    pub root: Option<PathBuf>,
    /// A directory for the test's local input and output files.
    pub scratch: TempDir,
    _root_dir: Option<TempDir>,
}

impl TestStore {
    /// A `file://` store in a fresh temporary directory.
    pub fn file() -> Self {
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().join("store");
        let url = format!("file://{}", root.display());
        Self {
            store: open(&url, &[]).unwrap(),
            root: Some(root),
            scratch: tempfile::tempdir().unwrap(),
            _root_dir: Some(root_dir),
        }
    }

    /// A fresh `memory://` store.
    pub fn memory() -> Self {
        Self {
            store: open("memory://", &[]).unwrap(),
            root: None,
            scratch: tempfile::tempdir().unwrap(),
            _root_dir: None,
        }
    }

    /// Both kinds, for tests that must hold on every backend available here.
    pub fn all() -> Vec<Self> {
        vec![Self::file(), Self::memory()]
    }

    /// Writes `bytes` to a scratch file called `name` and returns its path.
    pub fn write_input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Where the `file://` store keeps a blob on disk (per the documented layout).
    pub fn blob_file(&self, digest: &BlobDigest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .as_ref()
            .expect("only file:// stores have blob files")
            .join("cas/blake3")
            .join(&hex[..2])
            .join(&hex)
    }

    /// Names of the files under the `file://` store's `quarantine/blake3/`.
    pub fn quarantined(&self) -> Vec<String> {
        let dir = self.root.as_ref().unwrap().join("quarantine/blake3");
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Everything a read produced: the bytes of the Ok chunks, their sizes, and the first error
/// (from `read` itself or from the stream).
pub struct Drained {
    pub bytes: Vec<u8>,
    pub chunk_sizes: Vec<usize>,
    pub error: Option<StoreError>,
}

/// Reads `digest` from `offset` to the end (or the first error).
pub async fn drain(store: &dyn ContentStore, digest: &BlobDigest, offset: u64) -> Drained {
    let mut drained = Drained {
        bytes: Vec::new(),
        chunk_sizes: Vec::new(),
        error: None,
    };
    let mut stream = match store.read(digest, offset).await {
        Ok(stream) => stream,
        Err(e) => {
            drained.error = Some(e);
            return drained;
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                drained.chunk_sizes.push(chunk.len());
                drained.bytes.extend_from_slice(&chunk);
            }
            Err(e) => {
                drained.error = Some(e);
                break;
            }
        }
    }
    drained
}

/// Files (recursively) under `dir`, for "nothing was left behind" checks.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
