//! Blob transfer: find-missing, resumable uploads staged on local disk, verified downloads.
//!
//! An upload is appended to `<state>/uploads/<hex>-<size>.part` as it arrives; an interrupted
//! upload resumes at the part's length. When the part is complete it streams into the store,
//! which hashes it again and refuses it unless it matches the announced digest. Nothing is held
//! in memory beyond one message.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tonic::Status;
use trtfarm_proto::v1;
use trtfarm_store::{BlobDigest, ContentStore, StoreError};

use super::BoxStream;
use crate::ingest::request::parse_digest;
use crate::metrics::Metrics;

/// The gRPC status for a store error.
pub(crate) fn store_status(error: StoreError) -> Status {
    match &error {
        StoreError::NotFound { .. } => Status::not_found(error.to_string()),
        StoreError::Corrupt { .. } => Status::data_loss(error.to_string()),
        StoreError::DigestMismatch { .. } => Status::failed_precondition(error.to_string()),
        StoreError::InvalidDigest(_) => Status::invalid_argument(error.to_string()),
        _ => Status::unavailable(format!("the store: {error}")),
    }
}

/// Handles `FindMissingBlobs`.
pub(super) async fn find_missing(
    store: &Arc<dyn ContentStore>,
    request: v1::FindMissingBlobsRequest,
) -> Result<v1::FindMissingBlobsResponse, Status> {
    let digests = request
        .digests
        .iter()
        .map(|d| parse_digest(Some(d), "digest"))
        .collect::<Result<Vec<_>, _>>()?;
    let missing = store.find_missing(&digests).await.map_err(store_status)?;
    Ok(v1::FindMissingBlobsResponse {
        missing: missing.iter().map(v1::Digest::from).collect(),
    })
}

/// Handles `LocateBlob`: the blob's file, only for a caller on this daemon's Unix socket (its
/// owner, on this host) and only for a `file://` store; an empty answer otherwise.
pub(super) fn locate(
    store: &Arc<dyn ContentStore>,
    request: tonic::Request<v1::LocateBlobRequest>,
) -> Result<v1::LocateBlobResponse, Status> {
    let on_unix_socket = request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .is_some();
    let digest = parse_digest(request.get_ref().digest.as_ref(), "digest")?;
    let path = on_unix_socket
        .then(|| trtfarm_store::local_blob_file(store.display_url(), &digest))
        .flatten()
        .filter(|path| path.is_file())
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    Ok(v1::LocateBlobResponse { path })
}

/// Handles `IngestLocalFile`: the caller's file, read by the daemon, into the store if it is
/// `digest`. Only on this daemon's Unix socket, whose callers are its owner on this host.
pub(super) async fn ingest_local(
    store: &Arc<dyn ContentStore>,
    max_blob_size: u64,
    request: tonic::Request<v1::IngestLocalFileRequest>,
) -> Result<v1::UploadBlobResponse, Status> {
    if request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .is_none()
    {
        return Err(Status::failed_precondition(
            "a local file can be taken in only over the daemon's own Unix socket; upload it",
        ));
    }
    let request = request.into_inner();
    let digest = parse_digest(request.digest.as_ref(), "digest")?;
    if digest.size > max_blob_size {
        return Err(Status::resource_exhausted(format!(
            "{digest} is larger than limits.max_blob_size ({max_blob_size} bytes)"
        )));
    }
    let path = PathBuf::from(&request.path);
    // A regular file only: a FIFO or a device would hold the call (or feed it forever).
    if !path.is_absolute() || !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(Status::invalid_argument(format!(
            "`{}` is not the absolute path of a regular file",
            request.path
        )));
    }
    let put = store
        .put_file(&path, Some(digest))
        .await
        .map_err(store_status)?;
    // Not counted in trtfarm_blob_bytes_received_total: no byte crossed the connection.
    Ok(v1::UploadBlobResponse {
        digest: Some(v1::Digest::from(&put.digest)),
        stored: put.stored,
    })
}

/// Handles `DownloadBlob`.
pub(super) async fn download(
    store: &Arc<dyn ContentStore>,
    metrics: Arc<Metrics>,
    request: v1::DownloadBlobRequest,
) -> Result<BoxStream<v1::DownloadBlobResponse>, Status> {
    let digest = parse_digest(request.digest.as_ref(), "digest")?;
    if request.offset > digest.size {
        return Err(Status::out_of_range(format!(
            "offset {} is past the end of {digest}",
            request.offset
        )));
    }
    let stream = store
        .read(&digest, request.offset)
        .await
        .map_err(store_status)?;
    Ok(Box::pin(stream.map(move |chunk| match chunk {
        Ok(data) => {
            metrics.blob_bytes_sent(data.len() as u64);
            Ok(v1::DownloadBlobResponse { data })
        }
        Err(error) => Err(store_status(error)),
    })))
}

/// Uploads in progress, staged on disk. Public so the upload protocol can be driven without a
/// server (the `upload_protocol` fuzz target); the service is its only other user.
pub struct Uploads {
    dir: PathBuf,
    active: Mutex<HashSet<BlobDigest>>,
}

/// Releases an upload's claim when the upload ends, however it ends.
struct Claim<'a> {
    uploads: &'a Uploads,
    digest: BlobDigest,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut active) = self.uploads.active.lock() {
            active.remove(&self.digest);
        }
    }
}

impl Uploads {
    /// Stages uploads under `dir` (created on the first upload).
    pub fn new(dir: PathBuf) -> Uploads {
        Uploads {
            dir,
            active: Mutex::new(HashSet::new()),
        }
    }

    fn part_path(&self, digest: &BlobDigest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.part", digest.hex(), digest.size))
    }

    /// Handles `GetUploadStatus`.
    pub async fn status(
        &self,
        store: &Arc<dyn ContentStore>,
        request: v1::GetUploadStatusRequest,
    ) -> Result<v1::UploadStatus, Status> {
        let digest = parse_digest(request.digest.as_ref(), "digest")?;
        if store.contains(&digest).await.map_err(store_status)? {
            return Ok(v1::UploadStatus {
                committed_bytes: digest.size,
                complete: true,
            });
        }
        let committed = match tokio::fs::metadata(self.part_path(&digest)).await {
            Ok(meta) => meta.len().min(digest.size),
            Err(_) => 0,
        };
        Ok(v1::UploadStatus {
            committed_bytes: committed,
            complete: false,
        })
    }

    fn claim(&self, digest: BlobDigest) -> Result<Claim<'_>, Status> {
        let mut active = self
            .active
            .lock()
            .map_err(|_| Status::internal("upload table poisoned"))?;
        if !active.insert(digest) {
            return Err(Status::aborted(format!(
                "another upload of {digest} is in progress; ask GetUploadStatus and resume later"
            )));
        }
        Ok(Claim {
            uploads: self,
            digest,
        })
    }

    /// Handles `UploadBlob`: the messages of one upload, as the client sent them (an `Err` is
    /// the connection breaking).
    pub async fn upload<S>(
        &self,
        store: &Arc<dyn ContentStore>,
        metrics: &Metrics,
        max_blob_size: u64,
        mut stream: S,
    ) -> Result<v1::UploadBlobResponse, Status>
    where
        S: Stream<Item = Result<v1::UploadBlobRequest, Status>> + Unpin,
    {
        let first = stream
            .next()
            .await
            .transpose()?
            .ok_or_else(|| Status::invalid_argument("empty upload stream"))?;
        let header = first.header.as_ref().ok_or_else(|| {
            Status::invalid_argument("the first upload message must carry the header")
        })?;
        let digest = parse_digest(header.digest.as_ref(), "upload")?;
        if digest.size > max_blob_size {
            return Err(Status::resource_exhausted(format!(
                "{digest} is larger than this daemon's limit of {max_blob_size} bytes"
            )));
        }
        if store.contains(&digest).await.map_err(store_status)? {
            return Ok(v1::UploadBlobResponse {
                digest: Some(v1::Digest::from(&digest)),
                stored: false,
            });
        }
        let _claim = self.claim(digest)?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| Status::internal(format!("cannot create the upload directory: {e}")))?;
        let part = self.part_path(&digest);
        let have = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
        let offset = header.offset;
        if offset > have || offset > digest.size {
            return Err(Status::out_of_range(format!(
                "upload of {digest} resumes at {offset}, but the daemon holds only {have} bytes"
            )));
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&part)
            .await
            .map_err(|e| Status::internal(format!("cannot open {}: {e}", part.display())))?;
        // Resuming at `offset` discards anything after it.
        file.set_len(offset)
            .await
            .map_err(|e| Status::internal(format!("cannot resize {}: {e}", part.display())))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut std_file_offset = offset;
        {
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| Status::internal(format!("cannot seek {}: {e}", part.display())))?;
        }
        let mut next = Some(first);
        while let Some(message) = next {
            let data = message.data;
            std_file_offset += data.len() as u64;
            if std_file_offset > digest.size {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(Status::invalid_argument(format!(
                    "the upload sent more than the {} bytes its digest announced",
                    digest.size
                )));
            }
            metrics.blob_bytes_received(data.len() as u64);
            file.write_all(&data)
                .await
                .map_err(|e| Status::internal(format!("cannot write {}: {e}", part.display())))?;
            next = match stream.next().await.transpose() {
                Ok(message) => message,
                Err(status) => {
                    // Keep what arrived: the client resumes from GetUploadStatus.
                    let _ = file.flush().await;
                    return Err(status);
                }
            };
        }
        file.flush()
            .await
            .map_err(|e| Status::internal(format!("cannot write {}: {e}", part.display())))?;
        drop(file);
        if std_file_offset < digest.size {
            return Err(Status::failed_precondition(format!(
                "the upload of {digest} ended after {std_file_offset} bytes; resume at that offset"
            )));
        }
        let outcome = store.put_file(&part, Some(digest)).await;
        let _ = tokio::fs::remove_file(&part).await;
        let outcome = outcome.map_err(store_status)?;
        Ok(v1::UploadBlobResponse {
            digest: Some(v1::Digest::from(&outcome.digest)),
            stored: outcome.stored,
        })
    }
}
