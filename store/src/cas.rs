//! The blob half of the store: existence checks, uploads of local files, verified reads.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::{GetResult, GetResultPayload, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;

use crate::backend::Backend;
use crate::upload::{hash_file, part_size};
use crate::{BlobDigest, BlobStream, MAX_READ_CHUNK, PutOutcome, StoreError, verify};

/// HEAD requests in flight at once in [`Backend::find_missing`].
const FIND_MISSING_CONCURRENCY: usize = 32;

impl Backend {
    /// Whether the blob exists with the digest's size.
    pub(crate) async fn contains(&self, digest: &BlobDigest) -> Result<bool, StoreError> {
        match self.store.head(&self.layout.blob(digest)).await {
            Ok(meta) if meta.size == digest.size => Ok(true),
            Ok(meta) => {
                // A wrong-sized object counts as absent, so the next upload overwrites it.
                tracing::warn!(
                    digest = %digest, store = %self.display_url, stored_size = meta.size,
                    "stored blob has the wrong size; treating it as missing"
                );
                Ok(false)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::backend(
                format!("checking for {}", self.describe_blob(digest)),
                source,
            )),
        }
    }

    /// The absent digests, deduplicated, in first-seen order.
    pub(crate) async fn find_missing(
        &self,
        digests: &[BlobDigest],
    ) -> Result<Vec<BlobDigest>, StoreError> {
        let mut seen = std::collections::HashSet::with_capacity(digests.len());
        let unique: Vec<BlobDigest> = digests
            .iter()
            .copied()
            .filter(|d| seen.insert(*d))
            .collect();
        // `buffered` keeps input order while running the HEADs concurrently.
        let present: Vec<bool> = stream::iter(
            unique
                .iter()
                .copied()
                .map(|d| async move { self.contains(&d).await }),
        )
        .buffered(FIND_MISSING_CONCURRENCY)
        .try_collect()
        .await?;
        Ok(unique
            .into_iter()
            .zip(present)
            .filter_map(|(digest, present)| (!present).then_some(digest))
            .collect())
    }

    /// Uploads the file at `path` under its digest unless it is already present.
    pub(crate) async fn put_file(
        &self,
        path: &Path,
        expected: Option<BlobDigest>,
    ) -> Result<PutOutcome, StoreError> {
        // Without an expected digest the destination path is unknown until the file is hashed.
        let (target, first_pass) = match expected {
            Some(digest) => (digest, None),
            None => {
                let hashes = hash_file(path, None, "").await?;
                (hashes.digest, Some(hashes))
            }
        };
        let what = match first_pass {
            Some(_) => format!("file {} (changed while it was uploaded)", path.display()),
            None => format!("file {}", path.display()),
        };
        let mismatch = |actual: BlobDigest| StoreError::DigestMismatch {
            expected: target,
            actual,
            what: what.clone(),
        };

        let file_len = tokio::fs::metadata(path)
            .await
            .map_err(|e| StoreError::io(format!("reading metadata of {}", path.display()), e))?
            .len();
        if file_len != target.size {
            // Certain to mismatch: hash only for the error message, upload nothing.
            let hashes = hash_file(path, None, "").await?;
            if hashes.digest != target {
                return Err(mismatch(hashes.digest));
            }
        }
        if self.contains(&target).await? {
            // Already stored: hash anyway, for SHA-256 and to check the caller's claim.
            let hashes = match first_pass {
                Some(hashes) => hashes,
                None => hash_file(path, None, "").await?,
            };
            if hashes.digest != target {
                return Err(mismatch(hashes.digest));
            }
            return Ok(PutOutcome {
                digest: target,
                sha256: hashes.sha256,
                stored: false,
            });
        }

        let location = self.layout.blob(&target);
        let context = format!(
            "uploading {} to {}",
            path.display(),
            self.describe_blob(&target)
        );
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|source| StoreError::backend(&context, source))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size(target.size));
        let hashed = hash_file(path, Some(&mut writer), &context).await;
        match hashed {
            Ok(hashes) if hashes.digest == target => {
                // Completion is the publish step: the blob appears only now, whole and verified.
                let stored = match writer.finish().await {
                    Ok(_) => true,
                    // Azure Blob drops every uncommitted block of a blob when any upload of it
                    // commits, so of two concurrent uploads of one blob the later commit fails
                    // (InvalidBlockList). Blobs are immutable by digest: if it is there now,
                    // another writer published these same bytes and this upload is done.
                    Err(source) => match self.contains(&target).await {
                        Ok(true) => {
                            tracing::debug!(
                                digest = %target, store = %self.display_url, error = %source,
                                "upload lost a race to a concurrent upload of the same blob"
                            );
                            false
                        }
                        _ => return Err(StoreError::backend(&context, source)),
                    },
                };
                Ok(PutOutcome {
                    digest: target,
                    sha256: hashes.sha256,
                    stored,
                })
            }
            Ok(hashes) => {
                abort_upload(writer, &context).await;
                Err(mismatch(hashes.digest))
            }
            Err(err) => {
                abort_upload(writer, &context).await;
                Err(err)
            }
        }
    }
}

/// Aborts an unfinished upload so nothing is published; a failed abort is only logged (the
/// object was never completed, so at worst the backend keeps orphaned parts).
async fn abort_upload(writer: WriteMultipart, context: &str) {
    if let Err(error) = writer.abort().await {
        tracing::warn!(%error, "aborting upload failed ({context}); nothing was published");
    }
}

/// Opens a verifying stream over the blob from `offset`.
pub(crate) async fn read(
    backend: &Arc<Backend>,
    digest: &BlobDigest,
    offset: u64,
) -> Result<BlobStream, StoreError> {
    if offset > digest.size {
        return Err(StoreError::OffsetOutOfRange {
            digest: *digest,
            offset,
        });
    }
    let got = match backend.store.get(&backend.layout.blob(digest)).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(StoreError::NotFound {
                what: backend.describe_blob(digest),
            });
        }
        Err(source) => {
            return Err(StoreError::backend(
                format!("reading {}", backend.describe_blob(digest)),
                source,
            ));
        }
    };
    if got.meta.size != digest.size {
        let actual = format!("the stored object is {} bytes", got.meta.size);
        backend.quarantine_after_failed_check(digest, &actual).await;
        return Err(StoreError::Corrupt {
            digest: *digest,
            actual,
            store: backend.display_url.clone(),
        });
    }
    Ok(verify::verifying_stream(
        Arc::clone(backend),
        *digest,
        offset,
        backend_chunks(got),
    ))
}

/// The object's bytes as a stream. Local files are read in [`MAX_READ_CHUNK`] steps (the
/// backend's own file stream uses 8 KiB steps).
fn backend_chunks(got: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    match got.payload {
        GetResultPayload::File(file, path) => {
            stream::try_unfold((file, path), |(mut file, path)| async move {
                tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let mut buf = Vec::with_capacity(MAX_READ_CHUNK);
                    (&mut file)
                        .take(MAX_READ_CHUNK as u64)
                        .read_to_end(&mut buf)
                        .map_err(|source| object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: format!("reading {}: {source}", path.display()).into(),
                        })?;
                    Ok(if buf.is_empty() {
                        None
                    } else {
                        Some((Bytes::from(buf), (file, path)))
                    })
                })
                .await
                .map_err(|source| object_store::Error::JoinError { source })?
            })
            .boxed()
        }
        GetResultPayload::Stream(_) => got.into_stream(),
    }
}

/// Copies a verified blob into `dest` through a temporary file in the same directory.
pub(crate) async fn read_to_file(
    backend: &Arc<Backend>,
    digest: &BlobDigest,
    dest: &Path,
) -> Result<(), StoreError> {
    let mut blob = read(backend, digest, 0).await?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = dest.file_name().ok_or_else(|| {
        StoreError::io(
            format!("writing {}", dest.display()),
            std::io::Error::other("the destination has no file name"),
        )
    })?;
    // Dropping `temp_path` on any early return deletes the partial file.
    let (file, temp_path) = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io(format!("creating a temporary file in {}", dir.display()), e))?
        .into_parts();
    let write_err = |e| StoreError::io(format!("writing {}", temp_path.display()), e);
    let mut file = tokio::fs::File::from_std(file);
    while let Some(chunk) = blob.next().await {
        file.write_all(&chunk?).await.map_err(write_err)?;
    }
    file.flush().await.map_err(write_err)?;
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    temp_path.persist(dest).map_err(|e| {
        StoreError::io(
            format!("renaming {} to {}", e.path.display(), dest.display()),
            e.error,
        )
    })?;
    // The file is complete and verified; a failed directory sync only weakens crash safety.
    let dir = dir.to_path_buf();
    let synced = tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all()).await;
    if !matches!(synced, Ok(Ok(()))) {
        tracing::warn!(dest = %dest.display(), "could not fsync the destination directory");
    }
    Ok(())
}
