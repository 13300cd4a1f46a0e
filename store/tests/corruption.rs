//! Blobs damaged in storage (behind the store's back, through a raw client on the same bucket or
//! directory): never served whole, quarantined, healable. On every backend whose bytes can be
//! reached from outside the store (not `memory://`).

mod common;

use common::{TestStore, drain, files_under, pattern, per_backend};
use trtfarm_store::{BlobDigest, MAX_READ_CHUNK, StoreError};

/// Stores `bytes` in `t` and returns the digest.
async fn stored(t: &TestStore, bytes: &[u8]) -> BlobDigest {
    let put = t
        .store
        .put_file(&t.write_input("in", bytes), None)
        .await
        .unwrap();
    assert!(put.stored);
    put.digest
}

/// Flips the byte at `at` in the stored blob.
async fn flip_byte(t: &TestStore, digest: &BlobDigest, at: u64) {
    t.raw()
        .damage_blob(digest, |bytes| bytes[at as usize] ^= 0x5a)
        .await;
}

/// Asserts the read failed as corrupt without ever delivering the whole blob, and that the blob
/// now sits in quarantine instead of the CAS.
async fn assert_corrupt_and_quarantined(t: &TestStore, digest: &BlobDigest, offset: u64) {
    let kind = t.kind();
    let read = drain(t.store.as_ref(), digest, offset).await;
    match &read.error {
        Some(StoreError::Corrupt { digest: d, .. }) => assert_eq!(d, digest, "{kind}"),
        other => panic!("{kind}: expected Corrupt, got {other:?}"),
    }
    let suffix_len = digest.size - offset;
    assert!(
        (read.bytes.len() as u64) < suffix_len.max(1),
        "{kind}: {} of {suffix_len} bytes were served from a corrupt blob",
        read.bytes.len()
    );
    let message = read.error.unwrap().to_string();
    assert!(message.contains(&digest.to_string()), "{kind}: {message}");
    assert!(message.contains("quarantine"), "{kind}: {message}");

    assert!(!t.store.contains(digest).await.unwrap(), "{kind}");
    assert_eq!(t.raw().blob(digest).await, None, "{kind}: still in the CAS");
    let quarantined = t.raw().quarantined().await;
    assert_eq!(quarantined.len(), 1, "{kind}: {quarantined:?}");
    let (hex, millis) = quarantined[0].split_once('.').unwrap();
    assert_eq!(hex, digest.hex(), "{kind}");
    assert!(millis.parse::<u128>().unwrap() > 0, "{kind}");
}

per_backend!([file, s3, azure] async fn a_flipped_byte_is_caught_and_the_last_chunk_withheld(t) {
    let bytes = pattern(MAX_READ_CHUNK * 7 / 2, 1);
    let digest = stored(&t, &bytes).await;
    flip_byte(&t, &digest, 0).await;
    assert_corrupt_and_quarantined(&t, &digest, 0).await;
});

per_backend!([file, s3, azure] async fn corruption_before_the_offset_is_still_caught(t) {
    let bytes = pattern(MAX_READ_CHUNK * 2, 2);
    let digest = stored(&t, &bytes).await;
    flip_byte(&t, &digest, 10).await;
    assert_corrupt_and_quarantined(&t, &digest, MAX_READ_CHUNK as u64 + 1).await;
});

per_backend!([file, s3, azure] async fn corruption_is_caught_when_reading_from_the_very_end(t) {
    let digest = stored(&t, b"small blob").await;
    flip_byte(&t, &digest, 9).await;
    assert_corrupt_and_quarantined(&t, &digest, digest.size).await;
});

per_backend!([file, s3, azure] async fn a_truncated_blob_is_caught(t) {
    let bytes = pattern(MAX_READ_CHUNK + 100, 3);
    let digest = stored(&t, &bytes).await;
    t.raw().damage_blob(&digest, |bytes| { bytes.pop(); }).await;
    assert_corrupt_and_quarantined(&t, &digest, 0).await;
});

per_backend!([file, s3, azure] async fn a_padded_blob_is_caught(t) {
    let digest = stored(&t, b"exact").await;
    t.raw().damage_blob(&digest, |bytes| bytes.push(b'!')).await;
    assert_corrupt_and_quarantined(&t, &digest, 0).await;
});

per_backend!([file, s3, azure] async fn read_to_file_of_a_corrupt_blob_leaves_nothing_behind(t) {
    let kind = t.kind();
    let bytes = pattern(MAX_READ_CHUNK * 3, 4);
    let digest = stored(&t, &bytes).await;
    flip_byte(&t, &digest, digest.size - 1).await;
    let out_dir = t.scratch.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("engine.plan");

    let err = t.store.read_to_file(&digest, &dest).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{kind}: {err:?}");
    assert!(!dest.exists(), "{kind}");
    assert!(
        files_under(&out_dir).is_empty(),
        "{kind}: {:?}",
        files_under(&out_dir)
    );
    assert_eq!(t.raw().quarantined().await.len(), 1, "{kind}");
});

per_backend!([file, s3, azure] async fn a_quarantined_blob_can_be_uploaded_again(t) {
    let kind = t.kind();
    let bytes = pattern(1000, 5);
    let digest = stored(&t, &bytes).await;
    flip_byte(&t, &digest, 500).await;
    assert_corrupt_and_quarantined(&t, &digest, 0).await;

    let again = t
        .store
        .put_file(&t.write_input("again", &bytes), Some(digest))
        .await
        .unwrap();
    assert!(again.stored, "{kind}: the re-upload must store the blob again");
    let read = drain(t.store.as_ref(), &digest, 0).await;
    assert!(read.error.is_none() && read.bytes == bytes, "{kind}");
});

per_backend!([file, s3, azure]
    async fn a_wrong_sized_blob_counts_as_missing_and_is_overwritten_by_the_next_put(t) {
    let kind = t.kind();
    let bytes = pattern(4096, 6);
    let digest = stored(&t, &bytes).await;
    let raw = t.raw();
    raw.put(&raw.blob_path(&digest), b"short".to_vec()).await;

    assert!(!t.store.contains(&digest).await.unwrap(), "{kind}");
    assert_eq!(t.store.find_missing(&[digest]).await.unwrap(), vec![digest], "{kind}");
    let put = t
        .store
        .put_file(&t.write_input("again", &bytes), None)
        .await
        .unwrap();
    assert!(put.stored, "{kind}");
    assert_eq!(raw.blob(&digest).await, Some(bytes), "{kind}");
});

per_backend!([file, s3, azure]
    async fn explicit_quarantine_moves_the_blob_and_reports_a_second_attempt(t) {
    let kind = t.kind();
    let digest = stored(&t, b"evidence").await;
    t.store
        .quarantine(&digest, "operator request")
        .await
        .unwrap();
    assert!(!t.store.contains(&digest).await.unwrap(), "{kind}");
    let raw = t.raw();
    let quarantined = raw.quarantined().await;
    assert_eq!(quarantined.len(), 1, "{kind}: {quarantined:?}");
    let kept = raw.get(&raw.path(&format!("quarantine/blake3/{}", quarantined[0]))).await;
    assert_eq!(kept.as_deref(), Some(&b"evidence"[..]), "{kind}");

    let err = t.store.quarantine(&digest, "again").await.unwrap_err();
    assert!(err.is_not_found(), "{kind}: {err:?}");
});
