//! Publishing a finished build: its blobs first, the action result last (create-if-absent), so
//! a result is never visible before everything it names.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use trtfarm_build_protocol::{
    BuilderDone, LAYER_LISTING_FILE, LAYERS_FILE, PLAN_FILE, TIMING_CACHE_FILE,
};
use trtfarm_proto::v1;
use trtfarm_store::{BlobDigest, Published, StoreError};

use crate::schedule::queue::Resource;
use crate::schedule::{Farm, failure};

pub mod provenance;
use crate::build::failure_message::layer_info_unavailable;
use crate::build::prepare::PreparedModel;
use crate::ingest::request::{PreparedBuild, parse_digest};
use crate::publish::provenance::{GpuRun, Provenance, Subject, hex};

type Outcome = Result<v1::ActionResult, v1::Failure>;

/// When and where a build ran.
pub(crate) struct Slot {
    /// When it started.
    pub(crate) started: SystemTime,
    /// What it ran on.
    pub(crate) resource: Resource,
    /// The build, for the fence of a build claimed from a farm.
    pub(crate) build: crate::schedule::queue::BuildId,
}

/// What a successful build left to publish.
#[derive(Clone, Copy)]
pub(crate) struct BuildOutputs<'a> {
    /// The build's scratch directory (the builder's outputs are in its `out/`).
    pub(crate) scratch: &'a Path,
    /// The build log as written so far.
    pub(crate) log_path: &'a Path,
    /// Whether the log file exists.
    pub(crate) log_written: bool,
    /// What the builder reported.
    pub(crate) done: &'a BuilderDone,
    /// The converted model the build used, already in the store.
    pub(crate) converted: Option<&'a PreparedModel>,
}

fn infrastructure(message: impl Into<String>) -> v1::Failure {
    failure(v1::FailureKind::Infrastructure, message, Vec::new())
}

/// Every blob an action result names.
pub(crate) fn result_digests(result: &v1::ActionResult) -> Result<Vec<BlobDigest>, tonic::Status> {
    result
        .blobs()
        .map(|(what, digest)| parse_digest(Some(digest), what))
        .collect()
}

impl Farm {
    /// Stores the builder's outputs and then the action result. Blobs go first, so a result is
    /// never visible before everything it names.
    pub(crate) async fn publish(
        &self,
        prepared: &PreparedBuild,
        outputs: &BuildOutputs<'_>,
        slot: &Slot,
    ) -> Outcome {
        let BuildOutputs {
            scratch,
            log_path,
            log_written,
            done,
            converted,
        } = *outputs;
        let started = slot.started;
        check_libraries(prepared, done).await?;
        let claimed = BlobDigest::parse(&done.plan_blake3, done.plan_size)
            .map_err(|e| infrastructure(format!("the builder reported a bad plan digest: {e}")))?;
        let put = |what: &'static str, path: PathBuf, expected: Option<BlobDigest>| async move {
            self.publishing
                .put_file(&path, expected)
                .await
                .map_err(|e| store_error(what, e))
        };
        // The plan is re-hashed while it streams into the store: a builder that lied about its
        // digest, or a plan damaged on disk, is refused here.
        let engine = put("engine plan", scratch.join(PLAN_FILE), Some(claimed)).await?;
        let layer_info = if done.layer_info {
            Some(put("layer information", scratch.join(LAYERS_FILE), None).await?)
        } else {
            None
        };
        let timing_cache = if done.timing_cache {
            Some(
                self.record_timing_cache(prepared, &scratch.join(TIMING_CACHE_FILE))
                    .await?,
            )
        } else {
            None
        };
        let layer_listing = if done.layer_listing {
            Some(put("layer listing", scratch.join(LAYER_LISTING_FILE), None).await?)
        } else {
            None
        };
        // The converted model is in the store already (the prepare step put it there).
        let transformed_model = converted
            .map(|model| model.model.digest())
            .transpose()
            .map_err(|e| infrastructure(format!("the converted model's record: {e}")))?;
        if !log_written {
            // An empty log is still a log: every result names one.
            tokio::fs::write(log_path, b"")
                .await
                .map_err(|e| infrastructure(format!("cannot write the build log: {e}")))?;
        }
        let build_log = put("build log", log_path.to_path_buf(), None).await?;
        let finished = SystemTime::now();

        let mut byproducts = vec![Subject::new("build.log", &build_log.digest, None)];
        if let Some(layers) = &layer_info {
            byproducts.push(Subject::new("layers.json", &layers.digest, None));
        }
        if let Some(cache) = &timing_cache {
            byproducts.push(Subject::new("timing-cache.bin", cache, None));
        }
        if let Some(listing) = &layer_listing {
            byproducts.push(Subject::new("layers.txt", &listing.digest, None));
        }
        if let Some(model) = &transformed_model {
            byproducts.push(Subject::new("model.transformed.onnx", model, None));
        }
        let statement = Provenance {
            prepared,
            engine: Subject::new("engine.plan", &engine.digest, Some(&engine.sha256)),
            byproducts,
            host: &self.host,
            started,
            finished,
            gpu: match slot.resource {
                Resource::Gpu(index) => self.inventory.gpus.get(index).map(|gpu| GpuRun {
                    uuid: &gpu.uuid,
                    multiprocessors: gpu.multiprocessors,
                    mps_percentage: prepared.variant.settings.mps_percentage,
                    context: done.gpu_context.as_deref(),
                }),
                Resource::Cpu => None,
            },
        }
        .statement();
        let provenance_path = scratch.join("provenance.json");
        tokio::fs::write(&provenance_path, statement)
            .await
            .map_err(|e| infrastructure(format!("cannot write the provenance record: {e}")))?;
        let provenance = put("provenance record", provenance_path, None).await?;

        let result = v1::ActionResult {
            action_key: prepared.key.hex(),
            engine: Some(v1::Digest::from(&engine.digest)),
            engine_sha256: hex(&engine.sha256),
            build_log: Some(v1::Digest::from(&build_log.digest)),
            layer_info: layer_info.as_ref().map(|l| v1::Digest::from(&l.digest)),
            layer_info_unavailable: (done.layer_info_error.as_deref())
                .map(layer_info_unavailable)
                .unwrap_or_default(),
            timing_cache: timing_cache.as_ref().map(v1::Digest::from),
            timing_cache_loaded: prepared.timing_cache_load().as_ref().map(v1::Digest::from),
            transformed_model: transformed_model.as_ref().map(v1::Digest::from),
            layer_listing: layer_listing.as_ref().map(|l| v1::Digest::from(&l.digest)),
            layers_by_precision: done.layers_by_precision.clone(),
            provenance: Some(v1::Digest::from(&provenance.digest)),
            toolchain: Some(v1::ToolchainIdentity {
                flavour: prepared.toolchain.flavour.to_string(),
                version: prepared.toolchain.version.to_string(),
                library_digest: prepared.toolchain.library.hex(),
            }),
            started_at_ms: millis(started),
            finished_at_ms: millis(finished),
            built_by: self.host.clone(),
        };
        match self.shared_fence(slot.build) {
            None => self.record_action_result(prepared, result).await,
            // In a farm, only the daemon that holds the build may publish its result.
            Some((shared, id, fence)) => shared
                .fenced(id, fence, self.record_action_result(prepared, result))
                .await
                .map_err(|e| infrastructure(e.to_string()))?,
        }
    }

    /// Stores the timing cache a build wrote: a `record` build's becomes a new version of its
    /// scope in the registry (before the result that names it is visible).
    async fn record_timing_cache(
        &self,
        prepared: &PreparedBuild,
        file: &Path,
    ) -> Result<BlobDigest, v1::Failure> {
        let Some(publish) = prepared
            .timing_cache
            .as_ref()
            .and_then(|p| p.publish.as_ref())
        else {
            return Err(infrastructure(
                "the builder wrote a timing cache this build's policy does not record",
            ));
        };
        let version = self
            .timing_caches
            .publish(publish, file, &prepared.key, millis(SystemTime::now()))
            .await
            .map_err(|e| infrastructure(format!("cannot record the timing cache: {e}")))?;
        tracing::info!(
            cache = %version.digest,
            scope = %version.scope,
            "recorded a timing cache"
        );
        Ok(version.digest)
    }

    /// Stores `result` under its key, unless another build published one first (then that
    /// one is what every client gets).
    async fn record_action_result(
        &self,
        prepared: &PreparedBuild,
        result: v1::ActionResult,
    ) -> Outcome {
        let encoded = prost::Message::encode_to_vec(&result);
        match self
            .publishing
            .put_action_result(&prepared.key, encoded.clone().into())
            .await
            .map_err(|e| store_error("action result", e))?
        {
            Published::Created => Ok(result),
            Published::AlreadyExisted if prepared.request.skip_cache => {
                // A verifying rebuild reports its own result and never replaces the published one.
                Ok(result)
            }
            Published::AlreadyExisted => match self.cached_result(&prepared.key).await {
                // Another build (maybe another daemon) published first; its result is the one
                // every client gets.
                Some(existing) => Ok(existing),
                None => {
                    self.publishing
                        .replace_action_result(&prepared.key, encoded.into())
                        .await
                        .map_err(|e| store_error("action result", e))?;
                    Ok(result)
                }
            },
        }
    }
}

fn store_error(what: &str, e: StoreError) -> v1::Failure {
    infrastructure(format!("cannot store the {what}: {e}"))
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Refuses to publish a plan built with other libraries than the ones the daemon probed (and
/// keyed builds with) at start-up. Equal stamps answer at the cost of a `stat` in the builder;
/// a library whose stamp moved is hashed here, off the async threads.
async fn check_libraries(prepared: &PreparedBuild, done: &BuilderDone) -> Result<(), v1::Failure> {
    let toolchain = &prepared.toolchain;
    let checks = [
        (
            "",
            done.library.clone(),
            prepared.library_stamps.library,
            toolchain.library.hex(),
        ),
        (
            " ONNX parser",
            done.parser_library.clone(),
            prepared.library_stamps.parser,
            toolchain.parser.hex(),
        ),
    ];
    for (what, loaded, probed, digest) in checks {
        let path = loaded.path.clone();
        let probed_digest = digest.clone();
        let same = tokio::task::spawn_blocking(move || loaded.matches(probed.as_ref(), &digest))
            .await
            .map_err(|e| infrastructure(format!("the library check stopped: {e}")))?
            .map_err(|e| {
                infrastructure(format!("cannot hash the library {}: {e}", path.display()))
            })?;
        if !same {
            return Err(infrastructure(format!(
                "the builder loaded a different {}{what} library ({}) than the daemon probed at \
                 start-up (blake3:{probed_digest}); the library changed on disk: restart the daemon",
                toolchain.flavour,
                path.display(),
            )));
        }
    }
    Ok(())
}
