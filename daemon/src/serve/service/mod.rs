//! The `trtfarm.v1.Farm` gRPC service: a thin layer that checks requests, maps errors to gRPC
//! codes and delegates to the farm (jobs) and the store (blobs).

pub mod blobs;
mod watch;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};
use trtfarm_proto::v1;
use trtfarm_store::ActionKey;

use crate::metrics::Metrics;
use crate::schedule::Farm;

/// What `GetCapabilities` reports beyond what the farm knows.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Largest blob accepted.
    pub max_blob_size: u64,
    /// Jobs that may wait.
    pub max_queued_jobs: u32,
    /// Longest build deadline.
    pub max_build_timeout_seconds: u64,
    /// Build log bytes kept per job.
    pub max_log_size: u64,
    /// Input files per request.
    pub max_inputs: u32,
}

/// The service implementation.
pub struct FarmService {
    farm: Arc<Farm>,
    metrics: Arc<Metrics>,
    limits: ServiceLimits,
    uploads: blobs::Uploads,
}

impl FarmService {
    /// A service over `farm`, staging uploads under `upload_dir`.
    pub fn new(
        farm: Arc<Farm>,
        metrics: Arc<Metrics>,
        limits: ServiceLimits,
        upload_dir: PathBuf,
    ) -> FarmService {
        FarmService {
            farm,
            metrics,
            limits,
            uploads: blobs::Uploads::new(upload_dir),
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl v1::farm_server::Farm for FarmService {
    async fn get_capabilities(
        &self,
        _request: Request<v1::GetCapabilitiesRequest>,
    ) -> Result<Response<v1::Capabilities>, Status> {
        let store = self.farm.store();
        let toolchains = self
            .farm
            .inventory()
            .rows
            .iter()
            .map(|row| v1::Toolchain {
                flavour: row.flavour.to_string(),
                version: row.version.map(|v| v.to_string()).unwrap_or_default(),
                library_digest: row.library_digest.map(|d| d.hex()).unwrap_or_default(),
                error: row.error.clone().unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(v1::Capabilities {
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            api_versions: vec![v1::API_VERSION.to_string()],
            action_key_version: crate::ingest::action_key::ACTION_KEY_VERSION,
            toolchains,
            gpus: self.farm.inventory().gpus.wire(),
            gpu_host: Some(self.farm.inventory().gpus.wire_host()),
            store_kind: store.kind().to_string(),
            store_url: store.display_url().to_string(),
            limits: Some(v1::Limits {
                max_queued_jobs: self.limits.max_queued_jobs,
                max_blob_bytes: self.limits.max_blob_size,
                max_build_timeout_seconds: self.limits.max_build_timeout_seconds,
                max_log_bytes: self.limits.max_log_size,
                max_inputs: self.limits.max_inputs,
            }),
            slots: self.farm.slots(),
        }))
    }

    async fn find_missing_blobs(
        &self,
        request: Request<v1::FindMissingBlobsRequest>,
    ) -> Result<Response<v1::FindMissingBlobsResponse>, Status> {
        blobs::find_missing(self.farm.store(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_upload_status(
        &self,
        request: Request<v1::GetUploadStatusRequest>,
    ) -> Result<Response<v1::UploadStatus>, Status> {
        self.uploads
            .status(self.farm.store(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn upload_blob(
        &self,
        request: Request<Streaming<v1::UploadBlobRequest>>,
    ) -> Result<Response<v1::UploadBlobResponse>, Status> {
        if self.farm.is_draining() {
            return Err(Status::unavailable("the daemon is shutting down"));
        }
        self.uploads
            .upload(
                self.farm.store(),
                &self.metrics,
                self.limits.max_blob_size,
                request.into_inner(),
            )
            .await
            .map(Response::new)
    }

    type DownloadBlobStream = BoxStream<v1::DownloadBlobResponse>;

    async fn download_blob(
        &self,
        request: Request<v1::DownloadBlobRequest>,
    ) -> Result<Response<Self::DownloadBlobStream>, Status> {
        blobs::download(
            self.farm.store(),
            Arc::clone(&self.metrics),
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn locate_blob(
        &self,
        request: Request<v1::LocateBlobRequest>,
    ) -> Result<Response<v1::LocateBlobResponse>, Status> {
        blobs::locate(self.farm.store(), request).map(Response::new)
    }

    async fn ingest_local_file(
        &self,
        request: Request<v1::IngestLocalFileRequest>,
    ) -> Result<Response<v1::UploadBlobResponse>, Status> {
        if self.farm.is_draining() {
            return Err(Status::unavailable("the daemon is shutting down"));
        }
        blobs::ingest_local(self.farm.store(), self.limits.max_blob_size, request)
            .await
            .map(Response::new)
    }

    async fn submit(
        &self,
        request: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitResponse>, Status> {
        self.farm
            .submit(request.into_inner())
            .await
            .map(Response::new)
    }

    type WatchJobStream = BoxStream<v1::JobEvent>;

    async fn watch_job(
        &self,
        request: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = request.into_inner().job_id;
        if let Some(shared) = self.farm.shared() {
            // Fails here, not inside the stream, for a job the farm never had.
            shared.get_job(id).await?;
            return Ok(Response::new(Box::pin(shared.watch(id))));
        }
        let (now, receiver) = self.farm.watch(id)?;
        Ok(Response::new(watch::job_events(
            Arc::clone(&self.farm),
            id,
            now,
            receiver,
        )))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        self.farm
            .get_job(request.into_inner().job_id)
            .await
            .map(Response::new)
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n.min(10_000) as usize,
        };
        let jobs = self.farm.list_jobs(limit).await?;
        Ok(Response::new(v1::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        self.farm
            .cancel(request.into_inner().job_id)
            .await
            .map(Response::new)
    }

    async fn get_farm(
        &self,
        _request: Request<v1::GetFarmRequest>,
    ) -> Result<Response<v1::FarmStatus>, Status> {
        self.farm.farm_status().await.map(Response::new)
    }

    async fn list_timing_caches(
        &self,
        request: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::TimingCacheLine>, Status> {
        self.farm
            .timing_cache_line(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_timing_cache(
        &self,
        request: Request<v1::GetTimingCacheRequest>,
    ) -> Result<Response<v1::TimingCacheVersion>, Status> {
        self.farm
            .timing_cache_version(request.into_inner().digest.as_ref())
            .await
            .map(Response::new)
    }

    async fn get_action_result(
        &self,
        request: Request<v1::GetActionResultRequest>,
    ) -> Result<Response<v1::ActionResult>, Status> {
        let text = request.into_inner().action_key;
        let key = ActionKey::parse(&text)
            .map_err(|e| Status::invalid_argument(format!("action key `{text}`: {e}")))?;
        self.farm
            .cached_result(&key)
            .await
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no complete result for action key {text}")))
    }
}
