//! The blob path of the daemon without a server: bytes arrive with a claimed digest (as an
//! `UploadBlob` header announces it), are stored under that digest only if they hash to it, and
//! are served only if what is stored still hashes to it.
//!
//! - `BlobDigest` parsing of arbitrary text never panics, and what parses prints back the same.
//! - `put_file` with a claimed digest (a fresh `memory://` store per input) succeeds exactly when
//!   the claim is the bytes' digest, and then reads back the same bytes from any offset.
//! - Reading arbitrary bytes stored under a claimed digest (written straight into a `file://`
//!   store's layout, as a damaged disk would) ends cleanly exactly when the claim is true: a
//!   mismatch must end in an error, never in a complete, successful stream.
//!
//! The daemon's own upload state machine (`service/blobs.rs`: header, resume offset, chunk
//! overflow, short upload) takes a tonic `Streaming` and is private to the service, so it is not
//! fuzzed here.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use trtfarm_store::{BlobDigest, ContentStore, StoreError};

#[derive(Arbitrary, Debug)]
struct Input {
    /// How the claimed digest relates to the bytes' real one.
    claim: Claim,
    /// Where the read starts (folded into `0..=size + 1`, so one past the end happens too).
    offset: u16,
    /// The uploaded or stored bytes.
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Claim {
    /// The real digest.
    Honest,
    /// The real digest with one bit of the hash flipped.
    FlipHashBit(u8),
    /// The real hash with the size moved by this much.
    SizeOff(i8),
    /// Text parsed as `blake3:<hex>/<size>`, used as the claim when it parses.
    Text(String),
}

struct Scratch {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    file_store: std::sync::Arc<dyn ContentStore>,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = tempfile::tempdir().expect("create a scratch directory");
        let url = format!("file://{}", dir.path().join("store").display());
        Scratch {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            file_store: trtfarm_store::open(&url, &[]).expect("open the file store"),
            dir,
        }
    })
}

/// The claimed digest; `None` when claimed text does not parse (checked, nothing to store).
fn claimed(claim: &Claim, actual: BlobDigest) -> Option<BlobDigest> {
    match claim {
        Claim::Honest => Some(actual),
        Claim::FlipHashBit(bit) => {
            let mut flipped = actual;
            flipped.hash[usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
            Some(flipped)
        }
        Claim::SizeOff(delta) => Some(BlobDigest {
            size: actual.size.saturating_add_signed(i64::from(*delta)),
            ..actual
        }),
        Claim::Text(text) => {
            if let Some((hex, _)) = text.split_once('/')
                && let Ok(digest) = BlobDigest::parse(hex, 7)
            {
                assert_eq!(digest.hex(), hex.to_ascii_lowercase());
            }
            let digest = text.parse::<BlobDigest>().ok()?;
            assert_eq!(digest.to_string().parse::<BlobDigest>().ok(), Some(digest));
            Some(digest)
        }
    }
}

/// Every byte a read yields, and how it ended.
async fn drain(
    store: &dyn ContentStore,
    digest: &BlobDigest,
    offset: u64,
) -> (Vec<u8>, Result<(), StoreError>) {
    let mut bytes = Vec::new();
    let mut stream = match store.read(digest, offset).await {
        Ok(stream) => stream,
        Err(error) => return (bytes, Err(error)),
    };
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(error) => return (bytes, Err(error)),
        }
    }
    (bytes, Ok(()))
}

/// `cas/blake3/<2 hex>/<64 hex>` under the file store's root.
fn blob_path(root: &Path, digest: &BlobDigest) -> PathBuf {
    let hex = digest.hex();
    root.join("cas/blake3").join(&hex[..2]).join(hex)
}

async fn check(input: &Input, scratch: &Scratch) {
    let actual = BlobDigest::of_bytes(&input.data);
    let Some(claim) = claimed(&input.claim, actual) else {
        return;
    };
    let honest = claim == actual;
    let offset = u64::from(input.offset) % claim.size.saturating_add(2);
    let expected_tail = usize::try_from(offset)
        .ok()
        .and_then(|offset| input.data.get(offset..));

    // Upload: stored under the claim only if the bytes hash to it.
    let upload = scratch.dir.path().join("upload");
    std::fs::write(&upload, &input.data).expect("write the upload");
    let memory = trtfarm_store::open("memory://", &[]).expect("open a memory store");
    match memory.put_file(&upload, Some(claim)).await {
        Ok(outcome) => {
            assert!(honest, "put_file accepted {actual} claimed as {claim}");
            assert_eq!(outcome.digest, actual);
            let (bytes, end) = drain(&*memory, &claim, offset).await;
            match expected_tail {
                Some(tail) => {
                    assert!(end.is_ok(), "reading a stored blob failed: {end:?}");
                    assert_eq!(bytes, tail);
                }
                None => assert!(end.is_err(), "a read past the end succeeded"),
            }
        }
        Err(error) => {
            assert!(!honest, "an honest upload of {actual} was refused: {error}");
            assert!(!memory.contains(&claim).await.expect("memory HEAD"));
        }
    }

    // Stored bytes under a claim: served whole only if they hash to it.
    let root = scratch.dir.path().join("store");
    let path = blob_path(&root, &claim);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the fan-out dir");
    std::fs::write(&path, &input.data).expect("write the stored blob");
    let (bytes, end) = drain(&*scratch.file_store, &claim, offset).await;
    match (honest, expected_tail) {
        (true, Some(tail)) => {
            assert!(end.is_ok(), "an intact blob was refused: {end:?}");
            assert_eq!(bytes, tail);
        }
        (true, None) => assert!(end.is_err(), "a read past the end succeeded"),
        (false, _) => {
            assert!(
                end.is_err(),
                "{actual} stored as {claim} was served without an error"
            );
            if let Some(tail) = expected_tail {
                assert!(
                    bytes.len() < tail.len() || tail.is_empty(),
                    "all bytes of a corrupt blob were served"
                );
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(root.join("quarantine"));
}

fuzz_target!(|input: Input| {
    let scratch = scratch();
    scratch.runtime.block_on(check(&input, scratch));
});
