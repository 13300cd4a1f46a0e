//! Store maintenance: [`Collector`] deletes blobs that no action-cache entry or keep list names
//! once they are older than a retention period, build results that name a blob that is gone, and
//! quarantined blobs past the same retention.
//!
//! Mark and sweep over listings (streamed; blobs are never read, entries are small):
//!
//! 1. **mark**: every entry under `ac/v1/` is read and the caller's [`EntryDecoder`] says which
//!    blobs it names (the store does not know the daemon's encodings); the keep list (digests
//!    from `engine.lock` files, say) is added.
//! 2. **sweep the CAS**: an unmarked blob is deleted once its last-modified time is older than
//!    the retention. Blobs go up before the result that names them, so a young unreferenced blob
//!    may be one a build is publishing right now: the retention is what keeps it.
//! 3. **re-mark**: entries written while the CAS was listed are read too and rescue their blobs.
//! 4. **dangling results**: a [`CacheEntry::Result`] naming a blob that is not in the CAS (checked
//!    again with a HEAD) is deleted, as the daemon treats it as a miss anyway; blobs only it named
//!    go under the same retention. [`CacheEntry::Record`]s are never deleted.
//! 5. quarantined objects past the retention are deleted.
//!
//! A result published after step 3 that names an old, unreferenced blob which was already present
//! can still lose that blob. The daemon checks a result's blobs before it answers from the cache,
//! so that race costs one rebuild, never a wrong engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::{ActionKey, Area, BlobDigest, ContentStore, StoreAdmin, StoreError, StoredObject};

mod report;

pub use report::{GcReport, Removal, RemovalKind, Tally};

/// The retention `trtfarmd store gc` uses unless told otherwise: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Action-cache entries read at once.
const READ_CONCURRENCY: usize = 32;

/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 32;

/// What one action-cache entry is, as an [`EntryDecoder`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheEntry {
    /// A build's result: useless once any blob it names is gone, so then it is deleted.
    Result(Vec<BlobDigest>),
    /// Another record kept in the action cache (the timing-cache registry): its blobs are kept,
    /// and it is never deleted.
    Record(Vec<BlobDigest>),
}

/// Reads an encoded action-cache entry; `Err` says why it cannot be read (the entry is then
/// left alone, reported, and protects no blob).
pub type EntryDecoder = dyn Fn(&[u8]) -> Result<CacheEntry, String> + Send + Sync;

/// What a collection may delete.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Nothing younger than this is deleted: unreferenced blobs and quarantined objects.
    pub older_than: Duration,
    /// Blobs kept whatever references them (from `engine.lock` files, or named by hand).
    pub keep: Vec<BlobDigest>,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            older_than: DEFAULT_RETENTION,
            keep: Vec::new(),
            dry_run: false,
        }
    }
}

/// A collection over a store: its content API to read entries and check blobs, its admin API
/// ([`ContentStore::admin`]) to list and delete.
pub struct Collector {
    store: Arc<dyn ContentStore>,
    admin: Arc<dyn StoreAdmin>,
}

impl Collector {
    /// A collector over `store`, as [`crate::open`] returned it (or any layer over it).
    pub fn new(store: Arc<dyn ContentStore>) -> Self {
        let admin = store.admin();
        Self { store, admin }
    }

    /// The store URL without credentials.
    pub fn display_url(&self) -> &str {
        self.admin.display_url()
    }

    /// Runs one collection (see the module documentation for the steps).
    pub async fn collect(
        &self,
        options: &GcOptions,
        decode: &EntryDecoder,
    ) -> Result<GcReport, StoreError> {
        let now = SystemTime::now();
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let mut marks = Marks::default();
        for digest in &options.keep {
            marks.blob(digest.hash).pinned = true;
        }
        self.mark(&mut marks, decode, &mut report).await?;
        let mut candidates = self
            .sweep_cas(&mut marks, options, now, &mut report)
            .await?;
        self.mark(&mut marks, decode, &mut report).await?;
        for (hash, mark) in &mut marks.blobs {
            if let Some(candidate) = candidates.remove(hash) {
                mark.present = Some(candidate);
            }
        }
        self.drop_dangling(&mut marks, &mut candidates, options, now, &mut report)
            .await?;

        let mut doomed: Vec<Present> = candidates.into_values().collect();
        doomed.sort_by(|a, b| a.location.cmp(&b.location));
        let removals = doomed.iter().map(|blob| Removal {
            kind: RemovalKind::Blob,
            location: blob.location.to_string(),
            bytes: blob.size,
            age: age(now, blob.modified),
        });
        self.remove(removals.collect(), options.dry_run, &mut report)
            .await;
        for mark in marks.blobs.values() {
            match &mark.present {
                Some(blob) if mark.refs > 0 => report.blobs_referenced.add(blob.size),
                Some(blob) if mark.pinned => report.blobs_kept.add(blob.size),
                Some(blob) => report.blobs_young.add(blob.size),
                None => {}
            }
        }
        self.sweep_quarantine(options, now, &mut report).await?;
        Ok(report)
    }

    /// Reads every action-cache entry not read before (or changed since) and marks its blobs.
    async fn mark(
        &self,
        marks: &mut Marks,
        decode: &EntryDecoder,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        let read_before = std::mem::take(&mut marks.entries_seen);
        let mut unread = self
            .admin
            .list(Area::ActionCache)
            .try_filter(|meta| {
                let fresh = read_before.get(&meta.path) != Some(&version_of(meta));
                async move { fresh }
            })
            .and_then(|meta| async move { Ok((self.entry_key(&meta)?, meta)) })
            .map_ok(|(key, meta)| async move {
                let bytes = match key {
                    Some(key) => self.store.get_action_result(&key).await?,
                    None => None,
                };
                Ok((key, meta, bytes))
            })
            .try_buffer_unordered(READ_CONCURRENCY)
            .boxed();
        while let Some((key, meta, bytes)) = unread.try_next().await? {
            let location = meta.path.clone();
            marks
                .entries_seen
                .insert(location.clone(), version_of(&meta));
            let Some(key) = key else {
                report.foreign.push(location);
                continue;
            };
            // Gone since it was listed (a collection elsewhere): nothing to mark.
            let Some(bytes) = bytes else { continue };
            report.entries_scanned += 1;
            let (blobs, is_result) = match decode(&bytes) {
                Ok(CacheEntry::Result(blobs)) => (blobs, true),
                Ok(CacheEntry::Record(blobs)) => (blobs, false),
                Err(why) => {
                    report.entries_unreadable.push(format!("{location}: {why}"));
                    continue;
                }
            };
            for digest in &blobs {
                marks.blob(digest.hash).refs += 1;
            }
            marks.entries.push(EntryMark {
                key,
                meta,
                blobs,
                is_result,
            });
        }
        drop(unread);
        for (location, version) in read_before {
            marks.entries_seen.entry(location).or_insert(version);
        }
        Ok(())
    }

    /// Lists the CAS: records which marked blobs are present and returns the unmarked ones old
    /// enough to delete, by hash.
    async fn sweep_cas(
        &self,
        marks: &mut Marks,
        options: &GcOptions,
        now: SystemTime,
        report: &mut GcReport,
    ) -> Result<HashMap<[u8; 32], Present>, StoreError> {
        let mut listing = self.admin.list(Area::Cas);
        let mut candidates = HashMap::new();
        while let Some(meta) = listing.try_next().await? {
            report.blobs_scanned.add(meta.size);
            let Some(hash) = blob_hash(&meta) else {
                report.foreign.push(meta.path);
                continue;
            };
            let present = Present {
                location: meta.path,
                size: meta.size,
                modified: meta.modified,
            };
            if let Some(mark) = marks.blobs.get_mut(&hash) {
                mark.present = Some(present);
            } else if age(now, present.modified) < options.older_than {
                report.blobs_young.add(present.size);
            } else {
                candidates.insert(hash, present);
            }
        }
        Ok(candidates)
    }

    /// Deletes build results naming a blob that is gone; blobs only they named become
    /// candidates when old enough.
    async fn drop_dangling(
        &self,
        marks: &mut Marks,
        candidates: &mut HashMap<[u8; 32], Present>,
        options: &GcOptions,
        now: SystemTime,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        let mut dangling = Vec::new();
        for entry in marks.entries.iter().filter(|entry| entry.is_result) {
            let mut missing = entry.blobs.iter().filter(|digest| {
                !matches!(&marks.blobs[&digest.hash].present, Some(p) if p.size == digest.size)
            });
            if let Some(digest) = missing.next() {
                // Not in the listing; it may have been uploaded since: ask again.
                let mut gone = !self.store.contains(digest).await?;
                for digest in missing {
                    gone = gone || !self.store.contains(digest).await?;
                }
                if gone && self.unchanged(&entry.meta).await? {
                    dangling.push(entry);
                }
            }
        }
        let mut removals = Vec::new();
        for entry in dangling {
            tracing::info!(key = %entry.key, "action result names a blob that is gone");
            removals.push(Removal {
                kind: RemovalKind::DanglingResult,
                location: entry.meta.path.clone(),
                bytes: entry.meta.size,
                age: age(now, entry.meta.modified),
            });
            for digest in &entry.blobs {
                let mark = marks.blobs.get_mut(&digest.hash).expect("marked above");
                mark.refs -= 1;
                if mark.refs == 0 && !mark.pinned {
                    match mark.present.take() {
                        Some(blob) if age(now, blob.modified) >= options.older_than => {
                            candidates.insert(digest.hash, blob);
                        }
                        other => mark.present = other,
                    }
                }
            }
        }
        self.remove(removals, options.dry_run, report).await;
        Ok(())
    }

    /// Deletes quarantined objects older than the retention.
    async fn sweep_quarantine(
        &self,
        options: &GcOptions,
        now: SystemTime,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        let mut listing = self.admin.list(Area::Quarantine);
        let mut removals = Vec::new();
        while let Some(meta) = listing.try_next().await? {
            report.quarantine_scanned.add(meta.size);
            let age = age(now, meta.modified);
            if age >= options.older_than {
                removals.push(Removal {
                    kind: RemovalKind::Quarantined,
                    location: meta.path,
                    bytes: meta.size,
                    age,
                });
            }
        }
        self.remove(removals, options.dry_run, report).await;
        Ok(())
    }

    /// Deletes `removals` (unless `dry_run`) and records them; failures are recorded, not raised.
    async fn remove(&self, removals: Vec<Removal>, dry_run: bool, report: &mut GcReport) {
        let mut outcomes = stream::iter(removals)
            .map(|removal| async move {
                if dry_run {
                    return (removal, Ok(()));
                }
                let deleted = self.admin.delete(&removal.location).await;
                (removal, deleted)
            })
            .buffer_unordered(DELETE_CONCURRENCY);
        while let Some((removal, deleted)) = outcomes.next().await {
            if let Err(error) = deleted {
                report.failures.push(error.to_string());
                continue;
            }
            let tally = match removal.kind {
                RemovalKind::Blob => &mut report.blobs_removed,
                RemovalKind::DanglingResult => &mut report.results_removed,
                RemovalKind::Quarantined => &mut report.quarantine_removed,
            };
            tally.add(removal.bytes);
            report.removals.push(removal);
        }
    }

    /// Whether the entry is still the one that was read (a daemon may have replaced it).
    async fn unchanged(&self, meta: &StoredObject) -> Result<bool, StoreError> {
        Ok(match self.admin.head(&meta.path).await? {
            // Listings and HEADs agree on e-tags up to quotes (Azure quotes only in HEADs);
            // their times differ in precision (S3 lists milliseconds, HEADs seconds).
            Some(now) => match (&now.e_tag, &meta.e_tag) {
                (Some(now), Some(then)) => now.trim_matches('"') == then.trim_matches('"'),
                _ => unix_seconds(now.modified) == unix_seconds(meta.modified),
            },
            None => false,
        })
    }

    /// The key of an entry at `ac/v1/<64 lowercase hex>`, `None` for another name there; an
    /// error for an action cache of another version, whose references this code cannot know.
    fn entry_key(&self, entry: &StoredObject) -> Result<Option<ActionKey>, StoreError> {
        match entry.parts().as_slice() {
            ["ac", "v1", name] => Ok(ActionKey::parse(name).ok().filter(|key| key.hex() == *name)),
            ["ac", version, ..] if *version != "v1" => Err(StoreError::backend(
                format!(
                    "{} in {} belongs to an action cache layout this trtfarm does not know \
                     (ac/{version}); collecting would delete blobs it references, so nothing \
                     was deleted: use the trtfarmd that wrote it",
                    entry.path,
                    self.admin.display_url()
                ),
                object_store::Error::NotSupported {
                    source: "unknown action cache version".into(),
                },
            )),
            _ => Ok(None),
        }
    }
}

/// The hash of a blob at its layout path `cas/blake3/<2 hex>/<64 lowercase hex>`.
fn blob_hash(blob: &StoredObject) -> Option<[u8; 32]> {
    match blob.parts().as_slice() {
        ["cas", "blake3", fan, name] => {
            let digest = BlobDigest::parse(name, 0).ok()?;
            (digest.hex() == *name && name.starts_with(fan)).then_some(digest.hash)
        }
        _ => None,
    }
}

/// Whole seconds since the epoch (before it: zero), the precision every backend keeps.
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// What identifies one version of an entry: its e-tag and last-modified time.
fn version_of(meta: &StoredObject) -> (Option<String>, SystemTime) {
    (meta.e_tag.clone(), meta.modified)
}

/// How long ago `modified` was (zero for a time in the future: another machine's clock).
fn age(now: SystemTime, modified: SystemTime) -> Duration {
    now.duration_since(modified).unwrap_or(Duration::ZERO)
}

/// A blob seen in the CAS listing.
#[derive(Debug)]
struct Present {
    /// Its path below the store root.
    location: String,
    size: u64,
    modified: SystemTime,
}

/// What the collection knows of one blob named by an entry or the keep list.
#[derive(Debug, Default)]
struct BlobMark {
    /// Entries naming it (one count per naming).
    refs: u32,
    /// On the keep list.
    pinned: bool,
    /// Where the listing found it, if it did.
    present: Option<Present>,
}

/// An action-cache entry that was read.
#[derive(Debug)]
struct EntryMark {
    key: ActionKey,
    meta: StoredObject,
    blobs: Vec<BlobDigest>,
    is_result: bool,
}

/// Everything marked so far.
#[derive(Debug, Default)]
struct Marks {
    blobs: HashMap<[u8; 32], BlobMark>,
    entries: Vec<EntryMark>,
    /// Entry locations read, with their versions, so a second pass reads only what changed.
    entries_seen: HashMap<String, (Option<String>, SystemTime)>,
}

impl Marks {
    fn blob(&mut self, hash: [u8; 32]) -> &mut BlobMark {
        self.blobs.entry(hash).or_default()
    }
}
