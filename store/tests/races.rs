//! Racing writers on one store, each with its own client (as separate daemons would have).
//!
//! The design relies on two things, and these tests show both hold on every backend:
//!
//! - **Action results are create-if-absent, first writer wins.** On `file://`, `memory://` and
//!   Azure Blob (Azurite) the create is atomic, so exactly one racer reports
//!   [`Published::Created`] and the stored result is that racer's. On S3 the create is a
//!   conditional PUT (`If-None-Match: *`); s3s-fs checks that condition before it writes rather
//!   than atomically, so several racers may report `Created` and the last rename wins. That is
//!   still correct for the farm: every racer gets `Ok`, the stored result is exactly one racer's
//!   complete payload (never a mix), it decodes as the daemon decodes it, and every blob it names
//!   is present and verifies. Results for one action key are interchangeable, so which valid one
//!   wins does not matter. On s3s-fs the tests therefore assert validity, not a single winner.
//! - **Blobs are immutable by digest.** Racing uploads of the same bytes all succeed and leave
//!   one intact blob that verifies on read, whatever the backend's multipart semantics.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{TestStore, drain, pattern, per_backend};
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;
use trtfarm_proto::v1;
use trtfarm_store::{ActionKey, BlobDigest, ContentStore, Published};

/// Concurrent writers per round.
const RACERS: usize = 8;

/// Rounds per test: each round is a fresh key, a fresh race.
const ROUNDS: usize = 3;

/// One racer's candidate result: its engine (already uploaded, as the daemon uploads blobs
/// before the action result) and the encoded result naming it.
struct Candidate {
    engine: Vec<u8>,
    encoded: Bytes,
}

/// Uploads a distinct engine per racer and encodes the action result the daemon would publish.
async fn candidates(t: &TestStore, key: &ActionKey, round: usize) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(RACERS);
    for racer in 0..RACERS {
        let engine = pattern(4096 + racer, (round * RACERS + racer) as u64);
        let path = t.write_input(&format!("engine-{round}-{racer}.plan"), &engine);
        let put = t.store.put_file(&path, None).await.unwrap();
        let result = v1::ActionResult {
            action_key: key.hex(),
            engine: Some(wire(&put.digest)),
            engine_sha256: hex(&put.sha256),
            built_by: format!("racer-{racer}"),
            ..Default::default()
        };
        out.push(Candidate {
            engine,
            encoded: prost::Message::encode_to_vec(&result).into(),
        });
    }
    out
}

/// Checks a stored result the way the daemon's cache lookup does (decode, parse every digest,
/// all blobs present), and that its engine reads back verified; returns the racer it names.
async fn verify_stored(store: &dyn ContentStore, stored: Bytes, candidates: &[Candidate]) -> usize {
    let result = <v1::ActionResult as prost::Message>::decode(stored.clone())
        .expect("the stored action result decodes");
    let racer: usize = result
        .built_by
        .strip_prefix("racer-")
        .and_then(|n| n.parse().ok())
        .expect("the result names its racer");
    assert!(
        stored == candidates[racer].encoded,
        "the stored result is not byte-identical to racer {racer}'s payload"
    );
    let wire = result.engine.expect("the result names an engine");
    let engine = BlobDigest::parse(&wire.blake3, wire.size_bytes).expect("a valid digest");
    assert!(store.find_missing(&[engine]).await.unwrap().is_empty());
    let read = drain(store, &engine, 0).await;
    assert!(read.error.is_none(), "{:?}", read.error);
    assert!(
        read.bytes == candidates[racer].engine,
        "engine bytes differ"
    );
    racer
}

per_backend!([file, memory, s3, azure]
/// Many writers publish different valid results for one key at once.
async fn racing_action_results_leave_one_valid_result(t) {
    let kind = t.kind();
    // s3s-fs evaluates `If-None-Match: *` before writing, not atomically (see the file's docs).
    let atomic_create = kind != "s3";
    for round in 0..ROUNDS {
        let key = ActionKey(*blake3::hash(format!("race-{round}").as_bytes()).as_bytes());
        let candidates = candidates(&t, &key, round).await;
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = candidates
            .iter()
            .map(|candidate| {
                let store = t.another_client();
                let barrier = Arc::clone(&barrier);
                let encoded = candidate.encoded.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.put_action_result(&key, encoded).await
                })
            })
            .collect();
        let mut created = Vec::new();
        for (racer, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(Published::Created) => created.push(racer),
                Ok(Published::AlreadyExisted) => {}
                Err(e) => panic!("{kind} round {round}: racer {racer} failed: {e}"),
            }
        }

        let stored = t.store.get_action_result(&key).await.unwrap();
        let stored = stored.unwrap_or_else(|| panic!("{kind} round {round}: nothing stored"));
        let named = verify_stored(t.store.as_ref(), stored, &candidates).await;
        assert!(
            created.contains(&named),
            "{kind} round {round}: the stored result is racer {named}'s, but only {created:?} \
             reported creating it"
        );
        if atomic_create {
            assert_eq!(created, vec![named], "{kind} round {round}: one winner");
        }
        // A later writer still finds the result there and leaves it alone.
        let late = t
            .store
            .put_action_result(&key, candidates[(named + 1) % RACERS].encoded.clone())
            .await
            .unwrap();
        assert_eq!(late, Published::AlreadyExisted, "{kind} round {round}");
    }
});

per_backend!([file, memory, s3, azure]
/// Many writers upload the same bytes at once; one intact blob remains.
async fn racing_uploads_of_one_blob_leave_it_intact(t) {
    let kind = t.kind();
    // Several multipart parts (8 MiB each), so parts of different uploads can interleave.
    let bytes = pattern((20 << 20) + 123, 99);
    let expected = BlobDigest::of_bytes(&bytes);
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|racer| {
            let store = t.another_client();
            let barrier = Arc::clone(&barrier);
            let path = t.write_input(&format!("copy-{racer}"), &bytes);
            // Half the racers know the digest, half learn it by hashing.
            let claim = (racer % 2 == 0).then_some(expected);
            tokio::spawn(async move {
                barrier.wait().await;
                store.put_file(&path, claim).await
            })
        })
        .collect();
    let mut stored = 0;
    for (racer, task) in tasks.into_iter().enumerate() {
        let outcome = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{kind}: racer {racer} failed: {e}"));
        assert_eq!((outcome.digest, outcome.sha256), (expected, sha256), "{kind}");
        stored += usize::from(outcome.stored);
    }
    assert!(stored >= 1, "{kind}: nobody stored the blob");

    assert!(t.store.contains(&expected).await.unwrap(), "{kind}");
    let read = drain(t.store.as_ref(), &expected, 0).await;
    assert!(read.error.is_none(), "{kind}: {:?}", read.error);
    assert!(read.bytes == bytes, "{kind}: the blob's bytes changed");
    if let Some(raw) = &t.raw {
        let quarantined = raw.quarantined().await;
        assert!(quarantined.is_empty(), "{kind}: {quarantined:?}");
    }
});

fn wire(digest: &BlobDigest) -> v1::Digest {
    v1::Digest {
        blake3: digest.hex(),
        size_bytes: digest.size,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
