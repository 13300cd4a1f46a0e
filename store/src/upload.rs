//! Reading a local file in bounded chunks, hashing it (blake3 + SHA-256) and optionally feeding
//! the same chunks to a multipart upload, in one pass.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::WriteMultipart;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{BlobDigest, StoreError};

/// Bytes read from the file per step (and per message to the uploader).
const FILE_READ_CHUNK: usize = 1 << 20;

/// Chunks read ahead of the uploader: the reader runs at most this far ahead.
const READ_AHEAD_CHUNKS: usize = 2;

/// Multipart parts in flight at once. Memory use of an upload is about
/// `(UPLOAD_CONCURRENCY + 1) * part size`, whatever the file size.
const UPLOAD_CONCURRENCY: usize = 4;

/// Smallest part size; S3 requires at least 5 MiB for every part but the last.
const MIN_PART_SIZE: u64 = 8 << 20;

/// Parts per upload we aim to stay under (S3 and GCS allow 10 000, leaving room for a file
/// that grows while it is read).
const MAX_PARTS: u64 = 9_000;

/// What hashing a file produced.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileHashes {
    /// blake3 and size.
    pub(crate) digest: BlobDigest,
    /// SHA-256 of the same bytes.
    pub(crate) sha256: [u8; 32],
}

/// Part size for a file of `file_len` bytes: 8 MiB, or larger (whole MiB) for files that would
/// otherwise need more than [`MAX_PARTS`] parts.
pub(crate) fn part_size(file_len: u64) -> usize {
    const MIB: u64 = 1 << 20;
    let needed = file_len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    usize::try_from(needed.max(MIN_PART_SIZE)).unwrap_or(usize::MAX)
}

/// Hashes the file at `path`; with `upload`, also writes every chunk to it (waiting for upload
/// capacity, so memory stays bounded). `upload_context` names the destination in errors.
///
/// The caller decides whether to finish or abort the upload from the returned digest.
pub(crate) async fn hash_file(
    path: &Path,
    upload: Option<&mut WriteMultipart>,
    upload_context: &str,
) -> Result<FileHashes, StoreError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(READ_AHEAD_CHUNKS);
    let tx = upload.is_some().then_some(tx);
    let owned: PathBuf = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_and_hash(&owned, tx));

    if let Some(upload) = upload {
        while let Some(chunk) = rx.recv().await {
            // Dropping `rx` on error stops the reader at its next send.
            upload
                .wait_for_capacity(UPLOAD_CONCURRENCY)
                .await
                .map_err(|source| StoreError::backend(upload_context, source))?;
            upload.put(chunk);
        }
    }

    reader.await.map_err(|join| {
        StoreError::io(
            format!("hashing {}", path.display()),
            std::io::Error::other(join),
        )
    })?
}

/// The blocking half of [`hash_file`]: reads, hashes, and sends each chunk if `tx` is given.
fn read_and_hash(path: &Path, tx: Option<mpsc::Sender<Bytes>>) -> Result<FileHashes, StoreError> {
    let mut file =
        File::open(path).map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    let mut blake3 = blake3::Hasher::new();
    let mut sha256 = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = vec![0u8; FILE_READ_CHUNK];
        let filled = read_full(&mut file, &mut buf)
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        blake3.update(&buf);
        sha256.update(&buf);
        size += filled as u64;
        if let Some(tx) = &tx
            && tx.blocking_send(Bytes::from(buf)).is_err()
        {
            // The uploader gave up; it reports its own error.
            return Err(StoreError::io(
                format!("uploading {}", path.display()),
                std::io::Error::other("upload stopped before the file was read"),
            ));
        }
        if filled < FILE_READ_CHUNK {
            break;
        }
    }
    Ok(FileHashes {
        digest: BlobDigest::new(blake3.finalize(), size),
        sha256: sha256.finalize().into(),
    })
}

/// Fills `buf` from `file` until it is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_keeps_part_count_under_the_limit() {
        assert_eq!(part_size(0), 8 << 20);
        assert_eq!(part_size(1 << 30), 8 << 20);
        let huge = 200u64 << 30; // 200 GiB
        let size = part_size(huge) as u64;
        assert!(huge.div_ceil(size) <= MAX_PARTS, "{size}");
        assert_eq!(size % (1 << 20), 0);
    }

    #[tokio::test]
    async fn hashes_match_one_shot_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..(FILE_READ_CHUNK * 2 + 7)).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let hashes = hash_file(&path, None, "unused").await.unwrap();
        assert_eq!(hashes.digest, BlobDigest::of_bytes(&bytes));
        assert_eq!(hashes.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
    }

    #[tokio::test]
    async fn missing_file_error_names_the_path() {
        let err = hash_file(Path::new("/nonexistent/model.onnx"), None, "unused")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.onnx"), "{err}");
    }
}
