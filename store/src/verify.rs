//! The verifying read stream: hashes every byte of a blob, yields the bytes from the requested
//! offset in bounded chunks, and withholds the last chunk until the digest and size match.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};

use crate::backend::Backend;
use crate::{BlobDigest, BlobStream, MAX_READ_CHUNK, StoreError};

/// Backend chunks smaller than this are copied together before they are yielded, so a backend
/// that delivers small network frames does not turn into thousands of tiny messages downstream.
const MIN_YIELD_CHUNK: usize = 256 << 10;

/// Wraps the object's byte stream `chunks` in verification; see [`crate::ContentStore::read`].
pub(crate) fn verifying_stream(
    backend: Arc<Backend>,
    digest: BlobDigest,
    offset: u64,
    chunks: BoxStream<'static, object_store::Result<Bytes>>,
) -> BlobStream {
    let verifier = Verifier {
        backend,
        digest,
        offset,
        chunks,
        hasher: blake3::Hasher::new(),
        seen: 0,
        rechunker: Rechunker::default(),
        phase: Phase::Streaming,
    };
    stream::unfold(verifier, |mut verifier| async move {
        let item = verifier.next_item().await?;
        Some((item, verifier))
    })
    .boxed()
}

/// Where the verifier is.
enum Phase {
    /// Reading from the backend; the newest ready chunk is withheld.
    Streaming,
    /// The whole blob matched its digest; the remaining ready chunks may go out.
    Verified,
    /// The stream has ended (after success, a backend error, or corruption).
    Done,
}

struct Verifier {
    backend: Arc<Backend>,
    digest: BlobDigest,
    offset: u64,
    chunks: BoxStream<'static, object_store::Result<Bytes>>,
    hasher: blake3::Hasher,
    /// Bytes read (and hashed) from the backend so far.
    seen: u64,
    rechunker: Rechunker,
    phase: Phase,
}

impl Verifier {
    /// The next item for the consumer, or `None` at the end.
    async fn next_item(&mut self) -> Option<Result<Bytes, StoreError>> {
        loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Verified => {
                    let chunk = self.rechunker.ready.pop_front();
                    if chunk.is_none() {
                        self.phase = Phase::Done;
                    }
                    return chunk.map(Ok);
                }
                Phase::Streaming => {}
            }
            // Keep one chunk back: it is only released once the whole blob has verified.
            if self.rechunker.ready.len() > 1 {
                return self.rechunker.ready.pop_front().map(Ok);
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => {
                    if let Err(corrupt) = self.absorb(chunk).await {
                        return Some(Err(corrupt));
                    }
                }
                Some(Err(source)) => {
                    self.phase = Phase::Done;
                    return Some(Err(StoreError::backend(
                        format!("reading {}", self.backend.describe_blob(&self.digest)),
                        source,
                    )));
                }
                None => {
                    if let Err(corrupt) = self.finish().await {
                        return Some(Err(corrupt));
                    }
                }
            }
        }
    }

    /// Hashes a backend chunk and queues the part at or after `offset`.
    async fn absorb(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let start = self.seen;
        let end = start + chunk.len() as u64;
        if end > self.digest.size {
            return Err(self
                .corrupt(format!(
                    "the stored object is longer than {} bytes",
                    self.digest.size
                ))
                .await);
        }
        // Hashing inline: at most one backend chunk (1 MiB locally) per poll, well under a
        // millisecond with blake3's SIMD.
        self.hasher.update(&chunk);
        self.seen = end;
        if end > self.offset {
            let skip = usize::try_from(self.offset.saturating_sub(start)).unwrap_or(chunk.len());
            self.rechunker.push(chunk.slice(skip..));
        }
        Ok(())
    }

    /// Checks size and digest once the backend stream has ended.
    async fn finish(&mut self) -> Result<(), StoreError> {
        if self.seen != self.digest.size {
            return Err(self
                .corrupt(format!("the stored object ended after {} bytes", self.seen))
                .await);
        }
        let actual = BlobDigest::new(self.hasher.finalize(), self.seen);
        if actual != self.digest {
            return Err(self
                .corrupt(format!("the stored bytes hash to {actual}"))
                .await);
        }
        self.rechunker.flush();
        self.phase = Phase::Verified;
        Ok(())
    }

    /// Drops everything not yet yielded, quarantines the blob and builds the error to yield.
    async fn corrupt(&mut self, actual: String) -> StoreError {
        self.phase = Phase::Done;
        self.rechunker = Rechunker::default();
        self.backend
            .quarantine_after_failed_check(&self.digest, &actual)
            .await;
        StoreError::Corrupt {
            digest: self.digest,
            actual,
            store: self.backend.display_url.clone(),
        }
    }
}

/// Turns backend chunks of any size into chunks of at most [`MAX_READ_CHUNK`] bytes, splitting
/// large ones without copying and gathering small ones up to [`MIN_YIELD_CHUNK`].
#[derive(Default)]
struct Rechunker {
    /// Small pieces being gathered.
    pending: BytesMut,
    /// Chunks ready to yield, in order.
    ready: VecDeque<Bytes>,
}

impl Rechunker {
    fn push(&mut self, mut bytes: Bytes) {
        while !bytes.is_empty() {
            if self.pending.is_empty() && bytes.len() >= MIN_YIELD_CHUNK {
                let take = bytes.len().min(MAX_READ_CHUNK);
                self.ready.push_back(bytes.split_to(take));
                continue;
            }
            let take = bytes.len().min(MAX_READ_CHUNK - self.pending.len());
            self.pending.extend_from_slice(&bytes.split_to(take));
            if self.pending.len() >= MIN_YIELD_CHUNK {
                self.ready.push_back(self.pending.split().freeze());
            }
        }
    }

    /// Moves any gathered remainder to `ready`.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.ready.push_back(self.pending.split().freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rechunk(inputs: &[usize]) -> Vec<usize> {
        let mut rechunker = Rechunker::default();
        let mut expected = Vec::new();
        for (i, &len) in inputs.iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            expected.extend_from_slice(&bytes);
            rechunker.push(Bytes::from(bytes));
        }
        rechunker.flush();
        let out: Vec<Bytes> = rechunker.ready.into_iter().collect();
        assert_eq!(out.concat(), expected, "bytes or order changed");
        out.iter().map(Bytes::len).collect()
    }

    #[test]
    fn large_chunks_are_split_to_the_bound() {
        assert_eq!(
            rechunk(&[MAX_READ_CHUNK * 2 + 5]),
            vec![MAX_READ_CHUNK, MAX_READ_CHUNK, 5]
        );
    }

    #[test]
    fn small_chunks_are_gathered() {
        let sizes = rechunk(&[8 << 10; 100]);
        assert_eq!(sizes.iter().sum::<usize>(), 800 << 10);
        assert!(sizes.len() <= 4, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= MAX_READ_CHUNK));
    }

    #[test]
    fn mixed_chunks_keep_order_and_bound() {
        let sizes = rechunk(&[10, MAX_READ_CHUNK + 3, 1, MIN_YIELD_CHUNK, 0, 7]);
        assert!(
            sizes.iter().all(|&s| s > 0 && s <= MAX_READ_CHUNK),
            "{sizes:?}"
        );
    }
}
