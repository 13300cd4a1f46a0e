//! What a collection found and did: [`GcReport`].

use std::time::Duration;

/// A number of objects and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many objects.
    pub objects: u64,
    /// Their size in bytes, together.
    pub bytes: u64,
}

impl Tally {
    pub(super) fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// Why an object was (or, in a dry run, would be) deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalKind {
    /// A blob nothing references, older than the retention.
    Blob,
    /// A build result naming a blob that is gone.
    DanglingResult,
    /// A quarantined blob older than the retention.
    Quarantined,
}

/// One object deleted (or, in a dry run, to be deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// What it is.
    pub kind: RemovalKind,
    /// Its object path in the store.
    pub location: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// How long ago it was last modified.
    pub age: Duration,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Whether this was a dry run (nothing was deleted; removals say what would have been).
    pub dry_run: bool,
    /// Every blob listed in the CAS.
    pub blobs_scanned: Tally,
    /// Blobs kept because an action-cache entry names them.
    pub blobs_referenced: Tally,
    /// Blobs kept only because the keep list names them.
    pub blobs_kept: Tally,
    /// Unreferenced blobs kept because they are younger than the retention.
    pub blobs_young: Tally,
    /// Blobs deleted.
    pub blobs_removed: Tally,
    /// Action-cache entries read (results and records).
    pub entries_scanned: u64,
    /// Entries the decoder could not read, with why; left alone.
    pub entries_unreadable: Vec<String>,
    /// Build results deleted because a blob they name is gone.
    pub results_removed: Tally,
    /// Objects under `quarantine/`.
    pub quarantine_scanned: Tally,
    /// Quarantined objects deleted.
    pub quarantine_removed: Tally,
    /// Objects under `cas/` or `ac/` that are not where the layout puts anything; left alone.
    pub foreign: Vec<String>,
    /// Every deletion, in the order decided.
    pub removals: Vec<Removal>,
    /// Deletions that failed, with why (the collection went on).
    pub failures: Vec<String>,
}
