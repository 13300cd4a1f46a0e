//! Shared helpers for the store's integration tests: real stores of every kind available here
//! (`file://`, `memory://`, S3 on s3s-fs, Azure Blob on Azurite) and the [`per_backend!`] macro
//! that runs one test body on each, as one test per backend (`<test>::s3`, `<test>::azure`, …).

#![allow(dead_code)] // each test binary uses a different subset

pub mod raw;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tempfile::TempDir;
use trtfarm_store::test_servers::{ServerKind, TestServer};
use trtfarm_store::{ContentStore, StoreError, open};

pub use raw::RawStore;

/// Generates a module `$name` holding one `#[tokio::test]` per listed backend, each running the
/// body on a fresh [`TestStore`] of that kind: a failure names the backend in the test's path.
///
/// ```ignore
/// per_backend!([file, memory, s3, azure] async fn round_trips(t) { ... });
/// ```
#[allow(unused_macros)] // not every test binary uses it
macro_rules! per_backend {
    ([$($backend:ident),+ $(,)?] $(#[$meta:meta])* async fn $name:ident($t:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($t: $crate::common::TestStore) $body

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    run($crate::common::TestStore::$backend()).await
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use per_backend;

/// A store under test plus everything it lives in (temporary directories, a server process).
pub struct TestStore {
    /// The store itself.
    pub store: Arc<dyn ContentStore>,
    /// The same storage seen without the store's checks, for inspecting and damaging objects
    /// (None for `memory://`, whose bytes only the store itself can reach).
    pub raw: Option<RawStore>,
    /// The `file://` store's root directory (None for the others).
    pub root: Option<PathBuf>,
    /// A directory for the test's local input and output files.
    pub scratch: TempDir,
    /// The URL and options the store was opened with (for opening more clients on it).
    url: String,
    options: Vec<(String, String)>,
    _root_dir: Option<TempDir>,
    /// The server behind an `s3://` or `az://` store; killed when the test store is dropped.
    pub server: Option<TestServer>,
}

impl TestStore {
    /// A `file://` store in a fresh temporary directory.
    pub fn file() -> Self {
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().join("store");
        let url = format!("file://{}", root.display());
        let store = open(&url, &[]).unwrap();
        Self {
            store,
            raw: Some(RawStore::local(&root)),
            root: Some(root),
            scratch: tempfile::tempdir().unwrap(),
            url,
            options: Vec::new(),
            _root_dir: Some(root_dir),
            server: None,
        }
    }

    /// A fresh `memory://` store.
    pub fn memory() -> Self {
        Self {
            store: open("memory://", &[]).unwrap(),
            raw: None,
            root: None,
            scratch: tempfile::tempdir().unwrap(),
            url: "memory://".into(),
            options: Vec::new(),
            _root_dir: None,
            server: None,
        }
    }

    /// An `s3://` store on a fresh s3s-fs server.
    pub fn s3() -> Self {
        Self::remote(TestServer::start(ServerKind::S3sFs))
    }

    /// An `az://` store on a fresh Azurite server.
    pub fn azure() -> Self {
        Self::remote(TestServer::start(ServerKind::Azurite))
    }

    fn remote(server: TestServer) -> Self {
        let (url, options) = (server.url(), server.options());
        let store = server.open().unwrap_or_else(|e| panic!("open {url}: {e}"));
        Self {
            store,
            raw: Some(RawStore::remote(&url, &options)),
            root: None,
            scratch: tempfile::tempdir().unwrap(),
            url,
            options,
            _root_dir: None,
            server: Some(server),
        }
    }

    /// Another client on the same storage, as a second daemon would open it (for `memory://`,
    /// whose storage lives in one client, the same client).
    pub fn another_client(&self) -> Arc<dyn ContentStore> {
        match self.raw {
            None => Arc::clone(&self.store),
            Some(_) => open(&self.url, &self.options).unwrap(),
        }
    }

    /// The raw view; panics for `memory://`.
    pub fn raw(&self) -> &RawStore {
        self.raw
            .as_ref()
            .expect("memory:// stores have no raw view")
    }

    /// Backend kind, for assertion messages.
    pub fn kind(&self) -> String {
        self.store.kind().to_string()
    }

    /// Writes `bytes` to a scratch file called `name` and returns its path.
    pub fn write_input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
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
pub async fn drain(
    store: &dyn ContentStore,
    digest: &trtfarm_store::BlobDigest,
    offset: u64,
) -> Drained {
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
