//! Moving blobs to and from a daemon: uploads that send only what is missing and resume where
//! an interrupted one stopped; downloads verified while they stream and written atomically.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tonic::client::GrpcService;
use tonic::codegen::{Body, Bytes, StdError};
use trtfarm_proto::v1;
use trtfarm_proto::v1::farm_client::FarmClient;

/// Bytes per upload message.
const CHUNK: usize = 1 << 20;

/// blake3 and size of a local file, streamed.
pub fn digest_file(path: &Path) -> anyhow::Result<v1::Digest> {
    let mut hasher = blake3::Hasher::new();
    let size = hasher
        .update_reader(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )
        .with_context(|| format!("cannot read {}", path.display()))?
        .count();
    Ok(v1::Digest {
        blake3: hasher.finalize().to_hex().to_string(),
        size_bytes: size,
    })
}

/// What tonic asks of the transport a [`FarmClient`] calls through, named once so that a plain
/// `Channel` and one with an interceptor (a bearer token) both work with the functions here.
pub trait Transport:
    GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    >
{
}

impl<T> Transport for T where
    T: GrpcService<
            tonic::body::Body,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        >
{
}

/// Uploads `path` (whose digest is `digest`) unless the daemon already has it, resuming a
/// partial upload. Returns whether bytes were sent.
pub async fn upload_file<T: Transport>(
    client: &mut FarmClient<T>,
    path: &Path,
    digest: &v1::Digest,
) -> anyhow::Result<bool> {
    let status = client
        .get_upload_status(v1::GetUploadStatusRequest {
            digest: Some(digest.clone()),
        })
        .await?
        .into_inner();
    if status.complete {
        return Ok(false);
    }
    // The daemon on this host (its own Unix socket) reads the file itself; any other answers
    // that it cannot, and the bytes are streamed.
    if let Ok(absolute) = std::path::absolute(path) {
        let ingest = v1::IngestLocalFileRequest {
            digest: Some(digest.clone()),
            path: absolute.display().to_string(),
        };
        match client.ingest_local_file(ingest).await {
            Ok(_) => return Ok(true),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::Unimplemented
                ) => {}
            Err(status) => return Err(status.into()),
        }
    }
    let offset = status.committed_bytes;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let header = v1::UploadHeader {
        digest: Some(digest.clone()),
        offset,
    };
    let messages = futures::stream::unfold((file, Some(header)), |(mut file, header)| async move {
        let mut buffer = vec![0u8; CHUNK];
        let n = match file.read(&mut buffer).await {
            Ok(n) => n,
            // The daemon sees a short upload and refuses it; the error surfaces there.
            Err(_) => return None,
        };
        if n == 0 && header.is_none() {
            return None;
        }
        buffer.truncate(n);
        let message = v1::UploadBlobRequest {
            header,
            data: buffer.into(),
        };
        Some((message, (file, None)))
    });
    client.upload_blob(messages).await?;
    Ok(true)
}

/// Streams a blob into `dest`: written to a temporary file beside it, checked against the
/// digest, then renamed into place. On any error nothing is left at `dest`.
pub async fn download_to_file<T: Transport>(
    client: &mut FarmClient<T>,
    digest: &v1::Digest,
    dest: &Path,
) -> anyhow::Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.partial",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        std::process::id()
    ));
    // On the daemon's own host with a local store: the kernel copies the file, and the copy is
    // verified like a stream would be. Anything amiss (another host, a moved or damaged file)
    // falls back to the stream, where the daemon verifies and quarantines.
    if let Some(source) = locate(client, digest).await {
        let (copy_from, copy_to, wanted) = (source.clone(), tmp.clone(), digest.clone());
        let copied =
            tokio::task::spawn_blocking(move || copy_verified(&copy_from, &copy_to, &wanted))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r);
        match copied {
            Ok(()) => {
                tokio::fs::rename(&tmp, dest).await?;
                return Ok(());
            }
            Err(_) => {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
        }
    }
    let result = download_into(client, digest, &tmp).await;
    match result {
        Ok(()) => {
            tokio::fs::rename(&tmp, dest).await?;
            Ok(())
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(error)
        }
    }
}

/// Writes a blob to `out` (stdout, for `fetch -o -`), only after all of it has arrived and
/// been verified: a reader of a pipe never gets part of a blob, or a damaged one. The verified
/// copy waits in a temporary file, removed afterwards.
pub async fn download_to_writer<T: Transport>(
    client: &mut FarmClient<T>,
    digest: &v1::Digest,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let verified = dir.join("blob");
    let result = async {
        download_to_file(client, digest, &verified).await?;
        let mut file = std::fs::File::open(&verified)?;
        std::io::copy(&mut file, out)?;
        out.flush()?;
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A new private directory under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let dir = base.join(format!("trtfarm-fetch-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(anyhow::Error::from(error)
                    .context(format!("cannot create a directory in {}", base.display())));
            }
        }
    }
    anyhow::bail!("cannot create a temporary directory in {}", base.display())
}

/// The blob's file on this host, when the daemon says where it is.
async fn locate<T: Transport>(client: &mut FarmClient<T>, digest: &v1::Digest) -> Option<PathBuf> {
    let request = v1::LocateBlobRequest {
        digest: Some(digest.clone()),
    };
    let path = client.locate_blob(request).await.ok()?.into_inner().path;
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Copies `source` to `dest` in the kernel (`copy_file_range`, a reflink on filesystems that
/// share extents) while another thread hashes `source`, and refuses the copy unless what was
/// copied is `digest`: the guarantee of the stream, whose bytes are hashed as they arrive. Like
/// `cp`, the copy is not forced to disk (a file torn by a power cut fails the lock's digest at
/// the next `submit`, which fetches it again).
fn copy_verified(source: &Path, dest: &Path, digest: &v1::Digest) -> anyhow::Result<()> {
    let mut from = std::fs::File::open(source)?;
    let mut hashed = std::fs::File::open(source)?;
    let hashing = std::thread::spawn(move || {
        let mut hasher = blake3::Hasher::new();
        let size = std::io::copy(&mut hashed, &mut HashWriter(&mut hasher))?;
        Ok::<_, std::io::Error>((hasher.finalize().to_hex().to_string(), size))
    });
    let copied = std::io::copy(&mut from, &mut std::fs::File::create(dest)?)?;
    let (actual, size) = hashing
        .join()
        .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))??;
    anyhow::ensure!(
        actual == digest.blake3 && size == digest.size_bytes && copied == size,
        "the local copy is blake3:{actual} ({copied} bytes), not blake3:{} ({} bytes)",
        digest.blake3,
        digest.size_bytes
    );
    Ok(())
}

/// An `io::Write` that hashes what it is given.
struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn download_into<T: Transport>(
    client: &mut FarmClient<T>,
    digest: &v1::Digest,
    tmp: &Path,
) -> anyhow::Result<()> {
    let mut stream = download_stream(client, digest).await?;
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(tmp).await?);
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.message().await? {
        hasher.update(&chunk.data);
        size += chunk.data.len() as u64;
        file.write_all(&chunk.data).await?;
    }
    file.flush().await?;
    file.into_inner().sync_all().await?;
    let actual = hasher.finalize().to_hex().to_string();
    anyhow::ensure!(
        actual == digest.blake3 && size == digest.size_bytes,
        "downloaded bytes are blake3:{actual} ({size} bytes), not the requested blake3:{} ({} bytes); refused",
        digest.blake3,
        digest.size_bytes
    );
    Ok(())
}

/// The daemon's stream of the whole blob, unchecked: the caller hashes what arrives.
pub async fn download_stream<T: Transport>(
    client: &mut FarmClient<T>,
    digest: &v1::Digest,
) -> anyhow::Result<tonic::Streaming<v1::DownloadBlobResponse>> {
    let request = v1::DownloadBlobRequest {
        digest: Some(digest.clone()),
        offset: 0,
    };
    Ok(client.download_blob(request).await?.into_inner())
}
