//! blake3 digests of local files, remembered by (canonical path, size, mtime in ns, device and
//! inode), so a no-op resubmit of a repository full of multi-GB models hashes nothing.
//!
//! The cache is a redb database opened in redb's multi-writer mode: concurrent `trtfarm`
//! processes (a `watch` beside a `submit`) share it, each write is one transaction, and a crash
//! leaves the last committed state. It is only ever a cache: when it cannot be opened, files
//! are hashed and one warning is printed.
//!
//! Where: `$TRTFARM_DIGEST_CACHE` (the file), else `$TRTFARM_CACHE_DIR/digests.redb`, else
//! `<user cache dir>/trtfarm/digests.redb`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use redb::{ConcurrencyMode, Database, ReadableDatabase, TableDefinition, TableError};
use trtfarm_proto::v1;

/// Names the cache file, overriding the default location.
pub const CACHE_FILE_ENV: &str = "TRTFARM_DIGEST_CACHE";

/// Canonical path → [`Entry`] bytes. The version is in the name: a new layout is a new table.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("file_digests_v1");

/// What was learned from files, by a key built of their digests (see `model_facts`).
const FACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("file_facts_v1");

/// A file modified this recently may still be modified again within the same timestamp tick,
/// unseen by its mtime (git's "racy clean" problem); its digest is used but not remembered.
const RACY_WINDOW: Duration = Duration::from_secs(1);

/// Whether a digest came from the cache or from reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The file's identity matched a remembered digest; nothing was read.
    Cached,
    /// The file was read and hashed.
    Hashed,
}

/// The remembered digests of local files.
pub struct DigestCache {
    db: Option<Database>,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    size: u64,
    mtime_ns: i128,
    device: u64,
    inode: u64,
}

impl Identity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            size: metadata.size(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }

    /// Whether the file was modified within [`RACY_WINDOW`] before `now`.
    fn is_racy(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        now_ns - self.mtime_ns < RACY_WINDOW.as_nanos() as i128
    }

    /// The stored value: identity, then the 32 hash bytes.
    fn encode(&self, hash: &[u8; 32]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(72);
        bytes.extend_from_slice(&self.size.to_le_bytes());
        bytes.extend_from_slice(&self.mtime_ns.to_le_bytes());
        bytes.extend_from_slice(&self.device.to_le_bytes());
        bytes.extend_from_slice(&self.inode.to_le_bytes());
        bytes.extend_from_slice(hash);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<(Self, [u8; 32])> {
        if bytes.len() != 72 {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let identity = Self {
            size: u64_at(0),
            mtime_ns: i128::from_le_bytes(bytes[8..24].try_into().ok()?),
            device: u64_at(24),
            inode: u64_at(32),
        };
        Some((identity, bytes[40..72].try_into().ok()?))
    }
}

impl DigestCache {
    /// The default cache (see the module documentation); a disabled one, after one warning on
    /// stderr, when it cannot be opened.
    pub fn open_default() -> Self {
        let path = default_path();
        match path.as_deref().map(Self::open) {
            Some(Ok(cache)) => cache,
            Some(Err(error)) => {
                eprintln!("warning: digest cache unavailable, hashing every file: {error:#}");
                Self::disabled()
            }
            None => Self::disabled(),
        }
    }

    /// Opens (creating it if needed) the cache file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(8 << 20)
            .create(path)
            .with_context(|| format!("cannot open the digest cache {}", path.display()))?;
        Ok(Self { db: Some(db) })
    }

    /// A cache that remembers nothing: every file is hashed.
    pub fn disabled() -> Self {
        Self { db: None }
    }

    /// The digest of one file.
    pub fn digest(&self, path: &Path) -> anyhow::Result<(v1::Digest, Lookup)> {
        let mut all = self.digest_all(&[path.to_path_buf()])?;
        Ok(all.remove(0))
    }

    /// The digests of `paths`, in order: remembered ones from one read transaction, the others
    /// hashed in parallel and remembered in one write transaction.
    pub fn digest_all(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<(v1::Digest, Lookup)>> {
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            let canonical = std::fs::canonicalize(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let metadata = std::fs::metadata(&canonical)
                .with_context(|| format!("cannot read {}", path.display()))?;
            anyhow::ensure!(metadata.is_file(), "{} is not a file", path.display());
            keys.push((canonical, Identity::of(&metadata)));
        }
        let remembered = self.recall(&keys);
        let misses: Vec<usize> = (0..keys.len())
            .filter(|&i| remembered[i].is_none())
            .collect();
        let hashed = hash_in_parallel(&misses.iter().map(|&i| &keys[i].0).collect::<Vec<_>>())?;

        let now = SystemTime::now();
        let mut fresh = Vec::new();
        let mut results: Vec<Option<(v1::Digest, Lookup)>> = remembered
            .into_iter()
            .zip(&keys)
            .map(|(hash, (_, identity))| {
                hash.map(|hash| (to_digest(&hash, identity.size), Lookup::Cached))
            })
            .collect();
        for (&index, (hash, identity)) in misses.iter().zip(hashed) {
            if !identity.is_racy(now) {
                fresh.push((keys[index].0.clone(), identity.encode(&hash)));
            }
            results[index] = Some((to_digest(&hash, identity.size), Lookup::Hashed));
        }
        if let Err(error) = self.remember(&fresh) {
            eprintln!("warning: cannot update the digest cache: {error:#}");
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// The blake3 (hex) of each of `paths` if every one is remembered and unchanged; hashes
    /// nothing (`None` as soon as one would need reading).
    pub fn known(&self, paths: &[PathBuf]) -> Option<Vec<String>> {
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            let canonical = std::fs::canonicalize(path).ok()?;
            let metadata = std::fs::metadata(&canonical).ok()?;
            keys.push((canonical, Identity::of(&metadata)));
        }
        self.recall(&keys)
            .into_iter()
            .map(|hash| hash.map(|hash| blake3::Hash::from(hash).to_hex().to_string()))
            .collect()
    }

    /// What was recorded under `key` with [`DigestCache::put_fact`].
    pub fn fact(&self, key: &str) -> Option<Vec<u8>> {
        let db = self.db.as_ref()?;
        let txn = db.begin_read().ok()?;
        let table = txn.open_table(FACTS).ok()?;
        let value = table.get(key).ok()??;
        Some(value.value().to_vec())
    }

    /// Records `value` under `key` (a key that names file digests: facts of files never go
    /// stale, since other bytes are another key). Returns whether it was recorded.
    pub fn put_fact(&self, key: &str, value: &[u8]) -> bool {
        let Some(db) = &self.db else {
            return false;
        };
        let write = || -> anyhow::Result<()> {
            let txn = db.begin_write()?;
            txn.open_table(FACTS)?.insert(key, value)?;
            txn.commit()?;
            Ok(())
        };
        match write() {
            Ok(()) => true,
            Err(error) => {
                eprintln!("warning: cannot update the digest cache: {error:#}");
                false
            }
        }
    }

    /// The remembered hash of each key whose identity still matches.
    fn recall(&self, keys: &[(PathBuf, Identity)]) -> Vec<Option<[u8; 32]>> {
        let lookup = || -> anyhow::Result<Vec<Option<[u8; 32]>>> {
            let Some(db) = &self.db else {
                return Ok(vec![None; keys.len()]);
            };
            let txn = db.begin_read()?;
            let table = match txn.open_table(TABLE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
                Err(error) => return Err(error.into()),
            };
            keys.iter()
                .map(|(path, identity)| {
                    let value = table.get(path.as_os_str().as_bytes())?;
                    Ok(value
                        .and_then(|v| Identity::decode(v.value()))
                        .filter(|(stored, _)| stored == identity)
                        .map(|(_, hash)| hash))
                })
                .collect()
        };
        lookup().unwrap_or_else(|error| {
            eprintln!("warning: cannot read the digest cache: {error:#}");
            vec![None; keys.len()]
        })
    }

    fn remember(&self, entries: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        if entries.is_empty() {
            return Ok(());
        }
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (path, value) in entries {
                table.insert(path.as_os_str().as_bytes(), value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Where [`DigestCache::open_default`] keeps its file.
pub fn default_path() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os(CACHE_FILE_ENV) {
        return Some(PathBuf::from(file));
    }
    let dir = std::env::var_os("TRTFARM_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("trtfarm")))?;
    Some(dir.join("digests.redb"))
}

fn to_digest(hash: &[u8; 32], size: u64) -> v1::Digest {
    v1::Digest {
        blake3: blake3::Hash::from_bytes(*hash).to_hex().to_string(),
        size_bytes: size,
    }
}

/// A file's hash and the identity it had while being read.
type Hashed = ([u8; 32], Identity);

/// Hashes files on up to one thread per core, each file on one thread, in order.
fn hash_in_parallel(paths: &[&PathBuf]) -> anyhow::Result<Vec<Hashed>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, anyhow::Result<Hashed>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(index) else {
                            break mine;
                        };
                        mine.push((index, hash_stable(path)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    anyhow::ensure!(done.len() == paths.len(), "a hashing thread panicked");
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, hashed)| hashed).collect()
}

/// Hashes `path`, retrying while its identity changes under the read (a file being written).
fn hash_stable(path: &Path) -> anyhow::Result<([u8; 32], Identity)> {
    for _ in 0..3 {
        let before = Identity::of(&std::fs::metadata(path)?);
        let mut hasher = blake3::Hasher::new();
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        hasher
            .update_reader(file)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let after = Identity::of(&std::fs::metadata(path)?);
        if before == after {
            return Ok((*hasher.finalize().as_bytes(), after));
        }
    }
    anyhow::bail!("{} kept changing while it was hashed", path.display())
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    fn write_old(path: &Path, bytes: &[u8], age_secs: u64) {
        std::fs::write(path, bytes).unwrap();
        set_age(path, age_secs);
    }

    fn set_age(path: &Path, age_secs: u64) {
        let when = SystemTime::now() - Duration::from_secs(age_secs);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    fn cache(dir: &Path) -> DigestCache {
        DigestCache::open(&dir.join("cache/digests.redb")).unwrap()
    }

    #[test]
    fn hits_until_mtime_or_size_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.onnx");
        write_old(&file, b"weights v1", 3600);
        let cache = cache(dir.path());

        let (first, lookup) = cache.digest(&file).unwrap();
        assert_eq!(lookup, Lookup::Hashed);
        assert_eq!(first.blake3, blake3::hash(b"weights v1").to_hex().as_str());
        assert_eq!(first.size_bytes, 10);
        assert_eq!(
            cache.digest(&file).unwrap(),
            (first.clone(), Lookup::Cached)
        );

        set_age(&file, 1800); // touched: same bytes, new mtime
        assert_eq!(
            cache.digest(&file).unwrap(),
            (first.clone(), Lookup::Hashed)
        );
        assert_eq!(cache.digest(&file).unwrap().1, Lookup::Cached);

        write_old(&file, b"weights v2 longer", 1800); // new size, same mtime as before
        let (second, lookup) = cache.digest(&file).unwrap();
        assert_eq!(lookup, Lookup::Hashed);
        assert_eq!(
            second.blake3,
            blake3::hash(b"weights v2 longer").to_hex().as_str()
        );
    }

    #[test]
    fn a_file_replaced_by_rename_is_a_miss_even_with_equal_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.onnx");
        write_old(&file, b"aaaa", 3600);
        let cache = cache(dir.path());
        cache.digest(&file).unwrap();
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();

        let replacement = dir.path().join("model.onnx.tmp");
        std::fs::write(&replacement, b"bbbb").unwrap();
        File::options()
            .write(true)
            .open(&replacement)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&replacement, &file).unwrap();

        let (digest, lookup) = cache.digest(&file).unwrap();
        assert_eq!(lookup, Lookup::Hashed, "a new inode is a new file");
        assert_eq!(digest.blake3, blake3::hash(b"bbbb").to_hex().as_str());
    }

    #[test]
    fn a_file_written_just_now_is_hashed_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fresh.bin");
        std::fs::write(&file, b"fresh").unwrap();
        let cache = cache(dir.path());
        assert_eq!(cache.digest(&file).unwrap().1, Lookup::Hashed);
        assert_eq!(cache.digest(&file).unwrap().1, Lookup::Hashed);
    }

    #[test]
    fn the_same_file_by_another_path_is_the_same_entry_and_entries_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let file = dir.path().join("sub/model.onnx");
        write_old(&file, b"x", 3600);
        cache(dir.path()).digest(&file).unwrap();
        let other_path = dir.path().join("sub/../sub/./model.onnx");
        assert_eq!(
            cache(dir.path()).digest(&other_path).unwrap().1,
            Lookup::Cached
        );
    }

    #[test]
    fn concurrent_handles_share_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..40)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                write_old(&path, format!("content {i}").as_bytes(), 3600);
                path
            })
            .collect();
        std::thread::scope(|scope| {
            for chunk in files.chunks(10) {
                let cache = cache(dir.path());
                scope.spawn(move || {
                    for file in chunk {
                        assert_eq!(cache.digest(file).unwrap().1, Lookup::Hashed);
                    }
                });
            }
        });
        let all = cache(dir.path()).digest_all(&files).unwrap();
        assert!(all.iter().all(|(_, lookup)| *lookup == Lookup::Cached));
        assert_eq!(
            all[7].0.blake3,
            blake3::hash(b"content 7").to_hex().as_str()
        );
    }

    #[test]
    fn a_disabled_cache_hashes_and_a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m");
        write_old(&file, b"m", 3600);
        let cache = DigestCache::disabled();
        assert_eq!(cache.digest(&file).unwrap().1, Lookup::Hashed);
        assert_eq!(cache.digest(&file).unwrap().1, Lookup::Hashed);
        let error = cache.digest(&dir.path().join("gone.onnx")).unwrap_err();
        assert!(format!("{error:#}").contains("gone.onnx"), "{error:#}");
    }
}
