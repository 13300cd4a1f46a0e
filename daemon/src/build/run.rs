//! Running one build: scratch directory, the prepare step, the builder process, and handing
//! what it made to `publish`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use trtfarm_build_protocol::{BuilderTask, INPUTS_DIR, OUT_DIR, Progress, TASK_FILE};
use trtfarm_proto::v1;

use crate::build::builder_process::usage::Usage;
use crate::build::builder_process::{BuildRoot, BuilderCommand, BuilderEvent, BuilderOutcome};
use crate::build::failure_hint::{build_failure_message, locked_timing_cache_hint};
use crate::build::failure_message::shape_log_tail;
use crate::ingest::request::{MODEL_NAME, PreparedBuild};
use crate::metrics::Outcome as MetricOutcome;
use crate::publish::{BuildOutputs, Slot};
use crate::schedule::queue::{BuildId, Resource};
use crate::schedule::{Farm, failure};

type Outcome = Result<v1::ActionResult, v1::Failure>;

fn infrastructure(message: impl Into<String>) -> v1::Failure {
    failure(v1::FailureKind::Infrastructure, message, Vec::new())
}

impl Farm {
    /// The variables a builder gets beyond the fixed base: trtfarm's cache, and for a GPU build
    /// its GPU (by UUID) and MPS share.
    fn builder_env(
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
            env.extend(gpus.builder_env(gpu, prepared.variant.settings.mps_percentage));
        }
        Ok(env)
    }

    /// Runs the build to its end. Never panics on bad input: every failure is an outcome.
    pub(crate) async fn execute(
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
        let log_path = scratch.with_extension("log");
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let pump = tokio::spawn(pump_events(
            Arc::clone(self),
            build_id,
            events_rx,
            log_path.clone(),
            self.settings.max_log_size,
        ));
        let report = async {
            let converted = self
                .prepare_inputs(prepared, scratch, &scratch.join(INPUTS_DIR), &events_tx)
                .await?;
            self.materialize_timing_cache(prepared, scratch).await?;
            let report = self
                .run_builder_in_slot(build_id, prepared, resource, cancel, scratch, events_tx)
                .await?;
            Ok::<_, v1::Failure>((converted, report))
        }
        .await;
        // Every sender is gone now: the pump ends once it has written everything.
        let log_written = pump.await.unwrap_or(false);
        let (converted, report) = match report {
            Ok(done) => done,
            Err(reason) => {
                return self
                    .finish_failed(reason, &log_path, log_written, started)
                    .await;
            }
        };
        self.record_usage(build_id, prepared, &report.usage);
        let outcome = match report.outcome {
            BuilderOutcome::Succeeded(done) => {
                let slot = Slot {
                    started,
                    resource,
                    build: build_id,
                };
                let outputs = BuildOutputs {
                    scratch,
                    log_path: &log_path,
                    log_written,
                    done: &done,
                    converted: converted.as_ref(),
                };
                let published = self.publish(prepared, &outputs, &slot).await;
                match published {
                    Ok(result) => {
                        let _ = tokio::fs::remove_file(&log_path).await;
                        self.metrics.build_finished(
                            MetricOutcome::Succeeded,
                            started.elapsed().unwrap_or_default(),
                        );
                        return Ok(result);
                    }
                    Err(reason) => reason,
                }
            }
            BuilderOutcome::BuildFailed { message } => {
                let model = scratch.join(INPUTS_DIR).join(match &converted {
                    Some(model) => model.model.name.as_str(),
                    None => MODEL_NAME,
                });
                let shaped = tokio::task::spawn_blocking({
                    let (message, variant) = (message.clone(), prepared.variant.clone());
                    let is_converted = converted.is_some();
                    move || build_failure_message(&message, &variant, &model, is_converted)
                })
                .await
                .unwrap_or(message);
                let message = match locked_timing_cache_hint(prepared) {
                    Some(hint) => format!("{shaped}\n{hint}"),
                    None => shaped,
                };
                let tail = shape_log_tail(&message, report.log_tail);
                failure(v1::FailureKind::Build, message, tail)
            }
            BuilderOutcome::Crashed { description } => failure(
                v1::FailureKind::WorkerCrashed,
                format!("the builder crashed: {description}"),
                report.log_tail,
            ),
            BuilderOutcome::DeadlineExceeded => failure(
                v1::FailureKind::Deadline,
                format!(
                    "the build ran past its deadline of {} and was stopped",
                    humantime::format_duration(prepared.timeout)
                ),
                report.log_tail,
            ),
            BuilderOutcome::Cancelled => failure(
                v1::FailureKind::Cancelled,
                "cancelled: no job waits for this build any more",
                report.log_tail,
            ),
        };
        self.finish_failed(outcome, &log_path, log_written, started)
            .await
    }

    /// Runs the builder for `prepared` in a build-root slot over `scratch`, whose inputs are
    /// ready, forwarding its events.
    async fn run_builder_in_slot(
        &self,
        build_id: BuildId,
        prepared: &PreparedBuild,
        resource: Resource,
        cancel: watch::Receiver<bool>,
        scratch: &Path,
        events: mpsc::UnboundedSender<BuilderEvent>,
    ) -> Result<crate::build::builder_process::BuilderReport, v1::Failure> {
        // The builder runs in a fixed-length slot of the build root and sees the scratch
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
            .map_err(|e| infrastructure(format!("cannot write the builder task: {e}")))?;
        let command = BuilderCommand {
            program: self.build_root.program(),
            scratch: slot,
            memory_limit: self.settings.worker_memory,
            deadline: prepared.timeout,
            extra_env: self.builder_env(prepared, resource)?,
        };
        self.launcher
            .launch(command, events, cancel)
            .await
            .map_err(|e| infrastructure(format!("cannot start the builder: {e}")))
    }

    /// Ends a failed build: keeps its full log in the store (the tail in the failure is rarely
    /// enough) and counts it.
    async fn finish_failed(
        &self,
        mut reason: v1::Failure,
        log_path: &Path,
        log_written: bool,
        started: SystemTime,
    ) -> Outcome {
        if log_written {
            match self.store.put_file(log_path, None).await {
                Ok(put) => reason.build_log = Some(v1::Digest::from(&put.digest)),
                Err(e) => tracing::warn!("cannot store the log of a failed build: {e}"),
            }
        }
        let _ = tokio::fs::remove_file(log_path).await;
        let outcome = if reason.kind == v1::FailureKind::Cancelled as i32 {
            MetricOutcome::Cancelled
        } else {
            MetricOutcome::Failed
        };
        self.metrics
            .build_finished(outcome, started.elapsed().unwrap_or_default());
        Err(reason)
    }
}

impl Farm {
    /// Tells the build's watchers what its builder used, and learns its memory need.
    fn record_usage(&self, build_id: BuildId, prepared: &PreparedBuild, usage: &Usage) {
        self.memory.learn(prepared, usage.peak_rss);
        let text = format!(
            "the builder used {:.2} CPU cores on average ({:.1} s of CPU in {:.1} s) and {} of \
             memory at its peak",
            usage.cores(),
            usage.cpu.as_secs_f64(),
            usage.wall.as_secs_f64(),
            bytesize::ByteSize(usage.peak_rss).display().iec()
        );
        tracing::info!(build = build_id, "{text}");
        self.broadcast(
            build_id,
            v1::job_event::Event::Log(v1::LogLine {
                severity: "builder".into(),
                text,
            }),
        );
    }
}

/// Forwards builder events to the build's jobs and appends log lines to the build log, up to
/// `max_log` bytes. Returns whether the log file was created.
async fn pump_events(
    farm: Arc<Farm>,
    build_id: BuildId,
    mut events: mpsc::UnboundedReceiver<BuilderEvent>,
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
            BuilderEvent::Spawned { pid } => {
                tracing::debug!(build = build_id, pid, "builder started");
                farm.note_builder_pid(build_id, pid);
            }
            BuilderEvent::Log { severity, text } => {
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
                        "[builder] log truncated at {max_log} bytes (limits.max_log_size)\n"
                    );
                    if let Some(log) = log.as_mut() {
                        let _ = log.write_all(note.as_bytes()).await;
                    }
                }
            }
            BuilderEvent::Progress(Progress {
                kind,
                phase,
                parent,
                step,
                steps,
            }) => {
                let kind = match kind {
                    trtfarm_build_protocol::ProgressKind::PhaseStart => {
                        v1::ProgressKind::PhaseStart
                    }
                    trtfarm_build_protocol::ProgressKind::Step => v1::ProgressKind::Step,
                    trtfarm_build_protocol::ProgressKind::PhaseFinish => {
                        v1::ProgressKind::PhaseFinish
                    }
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

/// The builder's `task.json`: the same bytes for every build of one action key on any daemon
/// (the typed configuration, the build root's fixed-length library path).
fn task_json(prepared: &PreparedBuild, root: &BuildRoot) -> Result<Vec<u8>, v1::Failure> {
    let task = BuilderTask {
        flavour: prepared.flavour,
        library_dir: prepared
            .library_dir
            .as_ref()
            .map(|_| root.library_dir(prepared.flavour)),
        config: prepared.config.clone(),
        timing_cache_input: prepared.timing_cache_load().is_some(),
        mps_percentage: prepared.variant.settings.mps_percentage,
    };
    serde_json::to_vec(&task)
        .map_err(|e| infrastructure(format!("cannot encode the builder task: {e}")))
}
