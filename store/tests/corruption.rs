//! Blobs damaged on disk under a `file://` store: never served whole, quarantined, healable.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::{TestStore, drain, files_under, pattern};
use trtfarm_store::{BlobDigest, MAX_READ_CHUNK, StoreError};

/// Stores `bytes` in a fresh `file://` store and returns it with the digest.
async fn stored(bytes: &[u8]) -> (TestStore, BlobDigest) {
    let t = TestStore::file();
    let put = t
        .store
        .put_file(&t.write_input("in", bytes), None)
        .await
        .unwrap();
    assert!(put.stored);
    (t, put.digest)
}

/// Flips the byte at `at` in the blob's file.
fn flip_byte(t: &TestStore, digest: &BlobDigest, at: u64) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.blob_file(digest))
        .unwrap();
    let original = std::fs::read(t.blob_file(digest)).unwrap()[at as usize];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[original ^ 0x5a]).unwrap();
}

/// Asserts the read failed as corrupt without ever delivering the whole blob, and that the blob
/// now sits in quarantine instead of the CAS.
async fn assert_corrupt_and_quarantined(t: &TestStore, digest: &BlobDigest, offset: u64) {
    let read = drain(t.store.as_ref(), digest, offset).await;
    match &read.error {
        Some(StoreError::Corrupt { digest: d, .. }) => assert_eq!(d, digest),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let suffix_len = digest.size - offset;
    assert!(
        (read.bytes.len() as u64) < suffix_len.max(1),
        "{} of {suffix_len} bytes were served from a corrupt blob",
        read.bytes.len()
    );
    let message = read.error.unwrap().to_string();
    assert!(message.contains(&digest.to_string()), "{message}");
    assert!(message.contains("quarantine"), "{message}");

    assert!(!t.store.contains(digest).await.unwrap());
    assert!(!t.blob_file(digest).exists());
    let quarantined = t.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let (hex, millis) = quarantined[0].split_once('.').unwrap();
    assert_eq!(hex, digest.hex());
    assert!(millis.parse::<u128>().unwrap() > 0);
}

#[tokio::test]
async fn a_flipped_byte_is_caught_and_the_last_chunk_withheld() {
    let bytes = pattern(MAX_READ_CHUNK * 7 / 2, 1);
    let (t, digest) = stored(&bytes).await;
    flip_byte(&t, &digest, 0);
    assert_corrupt_and_quarantined(&t, &digest, 0).await;
}

#[tokio::test]
async fn corruption_before_the_offset_is_still_caught() {
    let bytes = pattern(MAX_READ_CHUNK * 2, 2);
    let (t, digest) = stored(&bytes).await;
    flip_byte(&t, &digest, 10);
    assert_corrupt_and_quarantined(&t, &digest, MAX_READ_CHUNK as u64 + 1).await;
}

#[tokio::test]
async fn corruption_is_caught_when_reading_from_the_very_end() {
    let (t, digest) = stored(b"small blob").await;
    flip_byte(&t, &digest, 9);
    assert_corrupt_and_quarantined(&t, &digest, digest.size).await;
}

#[tokio::test]
async fn a_truncated_blob_is_caught() {
    let bytes = pattern(MAX_READ_CHUNK + 100, 3);
    let (t, digest) = stored(&bytes).await;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(t.blob_file(&digest))
        .unwrap();
    file.set_len(digest.size - 1).unwrap();
    assert_corrupt_and_quarantined(&t, &digest, 0).await;
}

#[tokio::test]
async fn a_padded_blob_is_caught() {
    let (t, digest) = stored(b"exact").await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(t.blob_file(&digest))
        .unwrap();
    file.write_all(b"!").unwrap();
    assert_corrupt_and_quarantined(&t, &digest, 0).await;
}

#[tokio::test]
async fn read_to_file_of_a_corrupt_blob_leaves_nothing_behind() {
    let bytes = pattern(MAX_READ_CHUNK * 3, 4);
    let (t, digest) = stored(&bytes).await;
    flip_byte(&t, &digest, digest.size - 1);
    let out_dir = t.scratch.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("engine.plan");

    let err = t.store.read_to_file(&digest, &dest).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(!dest.exists());
    assert!(
        files_under(&out_dir).is_empty(),
        "{:?}",
        files_under(&out_dir)
    );
    assert_eq!(t.quarantined().len(), 1);
}

#[tokio::test]
async fn a_quarantined_blob_can_be_uploaded_again() {
    let bytes = pattern(1000, 5);
    let (t, digest) = stored(&bytes).await;
    flip_byte(&t, &digest, 500);
    assert_corrupt_and_quarantined(&t, &digest, 0).await;

    let again = t
        .store
        .put_file(&t.write_input("again", &bytes), Some(digest))
        .await
        .unwrap();
    assert!(again.stored, "the re-upload must store the blob again");
    let read = drain(t.store.as_ref(), &digest, 0).await;
    assert!(read.error.is_none() && read.bytes == bytes);
}

#[tokio::test]
async fn a_wrong_sized_blob_counts_as_missing_and_is_overwritten_by_the_next_put() {
    let bytes = pattern(4096, 6);
    let (t, digest) = stored(&bytes).await;
    std::fs::write(t.blob_file(&digest), b"short").unwrap();

    assert!(!t.store.contains(&digest).await.unwrap());
    assert_eq!(t.store.find_missing(&[digest]).await.unwrap(), vec![digest]);
    let put = t
        .store
        .put_file(&t.write_input("again", &bytes), None)
        .await
        .unwrap();
    assert!(put.stored);
    assert_eq!(std::fs::read(t.blob_file(&digest)).unwrap(), bytes);
}

#[tokio::test]
async fn explicit_quarantine_moves_the_blob_and_reports_a_second_attempt() {
    let (t, digest) = stored(b"evidence").await;
    t.store
        .quarantine(&digest, "operator request")
        .await
        .unwrap();
    assert!(!t.store.contains(&digest).await.unwrap());
    assert_eq!(t.quarantined().len(), 1);
    let quarantined = t
        .root
        .as_ref()
        .unwrap()
        .join("quarantine/blake3")
        .join(&t.quarantined()[0]);
    assert_eq!(std::fs::read(quarantined).unwrap(), b"evidence");

    let err = t.store.quarantine(&digest, "again").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
