//! Blob round trips, digest checks, offsets and existence queries, on every backend.

mod common;

use common::{drain, files_under, pattern, per_backend};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use trtfarm_store::{BlobDigest, MAX_READ_CHUNK, StoreError};

per_backend!([file, memory, s3, azure] async fn put_then_read_round_trips_every_size(t) {
    let sizes = [0, 1, MAX_READ_CHUNK, MAX_READ_CHUNK * 7 / 2];
    let kind = t.store.kind().to_string();
    for (i, &size) in sizes.iter().enumerate() {
        let bytes = pattern(size, i as u64);
        let path = t.write_input(&format!("in-{size}"), &bytes);

        let first = t.store.put_file(&path, None).await.unwrap();
        assert_eq!(
            first.digest,
            BlobDigest::of_bytes(&bytes),
            "{kind} size {size}"
        );
        assert_eq!(
            first.sha256,
            <[u8; 32]>::from(Sha256::digest(&bytes)),
            "{kind}"
        );
        assert!(first.stored, "{kind}: first put of size {size} must store");
        assert!(t.store.contains(&first.digest).await.unwrap(), "{kind}");

        let read = drain(t.store.as_ref(), &first.digest, 0).await;
        assert!(read.error.is_none(), "{kind} size {size}: {:?}", read.error);
        assert!(read.bytes == bytes, "{kind} size {size}: bytes differ");
        assert!(
            read.chunk_sizes
                .iter()
                .all(|&c| c > 0 && c <= MAX_READ_CHUNK)
        );

        let again = t.store.put_file(&path, Some(first.digest)).await.unwrap();
        assert!(
            !again.stored,
            "{kind} size {size}: second put must not re-upload"
        );
        assert_eq!(
            again.sha256, first.sha256,
            "{kind}: sha256 on an existing blob"
        );
    }
});

per_backend!([file, memory, s3, azure] async fn a_64_mib_file_round_trips_in_bounded_chunks(t) {
    let bytes = pattern(64 << 20, 64);
    let kind = t.store.kind().to_string();
    let path = t.write_input("big", &bytes);
    let expected = BlobDigest::of_bytes(&bytes);
    let put = t.store.put_file(&path, Some(expected)).await.unwrap();
    assert!(put.stored && put.digest == expected, "{kind}");
    assert_eq!(
        put.sha256,
        <[u8; 32]>::from(Sha256::digest(&bytes)),
        "{kind}"
    );

    let mut stream = t.store.read(&expected, 0).await.unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(
            chunk.len() <= MAX_READ_CHUNK,
            "{kind}: chunk of {}",
            chunk.len()
        );
        hasher.update(&chunk);
        total += chunk.len() as u64;
        chunks += 1;
    }
    assert_eq!(
        BlobDigest::new(hasher.finalize(), total),
        expected,
        "{kind}"
    );
    assert!(chunks >= 64, "{kind}: only {chunks} chunks");

    let dest = t.scratch.path().join("out/big.copy");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    t.store.read_to_file(&expected, &dest).await.unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == bytes,
        "{kind}: read_to_file bytes differ"
    );
    assert_eq!(
        files_under(dest.parent().unwrap()),
        vec![dest.clone()],
        "{kind}"
    );
});

per_backend!([file, memory, s3, azure] async fn wrong_expected_digest_is_refused_and_nothing_is_published(t) {
    let kind = t.store.kind().to_string();
    let bytes = pattern(MAX_READ_CHUNK * 2 + 3, 7);
    let path = t.write_input("model.onnx", &bytes);
    let actual = BlobDigest::of_bytes(&bytes);
    let same_size = BlobDigest::of_bytes(&pattern(bytes.len(), 8));
    let other_size = BlobDigest {
        size: 5,
        ..same_size
    };

    for wrong in [same_size, other_size] {
        let err = t.store.put_file(&path, Some(wrong)).await.unwrap_err();
        match &err {
            StoreError::DigestMismatch {
                expected,
                actual: got,
                ..
            } => {
                assert_eq!((*expected, *got), (wrong, actual), "{kind}");
            }
            other => panic!("{kind}: expected DigestMismatch, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("model.onnx"), "{kind}: {message}");
        assert!(message.contains(&wrong.hex()), "{kind}: {message}");
        assert!(!t.store.contains(&wrong).await.unwrap(), "{kind}");
        assert!(!t.store.contains(&actual).await.unwrap(), "{kind}");
    }
    if let Some(raw) = &t.raw {
        // An aborted multipart upload publishes no object (S3 and Azure may keep invisible
        // parts until they expire; those are not objects).
        let left = raw.list().await;
        assert!(left.is_empty(), "{kind}: left behind: {left:?}");
        // The listing does see a published blob (so the empty one above means something).
        t.store.put_file(&path, Some(actual)).await.unwrap();
        let hex = actual.hex();
        let blob = format!("cas/blake3/{}/{hex}", &hex[..2]);
        assert_eq!(raw.list().await, vec![blob], "{kind}");
    }
});

per_backend!([file, memory, s3, azure] async fn reads_at_offsets_return_exactly_the_suffix(t) {
    let kind = t.store.kind().to_string();
    let bytes = pattern(MAX_READ_CHUNK * 5 / 2 + 11, 3);
    let digest = t
        .store
        .put_file(&t.write_input("f", &bytes), None)
        .await
        .unwrap()
        .digest;
    let size = bytes.len() as u64;
    for offset in [0, 1, size / 2, MAX_READ_CHUNK as u64, size - 1, size] {
        let read = drain(t.store.as_ref(), &digest, offset).await;
        assert!(read.error.is_none(), "{kind} @{offset}: {:?}", read.error);
        assert!(
            read.bytes[..] == bytes[offset as usize..],
            "{kind} @{offset}: got {} bytes",
            read.bytes.len()
        );
    }
    let past = t.store.read(&digest, size + 1).await.err();
    assert!(
        matches!(past, Some(StoreError::OffsetOutOfRange { offset, .. }) if offset == size + 1),
        "{kind}: {past:?}"
    );
});

per_backend!([file, memory, s3, azure] async fn missing_blobs_are_reported_as_not_found(t) {
    let kind = t.store.kind().to_string();
    let absent = BlobDigest::of_bytes(b"never stored");
    assert!(!t.store.contains(&absent).await.unwrap(), "{kind}");
    let err = t
        .store
        .read(&absent, 0)
        .await
        .err()
        .expect("read of absent blob");
    assert!(err.is_not_found(), "{kind}: {err:?}");
    let message = err.to_string();
    assert!(message.contains(&absent.hex()) && message.contains(t.store.display_url()));

    let dest = t.scratch.path().join("absent.bin");
    let err = t.store.read_to_file(&absent, &dest).await.unwrap_err();
    assert!(err.is_not_found(), "{kind}: {err:?}");
    assert!(files_under(t.scratch.path()).is_empty(), "{kind}");
});

per_backend!([file, memory, s3, azure] async fn find_missing_keeps_order_and_reports_duplicates_once(t) {
    let kind = t.store.kind().to_string();
    let a = t
        .store
        .put_file(&t.write_input("a", b"alpha"), None)
        .await
        .unwrap()
        .digest;
    let b = t
        .store
        .put_file(&t.write_input("b", b""), None)
        .await
        .unwrap()
        .digest;
    let c = BlobDigest::of_bytes(b"gamma");
    let d = BlobDigest::of_bytes(b"delta");
    let e = BlobDigest::of_bytes(b"epsilon");
    // Right hash, wrong size: not the stored blob.
    let a_wrong_size = BlobDigest { size: 99, ..a };

    let query = [c, a, d, c, b, e, d, a_wrong_size, a];
    let missing = t.store.find_missing(&query).await.unwrap();
    assert_eq!(missing, vec![c, d, e, a_wrong_size], "{kind}");
    assert!(
        t.store.find_missing(&[]).await.unwrap().is_empty(),
        "{kind}"
    );

    // More digests than the HEAD concurrency bound, in a known order.
    let many: Vec<BlobDigest> = (0..100u32)
        .map(|i| BlobDigest::of_bytes(&i.to_le_bytes()))
        .collect();
    assert_eq!(t.store.find_missing(&many).await.unwrap(), many, "{kind}");
});

per_backend!([file, memory, s3, azure] async fn put_file_of_a_missing_path_names_the_path(t) {
    let path = t.scratch.path().join("no-such-model.onnx");
    let err = t.store.put_file(&path, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-model.onnx"), "{err}");
});
