//! Store garbage collection (`trtfarm_store::gc`) on every backend: what is referenced survives,
//! what is unreferenced goes only once older than the retention, results whose blobs are gone go,
//! records and keep-listed blobs stay, and a dry run deletes nothing.
//!
//! "Old" is a retention of zero and "young" a retention of a day, rather than a faked clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestStore, pattern, per_backend};
use prost::Message;
use trtfarm_proto::v1;
use trtfarm_store::gc::{CacheEntry, Collector, GcOptions, GcReport, RemovalKind};
use trtfarm_store::{ActionKey, BlobDigest, ContentStore};

const OLD: Duration = Duration::ZERO;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A collector on the test store's storage, opened as a second process would (for `memory://`,
/// whose objects live in one client, on the same client), and the store to fill it through.
fn collector(t: &TestStore) -> (Collector, Arc<dyn ContentStore>) {
    (Collector::new(t.another_client()), Arc::clone(&t.store))
}

/// Reads entries as the daemon writes them: `record:` text stands in for the timing-cache
/// registry's records, anything else must be an encoded `ActionResult`.
fn decode(bytes: &[u8]) -> Result<CacheEntry, String> {
    if let Some(list) = bytes.strip_prefix(b"record:") {
        let text = std::str::from_utf8(list).map_err(|e| e.to_string())?;
        let digests = text.split(',').map(|d| d.parse::<BlobDigest>());
        return digests
            .collect::<Result<_, _>>()
            .map(CacheEntry::Record)
            .map_err(|e| e.to_string());
    }
    let result = v1::ActionResult::decode(bytes).map_err(|e| e.to_string())?;
    result
        .blobs()
        .map(|(_, d)| d)
        .map(|d| BlobDigest::parse(&d.blake3, d.size_bytes).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(CacheEntry::Result)
}

fn wire(digest: &BlobDigest) -> v1::Digest {
    v1::Digest {
        blake3: digest.hex(),
        size_bytes: digest.size,
    }
}

/// Uploads `len` pseudo-random bytes (different per `seed`) and returns their digest.
async fn blob(t: &TestStore, store: &dyn ContentStore, len: usize, seed: u64) -> BlobDigest {
    let path = t.write_input(&format!("blob-{seed}"), &pattern(len, seed));
    store.put_file(&path, None).await.unwrap().digest
}

/// Publishes a result naming `engine` and `log`, under a key made from `name`.
async fn result(
    store: &dyn ContentStore,
    name: &str,
    engine: &BlobDigest,
    log: &BlobDigest,
) -> ActionKey {
    let key = ActionKey(*blake3::hash(name.as_bytes()).as_bytes());
    let encoded = v1::ActionResult {
        action_key: key.hex(),
        engine: Some(wire(engine)),
        build_log: Some(wire(log)),
        ..v1::ActionResult::default()
    }
    .encode_to_vec();
    store
        .put_action_result(&key, Bytes::from(encoded))
        .await
        .unwrap();
    key
}

async fn collect(
    collector: &Collector,
    older_than: Duration,
    keep: &[BlobDigest],
    dry_run: bool,
) -> GcReport {
    let options = GcOptions {
        older_than,
        keep: keep.to_vec(),
        dry_run,
    };
    let report = collector.collect(&options, &decode).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    report
}

/// A result whose 2000-byte engine was found corrupt and quarantined: its 300-byte log and
/// its key.
async fn damaged_result(
    t: &TestStore,
    store: &dyn ContentStore,
    seed: u64,
) -> (BlobDigest, ActionKey) {
    let engine = blob(t, store, 2000, seed).await;
    let log = blob(t, store, 300, seed + 1).await;
    let key = result(store, "damaged", &engine, &log).await;
    store
        .quarantine(&engine, "test: the engine was found corrupt")
        .await
        .unwrap();
    (log, key)
}

async fn present(store: &dyn ContentStore, digest: &BlobDigest) -> bool {
    store.contains(digest).await.unwrap()
}

per_backend!([file, memory, s3, azure] async fn referenced_blobs_survive_and_old_unreferenced_ones_go(t) {
    let (collector, store) = collector(&t);
    let engine = blob(&t, &*store, 3000, 1).await;
    let log = blob(&t, &*store, 100, 2).await;
    let orphan = blob(&t, &*store, 5000, 3).await;
    let key = result(&*store, "built", &engine, &log).await;

    let report = collect(&collector, OLD, &[], false).await;
    assert!(present(&*store, &engine).await && present(&*store, &log).await);
    assert!(!present(&*store, &orphan).await, "the unreferenced blob went");
    assert!(store.get_action_result(&key).await.unwrap().is_some());
    assert_eq!(report.entries_scanned, 1);
    assert_eq!((report.blobs_scanned.objects, report.blobs_scanned.bytes), (3, 8100));
    assert_eq!((report.blobs_referenced.objects, report.blobs_referenced.bytes), (2, 3100));
    assert_eq!((report.blobs_removed.objects, report.blobs_removed.bytes), (1, 5000));
    assert_eq!(report.results_removed.objects, 0);
    assert_eq!(report.removals.len(), 1);
    assert_eq!(report.removals[0].kind, RemovalKind::Blob);
    assert!(report.removals[0].location.ends_with(&orphan.hex()), "{:?}", report.removals);
    assert!(report.foreign.is_empty(), "{:?}", report.foreign);

    // A second collection finds nothing more to do.
    let again = collect(&collector, OLD, &[], false).await;
    assert!(again.removals.is_empty(), "{:?}", again.removals);
});

per_backend!([file, memory, s3, azure] async fn young_unreferenced_blobs_stay(t) {
    let (collector, store) = collector(&t);
    let orphan = blob(&t, &*store, 700, 4).await;
    let report = collect(&collector, DAY, &[], false).await;
    assert!(present(&*store, &orphan).await, "a blob younger than the retention stays");
    assert_eq!((report.blobs_young.objects, report.blobs_young.bytes), (1, 700));
    assert_eq!(report.blobs_removed.objects, 0);
});

per_backend!([file, memory, s3, azure] async fn a_result_whose_engine_is_gone_goes_with_its_other_blobs(t) {
    let (collector, store) = collector(&t);
    let (log, key) = damaged_result(&t, &*store, 5).await;

    // Within the retention: the result goes (it is a miss anyway), its log and the quarantined
    // engine stay until they are old.
    let young = collect(&collector, DAY, &[], false).await;
    assert!(store.get_action_result(&key).await.unwrap().is_none(), "the dangling result went");
    assert_eq!(young.results_removed.objects, 1);
    assert!(present(&*store, &log).await, "its young log stays");
    assert_eq!(young.quarantine_scanned.objects, 1);
    assert_eq!(young.quarantine_removed.objects, 0);

    // Old: the log, no longer named by anything, and the quarantined copy go.
    let old = collect(&collector, OLD, &[], false).await;
    assert!(!present(&*store, &log).await);
    assert_eq!(old.blobs_removed.objects, 1);
    assert_eq!((old.quarantine_removed.objects, old.quarantine_removed.bytes), (1, 2000));
    let after = collect(&collector, OLD, &[], true).await;
    assert_eq!(after.quarantine_scanned.objects, 0);
    assert_eq!(after.blobs_scanned.objects, 0);
});

per_backend!([file, memory, s3, azure] async fn a_dangling_result_and_its_blobs_go_in_one_collection(t) {
    let (collector, store) = collector(&t);
    let (log, key) = damaged_result(&t, &*store, 7).await;
    let report = collect(&collector, OLD, &[], false).await;
    assert!(store.get_action_result(&key).await.unwrap().is_none());
    assert!(!present(&*store, &log).await, "nothing names the log any more");
    let kinds: Vec<RemovalKind> = report.removals.iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&RemovalKind::DanglingResult), "{kinds:?}");
    assert!(kinds.contains(&RemovalKind::Blob), "{kinds:?}");
    assert!(kinds.contains(&RemovalKind::Quarantined), "{kinds:?}");
});

per_backend!([file, memory, s3, azure] async fn keep_listed_blobs_survive(t) {
    let (collector, store) = collector(&t);
    let locked_engine = blob(&t, &*store, 1200, 9).await;
    let orphan = blob(&t, &*store, 10, 10).await;
    let report = collect(&collector, OLD, &[locked_engine], false).await;
    assert!(present(&*store, &locked_engine).await, "a locked engine stays");
    assert!(!present(&*store, &orphan).await);
    assert_eq!((report.blobs_kept.objects, report.blobs_kept.bytes), (1, 1200));
});

per_backend!([file, memory, s3, azure] async fn records_keep_their_blobs_and_are_never_deleted(t) {
    let (collector, store) = collector(&t);
    let cache = blob(&t, &*store, 900, 11).await;
    let gone = BlobDigest::of_bytes(b"a timing cache that was never uploaded");
    let key = ActionKey([7; 32]);
    let record = format!("record:{cache},{gone}");
    store.put_action_result(&key, Bytes::from(record)).await.unwrap();
    let report = collect(&collector, OLD, &[], false).await;
    assert!(present(&*store, &cache).await, "a registry record's blob stays");
    assert!(store.get_action_result(&key).await.unwrap().is_some(), "records are not results");
    assert_eq!(report.results_removed.objects, 0);
});

per_backend!([file, memory, s3, azure] async fn unreadable_entries_are_reported_and_left_alone(t) {
    let (collector, store) = collector(&t);
    let key = ActionKey([9; 32]);
    store.put_action_result(&key, Bytes::from_static(b"\xff\xff not a result")).await.unwrap();
    let report = collect(&collector, OLD, &[], false).await;
    assert_eq!(report.entries_unreadable.len(), 1, "{:?}", report.entries_unreadable);
    assert!(report.entries_unreadable[0].contains(&key.hex()));
    assert!(store.get_action_result(&key).await.unwrap().is_some());
});

per_backend!([file, memory, s3, azure] async fn a_dry_run_deletes_nothing_and_says_what_would_go(t) {
    let (collector, store) = collector(&t);
    let engine = blob(&t, &*store, 2000, 12).await;
    let log = blob(&t, &*store, 300, 13).await;
    let orphan = blob(&t, &*store, 4000, 14).await;
    let key = result(&*store, "damaged", &engine, &log).await;
    store.quarantine(&engine, "test").await.unwrap();

    let dry = collect(&collector, OLD, &[], true).await;
    assert!(dry.dry_run);
    assert!(present(&*store, &orphan).await && present(&*store, &log).await);
    assert!(store.get_action_result(&key).await.unwrap().is_some());
    let mut would: Vec<(RemovalKind, u64)> = dry.removals.iter().map(|r| (r.kind, r.bytes)).collect();
    would.sort_by_key(|(_, bytes)| *bytes);
    assert_eq!(would.len(), 4, "{would:?}");
    assert_eq!(dry.blobs_removed.bytes, 4300);
    assert_eq!(dry.quarantine_removed.bytes, 2000);

    // The real collection deletes exactly what the dry run listed.
    let real = collect(&collector, OLD, &[], false).await;
    let mut went: Vec<&str> = real.removals.iter().map(|r| r.location.as_str()).collect();
    let mut listed: Vec<&str> = dry.removals.iter().map(|r| r.location.as_str()).collect();
    went.sort();
    listed.sort();
    assert_eq!(went, listed);
    assert!(!present(&*store, &orphan).await && !present(&*store, &log).await);
});

per_backend!([file, s3] async fn objects_outside_the_layout_are_left_alone(t) {
    let (collector, _store) = collector(&t);
    let raw = t.raw();
    raw.put(&raw.path("cas/blake3/zz/not-a-digest"), b"x".to_vec()).await;
    raw.put(&raw.path("ac/v1/README"), b"y".to_vec()).await;
    let report = collect(&collector, OLD, &[], false).await;
    assert_eq!(report.foreign.len(), 2, "{:?}", report.foreign);
    assert!(raw.get(&raw.path("cas/blake3/zz/not-a-digest")).await.is_some());
    assert!(raw.get(&raw.path("ac/v1/README")).await.is_some());
});

per_backend!([file, s3] async fn an_unknown_action_cache_version_stops_the_collection(t) {
    let (collector, store) = collector(&t);
    let orphan = blob(&t, &*store, 10, 15).await;
    let raw = t.raw();
    raw.put(&raw.path(&format!("ac/v2/{}", "ab".repeat(32))), b"future".to_vec()).await;
    let options = GcOptions { older_than: OLD, ..GcOptions::default() };
    let error = collector.collect(&options, &decode).await.unwrap_err().to_string();
    assert!(error.contains("ac/v2"), "{error}");
    assert!(present(&*store, &orphan).await, "nothing was deleted");
});
