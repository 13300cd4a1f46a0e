//! Running one build: scratch directory, inputs from the store, the worker process, and
//! publishing what it made (blobs first, then the action result).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use trtfarm_proto::v1;
use trtfarm_store::{BlobDigest, Published, StoreError};

use super::queue::{BuildId, Resource};
use super::store_retry::retrying;
use super::{Farm, failure};
use crate::metrics::Outcome as MetricOutcome;
use crate::provenance::{GpuRun, Provenance, Subject, hex};
use crate::request::{PreparedBuild, parse_digest, wire_digest};
use crate::worker::protocol::{
    INPUTS_DIR, LAYER_LISTING_FILE, LAYERS_FILE, OUT_DIR, PLAN_FILE, TASK_FILE, TIMING_CACHE_FILE,
    TRANSFORMED_MODEL_FILE,
};
use crate::worker::task_manifest::{TASK_MANIFEST_PATH, TASK_VARIANT};
use crate::worker::{BuildRoot, WorkerCommand, WorkerDone, WorkerEvent, WorkerOutcome, WorkerTask};

type Outcome = Result<v1::ActionResult, v1::Failure>;

/// When and where a build ran.
struct Slot {
    started: SystemTime,
    resource: Resource,
}

fn infrastructure(message: impl Into<String>) -> v1::Failure {
    failure(v1::FailureKind::Infrastructure, message, Vec::new())
}

/// Every blob an action result names.
pub(super) fn result_digests(result: &v1::ActionResult) -> Result<Vec<BlobDigest>, tonic::Status> {
    result
        .blobs()
        .map(|(what, digest)| parse_digest(Some(digest), what))
        .collect()
}

impl Farm {
    /// The variables a worker gets beyond the fixed base: trtfarm's cache, and for a GPU build
    /// its GPU (by UUID) and MPS share.
    fn worker_env(
        &self,
        prepared: &PreparedBuild,
        resource: Resource,
    ) -> Result<Vec<(String, String)>, v1::Failure> {
        let mut env = vec![(
            "TRTFARM_CACHE_DIR".to_owned(),
            self.build_root.cache_dir().display().to_string(),
        )];
        if let Resource::Gpu(index) = resource {
            let gpus = &self.inventory.gpus;
            let gpu = gpus.get(index).ok_or_else(|| {
                infrastructure(format!(
                    "the scheduler chose GPU {index}, which this daemon lacks"
                ))
            })?;
            env.extend(gpus.worker_env(gpu, prepared.variant.settings.mps_percentage));
        }
        Ok(env)
    }

    /// Runs the build to its end. Never panics on bad input: every failure is an outcome.
    pub(super) async fn execute(
        self: &Arc<Self>,
        build_id: BuildId,
        prepared: &PreparedBuild,
        resource: Resource,
        cancel: watch::Receiver<bool>,
    ) -> Outcome {
        let scratch = self
            .settings
            .state_dir
            .join("scratch")
            .join(format!("{build_id:020}"));
        let outcome = self
            .execute_in(build_id, prepared, resource, cancel, &scratch)
            .await;
        // The slot only holds task.json and symlinks into the scratch directory.
        for dir in [self.build_root.slot(build_id), scratch] {
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), "cannot remove a build directory: {e}");
            }
        }
        outcome
    }

    async fn execute_in(
        self: &Arc<Self>,
        build_id: BuildId,
        prepared: &PreparedBuild,
        resource: Resource,
        cancel: watch::Receiver<bool>,
        scratch: &Path,
    ) -> Outcome {
        let started = SystemTime::now();
        // A previous daemon may have died mid-build with the same build number.
        let _ = tokio::fs::remove_dir_all(scratch).await;
        for dir in [INPUTS_DIR, OUT_DIR] {
            tokio::fs::create_dir_all(scratch.join(dir))
                .await
                .map_err(|e| infrastructure(format!("cannot create the scratch directory: {e}")))?;
        }
        for (digest, relative) in &prepared.materialize {
            let dest = scratch.join(relative);
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    infrastructure(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            self.store.read_to_file(digest, &dest).await.map_err(|e| {
                infrastructure(format!("cannot fetch input {digest} from the store: {e}"))
            })?;
        }
        // The worker runs in a fixed-length slot of the build root and sees the scratch
        // directory only through symlinks: nothing of the state dir's path reaches its heap.
        let slot = {
            let root = self.build_root.clone();
            let scratch = scratch.to_path_buf();
            tokio::task::spawn_blocking(move || root.prepare_slot(build_id, &scratch))
                .await
                .map_err(|e| infrastructure(format!("cannot prepare the build slot: {e}")))?
                .map_err(|e| infrastructure(format!("cannot prepare the build slot: {e}")))?
        };
        let task_json = task_json(prepared, &self.build_root)?;
        tokio::fs::write(slot.join(TASK_FILE), task_json)
            .await
            .map_err(|e| infrastructure(format!("cannot write the worker task: {e}")))?;

        let log_path = scratch.with_extension("log");
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let pump = tokio::spawn(pump_events(
            Arc::clone(self),
            build_id,
            events_rx,
            log_path.clone(),
            self.settings.max_log_size,
        ));
        let command = WorkerCommand {
            program: self.build_root.program(),
            scratch: slot,
            memory_limit: self.settings.worker_memory,
            deadline: prepared.timeout,
            extra_env: self.worker_env(prepared, resource)?,
        };
        let report = self.launcher.launch(command, events_tx, cancel).await;
        // The launcher dropped its sender: the pump ends once it has written everything.
        let log_written = pump.await.unwrap_or(false);
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                let _ = tokio::fs::remove_file(&log_path).await;
                return Err(infrastructure(format!(
                    "cannot start the build worker: {e}"
                )));
            }
        };
        let outcome = match report.outcome {
            WorkerOutcome::Succeeded(done) => {
                let slot = Slot { started, resource };
                self.publish(prepared, scratch, &log_path, log_written, &done, &slot)
                    .await
            }
            WorkerOutcome::BuildFailed { message } => {
                Err(failure(v1::FailureKind::Build, message, report.log_tail))
            }
            WorkerOutcome::Crashed { description } => Err(failure(
                v1::FailureKind::WorkerCrashed,
                format!("the build worker crashed: {description}"),
                report.log_tail,
            )),
            WorkerOutcome::DeadlineExceeded => Err(failure(
                v1::FailureKind::Deadline,
                format!(
                    "the build ran past its deadline of {} and was stopped",
                    humantime::format_duration(prepared.timeout)
                ),
                report.log_tail,
            )),
            WorkerOutcome::Cancelled => Err(failure(
                v1::FailureKind::Cancelled,
                "cancelled: no job waits for this build any more",
                report.log_tail,
            )),
        };
        let outcome = match outcome {
            Err(mut reason) if log_written => {
                // A failed build's full log is kept too: the tail in the failure is rarely enough.
                match self.store.put_file(&log_path, None).await {
                    Ok(put) => reason.build_log = Some(wire_digest(&put.digest)),
                    Err(e) => tracing::warn!("cannot store the log of a failed build: {e}"),
                }
                Err(reason)
            }
            other => other,
        };
        let _ = tokio::fs::remove_file(&log_path).await;
        self.metrics.build_finished(
            match &outcome {
                Ok(_) => MetricOutcome::Succeeded,
                Err(f) if f.kind == v1::FailureKind::Cancelled as i32 => MetricOutcome::Cancelled,
                Err(_) => MetricOutcome::Failed,
            },
            started.elapsed().unwrap_or_default(),
        );
        outcome
    }

    /// Stores the worker's outputs and then the action result. Blobs go first, so a result is
    /// never visible before everything it names.
    async fn publish(
        &self,
        prepared: &PreparedBuild,
        scratch: &Path,
        log_path: &Path,
        log_written: bool,
        done: &WorkerDone,
        slot: &Slot,
    ) -> Outcome {
        let started = slot.started;
        check_libraries(prepared, done).await?;
        let claimed = BlobDigest::parse(&done.plan_blake3, done.plan_size)
            .map_err(|e| infrastructure(format!("the worker reported a bad plan digest: {e}")))?;
        let store_error =
            |what: &str, e: StoreError| infrastructure(format!("cannot store the {what}: {e}"));
        let put = |what: &'static str, path: PathBuf, expected: Option<BlobDigest>| async move {
            retrying(what, &self.metrics, || self.store.put_file(&path, expected))
                .await
                .map_err(|e| store_error(what, e))
        };
        // The plan is re-hashed while it streams into the store: a worker that lied about its
        // digest, or a plan damaged on disk, is refused here.
        let engine = put("engine plan", scratch.join(PLAN_FILE), Some(claimed)).await?;
        let layer_info = if done.layer_info {
            Some(put("layer information", scratch.join(LAYERS_FILE), None).await?)
        } else {
            None
        };
        let timing_cache = if done.timing_cache {
            Some(put("timing cache", scratch.join(TIMING_CACHE_FILE), None).await?)
        } else {
            None
        };
        let layer_listing = if done.layer_listing {
            Some(put("layer listing", scratch.join(LAYER_LISTING_FILE), None).await?)
        } else {
            None
        };
        let transformed_model = if done.transformed_model {
            Some(
                put(
                    "converted model",
                    scratch.join(TRANSFORMED_MODEL_FILE),
                    None,
                )
                .await?,
            )
        } else {
            None
        };
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
            byproducts.push(Subject::new("timing-cache.bin", &cache.digest, None));
        }
        if let Some(listing) = &layer_listing {
            byproducts.push(Subject::new("layers.txt", &listing.digest, None));
        }
        if let Some(model) = &transformed_model {
            byproducts.push(Subject::new("model.transformed.onnx", &model.digest, None));
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
            engine: Some(wire_digest(&engine.digest)),
            engine_sha256: hex(&engine.sha256),
            build_log: Some(wire_digest(&build_log.digest)),
            layer_info: layer_info.as_ref().map(|l| wire_digest(&l.digest)),
            layer_info_unavailable: done.layer_info_error.clone().unwrap_or_default(),
            timing_cache: timing_cache.as_ref().map(|c| wire_digest(&c.digest)),
            transformed_model: transformed_model.as_ref().map(|m| wire_digest(&m.digest)),
            layer_listing: layer_listing.as_ref().map(|l| wire_digest(&l.digest)),
            layers_by_precision: done.layers_by_precision.clone(),
            provenance: Some(wire_digest(&provenance.digest)),
            toolchain: Some(v1::ToolchainIdentity {
                flavour: prepared.toolchain.flavour.clone(),
                version: prepared.toolchain.version.clone(),
                library_digest: prepared.toolchain.library_digest.clone(),
            }),
            started_at_ms: millis(started),
            finished_at_ms: millis(finished),
            built_by: self.host.clone(),
        };
        let encoded = prost::Message::encode_to_vec(&result);
        let publish = || {
            self.store
                .put_action_result(&prepared.key, encoded.clone().into())
        };
        match retrying("action result", &self.metrics, publish)
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
                    let replace = || {
                        self.store
                            .replace_action_result(&prepared.key, encoded.clone().into())
                    };
                    retrying("action result", &self.metrics, replace)
                        .await
                        .map_err(|e| store_error("action result", e))?;
                    Ok(result)
                }
            },
        }
    }
}

/// Forwards worker events to the build's jobs and appends log lines to the build log, up to
/// `max_log` bytes. Returns whether the log file was created.
async fn pump_events(
    farm: Arc<Farm>,
    build_id: BuildId,
    mut events: mpsc::UnboundedReceiver<WorkerEvent>,
    log_path: PathBuf,
    max_log: u64,
) -> bool {
    let mut log = match tokio::fs::File::create(&log_path).await {
        Ok(file) => Some(tokio::io::BufWriter::new(file)),
        Err(e) => {
            tracing::warn!(log = %log_path.display(), "cannot create the build log: {e}");
            None
        }
    };
    let mut written: u64 = 0;
    let mut truncated = false;
    while let Some(event) = events.recv().await {
        match event {
            WorkerEvent::Spawned { pid } => {
                tracing::debug!(build = build_id, pid, "worker started");
            }
            WorkerEvent::Log { severity, text } => {
                let line = format!("[{severity}] {text}\n");
                if written + line.len() as u64 <= max_log {
                    written += line.len() as u64;
                    if let Some(log) = log.as_mut() {
                        let _ = log.write_all(line.as_bytes()).await;
                    }
                    farm.broadcast(
                        build_id,
                        v1::job_event::Event::Log(v1::LogLine { severity, text }),
                    );
                } else if !truncated {
                    truncated = true;
                    let note = format!(
                        "[worker] log truncated at {max_log} bytes (limits.max_log_size)\n"
                    );
                    if let Some(log) = log.as_mut() {
                        let _ = log.write_all(note.as_bytes()).await;
                    }
                }
            }
            WorkerEvent::Progress {
                kind,
                phase,
                parent,
                step,
                steps,
            } => {
                let kind = match kind {
                    crate::worker::ProgressKind::PhaseStart => v1::ProgressKind::PhaseStart,
                    crate::worker::ProgressKind::Step => v1::ProgressKind::Step,
                    crate::worker::ProgressKind::PhaseFinish => v1::ProgressKind::PhaseFinish,
                };
                farm.broadcast(
                    build_id,
                    v1::job_event::Event::Progress(v1::Progress {
                        phase,
                        parent_phase: parent.unwrap_or_default(),
                        step,
                        steps,
                        kind: kind as i32,
                    }),
                );
            }
        }
    }
    match log {
        Some(mut log) => log.flush().await.is_ok(),
        None => false,
    }
}

/// The worker's `task.json`: the same bytes for every build of one action key on any daemon
/// (canonical manifest, fixed names, the build root's fixed-length library path).
fn task_json(prepared: &PreparedBuild, root: &BuildRoot) -> Result<Vec<u8>, v1::Failure> {
    let task = WorkerTask {
        flavour: prepared.flavour,
        library_dir: prepared
            .library_dir
            .as_ref()
            .map(|_| root.library_dir(prepared.flavour)),
        manifest_path: TASK_MANIFEST_PATH.into(),
        manifest_toml: prepared.task_manifest.clone(),
        variant: TASK_VARIANT.into(),
        layer_info: true,
    };
    serde_json::to_vec(&task)
        .map_err(|e| infrastructure(format!("cannot encode the worker task: {e}")))
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Refuses to publish a plan built with other libraries than the ones the daemon probed (and
/// keyed builds with) at start-up. Equal stamps answer at the cost of a `stat` in the worker;
/// a library whose stamp moved is hashed here, off the async threads.
async fn check_libraries(prepared: &PreparedBuild, done: &WorkerDone) -> Result<(), v1::Failure> {
    let toolchain = &prepared.toolchain;
    let checks = [
        (
            "",
            done.library.clone(),
            prepared.library_stamps.library,
            toolchain.library_digest.clone(),
        ),
        (
            " ONNX parser",
            done.parser_library.clone(),
            prepared.library_stamps.parser,
            toolchain.parser_digest.clone(),
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
                "the worker loaded a different {}{what} library ({}) than the daemon probed at \
                 start-up (blake3:{probed_digest}); the library changed on disk: restart the daemon",
                toolchain.flavour,
                path.display(),
            )));
        }
    }
    Ok(())
}
