//! The daemon's `UploadBlob` / `GetUploadStatus` protocol, driven without a server: several
//! sessions of one upload, each with a header (or none), an offset (the one `GetUploadStatus`
//! reported, or any), chunks of the real bytes or of garbage, and an end (the stream finishes or
//! the connection breaks). What must hold after every session:
//!
//! - nothing panics;
//! - the store holds the claimed digest only if it is the bytes' real digest;
//! - an `Ok` answer names the claimed digest, and the store then holds it;
//! - `GetUploadStatus` never reports more than the announced size;
//! - an honest upload that resumes where the daemon says and sends the rest completes, unless
//!   an earlier session wrote garbage into the staged part (the daemon cannot know a part is
//!   wrong before it hashes the whole; it then discards the part and the client starts over).

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tonic::Status;
use trtfarm_proto::v1;
use trtfarm_store::{BlobDigest, ContentStore};
use trtfarmd::metrics::Metrics;
use trtfarmd::serve::service::blobs::Uploads;

/// The daemon's blob-size limit in this target: small, so `SizeOff` can cross it.
const MAX_BLOB_SIZE: u64 = 1 << 16;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The blob's real bytes.
    data: Vec<u8>,
    /// What the header announces.
    claim: Claim,
    /// The upload's attempts, in order (at most 6 are run).
    sessions: Vec<Session>,
}

#[derive(Arbitrary, Debug)]
enum Claim {
    Honest,
    FlipHashBit(u8),
    SizeOff(i16),
    /// Any wire digest: text that may not be hex, any size.
    Wire {
        blake3: String,
        size: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Session {
    start: Start,
    chunks: Vec<Chunk>,
    end: End,
}

#[derive(Arbitrary, Debug, PartialEq)]
enum Start {
    /// At `GetUploadStatus`'s `committed_bytes`, as the client does.
    Resume,
    /// At any offset (folded into `0..=size + 1`).
    At(u16),
    /// A first message without a header.
    NoHeader,
}

#[derive(Arbitrary, Debug)]
enum Chunk {
    /// The next this-many real bytes.
    Next(u16),
    /// Bytes that are not the blob's.
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug, PartialEq)]
enum End {
    Finish,
    /// The connection breaks after the chunks.
    Break,
}

struct Scratch {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    metrics: Metrics,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| Scratch {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
        dir: tempfile::tempdir().expect("create a scratch directory"),
        metrics: Metrics::new(),
    })
}

fn wire(digest: &BlobDigest) -> v1::Digest {
    v1::Digest {
        blake3: digest.hex(),
        size_bytes: digest.size,
    }
}

/// The announced digest on the wire, and parsed when it parses.
fn claimed(claim: &Claim, actual: BlobDigest) -> (v1::Digest, Option<BlobDigest>) {
    let digest = match claim {
        Claim::Honest => actual,
        Claim::FlipHashBit(bit) => {
            let mut flipped = actual;
            flipped.hash[usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
            flipped
        }
        Claim::SizeOff(delta) => BlobDigest {
            size: actual.size.saturating_add_signed(i64::from(*delta)),
            ..actual
        },
        Claim::Wire { blake3, size } => {
            let on_wire = v1::Digest {
                blake3: blake3.clone(),
                size_bytes: *size,
            };
            return (on_wire, BlobDigest::parse(blake3, *size).ok());
        }
    };
    (wire(&digest), Some(digest))
}

/// One session's messages; `clean` when it is an honest continuation that ends the upload.
fn messages(
    session: &Session,
    data: &[u8],
    header: v1::Digest,
    offset: u64,
) -> (Vec<Result<v1::UploadBlobRequest, Status>>, bool) {
    let mut messages = vec![Ok(v1::UploadBlobRequest {
        header: (session.start != Start::NoHeader).then(|| v1::UploadHeader {
            digest: Some(header),
            offset,
        }),
        data: Default::default(),
    })];
    let mut cursor = usize::try_from(offset).unwrap_or(usize::MAX);
    let mut garbage = false;
    for chunk in session.chunks.iter().take(32) {
        let bytes = match chunk {
            Chunk::Next(n) => {
                let from = cursor.min(data.len());
                let to = from.saturating_add(usize::from(*n)).min(data.len());
                data[from..to].to_vec()
            }
            Chunk::Garbage(bytes) => {
                garbage = true;
                bytes.clone()
            }
        };
        cursor = cursor.saturating_add(bytes.len());
        messages.push(Ok(v1::UploadBlobRequest {
            header: None,
            data: bytes.into(),
        }));
    }
    if session.end == End::Break {
        messages.push(Err(Status::cancelled("the connection broke")));
    }
    let clean = session.start == Start::Resume
        && !garbage
        && session.end == End::Finish
        && cursor == data.len();
    (messages, clean)
}

async fn check(input: &Input, scratch: &Scratch) {
    let actual = BlobDigest::of_bytes(&input.data);
    let (header, claim) = claimed(&input.claim, actual);
    let store: Arc<dyn ContentStore> =
        trtfarm_store::open("memory://", &[]).expect("open a memory store");
    let staging = scratch.dir.path().join("uploads");
    let _ = std::fs::remove_dir_all(&staging);
    let uploads = Uploads::new(staging);
    let honest = claim == Some(actual);
    let mut tainted = false;

    for session in input.sessions.iter().take(6) {
        let status = uploads
            .status(
                &store,
                v1::GetUploadStatusRequest {
                    digest: Some(header.clone()),
                },
            )
            .await;
        if let (Ok(status), Some(claim)) = (&status, claim) {
            assert!(
                status.committed_bytes <= claim.size,
                "status reports {} of {claim}",
                status.committed_bytes
            );
        }
        let size = claim.map_or(0, |c| c.size);
        let offset = match session.start {
            Start::Resume | Start::NoHeader => status.map_or(0, |s| s.committed_bytes),
            Start::At(at) => u64::from(at) % size.saturating_add(2),
        };
        let (messages, clean) = messages(session, &input.data, header.clone(), offset);
        let answer = uploads
            .upload(
                &store,
                &scratch.metrics,
                MAX_BLOB_SIZE,
                futures::stream::iter(messages),
            )
            .await;

        if let Some(claim) = claim {
            let held = store.contains(&claim).await.expect("memory HEAD");
            assert!(!held || honest, "the store took {actual} as {claim}");
            if let Ok(response) = &answer {
                assert_eq!(response.digest.as_ref(), Some(&wire(&claim)));
                assert!(held, "an upload of {claim} was answered Ok but not stored");
            }
        } else {
            assert!(answer.is_err(), "an unparsable digest was accepted");
        }
        if honest && clean && !tainted && actual.size <= MAX_BLOB_SIZE {
            assert!(
                answer.is_ok(),
                "an honest, complete resumption failed: {answer:?}"
            );
        }
        tainted |= session
            .chunks
            .iter()
            .any(|chunk| matches!(chunk, Chunk::Garbage(_)));
    }
}

fuzz_target!(|input: Input| {
    let scratch = scratch();
    scratch.runtime.block_on(check(&input, scratch));
});
