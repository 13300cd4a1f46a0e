//! This daemon as one of a farm's daemons (`[queue] url`): submissions checked against what the
//! whole farm can build and queued in its database, builds claimed when a slot here is free,
//! leases held while they run, and their ends recorded under the fence of the claim.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;
use trtfarm_proto::v1;

use super::postgres::registry::{self, Requirement, toolchain_text};
use super::postgres::{Capabilities, Claimed, DaemonRecord, EventWriter, Offer, SharedQueue};
use super::queue::{BuildId, Demand, Resource};
use super::{Build, Farm, failure};
use crate::ingest::request::{PreparedBuild, prepare};

/// A build this daemon claimed from the farm, while it runs here.
pub(crate) struct SharedRun {
    id: i64,
    fence: i64,
    events: EventWriter,
    lease: tokio::task::JoinHandle<()>,
}

impl SharedRun {
    /// Passes an event on to the build's watchers, wherever they are.
    pub(crate) fn send(&self, event: v1::job_event::Event) {
        self.events.send(event);
    }
}

impl Farm {
    /// The farm's database, when this daemon is part of a farm.
    pub fn shared(&self) -> Option<&Arc<SharedQueue>> {
        self.shared.as_ref()
    }

    /// Joins the farm once clients can reach this daemon at `endpoint`: registers it, puts back
    /// builds a previous run of it died holding, and starts claiming.
    pub async fn join_farm(self: &Arc<Self>, endpoint: String) -> anyhow::Result<()> {
        let _ = self.endpoint.set(endpoint.clone());
        let Some(shared) = self.shared.clone() else {
            return Ok(());
        };
        shared
            .heartbeat(self.daemon_record(&endpoint))
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let released = shared
            .release_own()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        if released > 0 {
            tracing::info!(
                builds = released,
                "queued again the builds a previous run of this daemon held"
            );
        }
        tokio::spawn(heartbeat(Arc::clone(self), Arc::clone(&shared), endpoint));
        tokio::spawn(claim_loop(Arc::clone(self), Arc::clone(&shared)));
        tokio::spawn(sweep_loop(Arc::clone(self), shared));
        Ok(())
    }

    fn daemon_record(&self, endpoint: &str) -> DaemonRecord {
        DaemonRecord {
            id: self
                .shared
                .as_ref()
                .map(|s| s.daemon_id.clone())
                .unwrap_or_default(),
            host: self.host.clone(),
            endpoint: endpoint.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            builder_digest: self.settings.policy.builder_digest.clone(),
            capabilities: Capabilities::of(&self.inventory),
            slots: self.slots(),
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: 0,
            live: true,
        }
    }

    /// The daemons sharing this daemon's queue: the farm's registry, or this daemon alone.
    pub async fn farm_status(&self) -> Result<v1::FarmStatus, Status> {
        let (queue, daemons, answered_by) = match &self.shared {
            Some(shared) => (
                shared.database().to_string(),
                shared.daemons().await?,
                shared.daemon_id.clone(),
            ),
            None => {
                let endpoint = self.endpoint.get().map_or("", String::as_str);
                let mut record = self.daemon_record(endpoint);
                record.heartbeat_at_ms = super::now_ms();
                (v1::EMBEDDED_QUEUE.to_owned(), vec![record], String::new())
            }
        };
        Ok(v1::FarmStatus {
            queue,
            daemons: daemons.into_iter().map(registry::wire).collect(),
            answered_by,
        })
    }

    /// Checks `request` against what the live daemons of the farm can build: the registry as
    /// read within the last heartbeat, and read again before a refusal (a daemon that has just
    /// joined may be the one that can build it).
    pub(super) async fn prepare_for_farm(
        &self,
        shared: &SharedQueue,
        request: v1::SubmitRequest,
    ) -> Result<(PreparedBuild, Requirement), Status> {
        let recent = shared.recent_daemons().await?;
        match self.check_against_farm(request.clone(), &recent) {
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                self.check_against_farm(request, &shared.daemons().await?)
            }
            checked => checked,
        }
    }

    fn check_against_farm(
        &self,
        request: v1::SubmitRequest,
        daemons: &[DaemonRecord],
    ) -> Result<(PreparedBuild, Requirement), Status> {
        let inventory = registry::farm_inventory(daemons);
        let prepared = prepare(request, &inventory, &self.settings.policy).map_err(|status| {
            if status.code() == tonic::Code::FailedPrecondition {
                let mut farm = Status::failed_precondition(format!(
                    "{} (the farm has: {})",
                    status.message().replace("this daemon", "the farm"),
                    registry::describe_farm(daemons)
                ));
                // Still about the same setting (see `trtfarm_proto::refusal`).
                *farm.metadata_mut() = status.metadata().clone();
                farm
            } else {
                status
            }
        })?;
        let requirement = Requirement::of(&prepared, &self.settings.policy.builder_digest);
        let met = daemons
            .iter()
            .any(|d| d.live && requirement.met_by(&d.capabilities, &d.builder_digest));
        if !met {
            return Err(Status::failed_precondition(format!(
                "no live daemon of the farm can build engine `{}`: it needs {}{}{} with the \
                 builder {} (this daemon's); the farm has: {}",
                prepared.variant.name,
                requirement
                    .toolchain
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
                requirement
                    .gpu_target
                    .as_deref()
                    .map(|t| format!(" on a {t}"))
                    .unwrap_or_default(),
                if requirement.needs_mps {
                    " with MPS"
                } else {
                    ""
                },
                &requirement.builder_digest[..requirement.builder_digest.len().min(16)],
                registry::describe_farm(daemons)
            )));
        }
        Ok((prepared, requirement))
    }

    /// Stops a build running here (its lease is gone, or no job waits for it any more).
    fn stop_local_build(&self, build_id: BuildId) {
        let state = self.lock();
        if let Some(cancel) = state.builds.get(&build_id).and_then(|b| b.cancel.as_ref()) {
            let _ = cancel.send(true);
        }
    }

    /// What this daemon could start now.
    fn offer(&self) -> Option<(Vec<String>, bool, Vec<String>)> {
        let state = self.lock();
        if !self.memory_admits(&state, super::memory::SMALLEST_BUILD) {
            return None;
        }
        let cpu_free = state.queue.has_free(Resource::Cpu);
        let mut gpu_targets: Vec<String> = self
            .inventory
            .gpus
            .gpus
            .iter()
            .filter(|gpu| state.queue.has_free(Resource::Gpu(gpu.index)))
            .map(|gpu| format!("{}/{}", gpu.name, gpu.compute_capability))
            .collect();
        gpu_targets.dedup();
        if !cpu_free && gpu_targets.is_empty() {
            return None;
        }
        let toolchains = self
            .inventory
            .available
            .iter()
            .map(|t| toolchain_text(&t.identity))
            .collect();
        Some((toolchains, cpu_free, gpu_targets))
    }

    /// Claims and starts one build if this daemon has room and the farm has one it can run.
    async fn claim_next(self: &Arc<Self>, shared: &Arc<SharedQueue>) -> Result<bool, Status> {
        let Some((toolchains, cpu_free, gpu_targets)) = self.offer() else {
            return Ok(false);
        };
        let offer = Offer {
            builder_digest: &self.settings.policy.builder_digest,
            toolchains: &toolchains,
            cpu_free,
            gpu_targets: &gpu_targets,
            mps: matches!(
                self.inventory.gpus.mps,
                crate::gpus::MpsState::Running { .. }
            ),
        };
        let Some(claimed) = shared.claim(&offer).await? else {
            return Ok(false);
        };
        self.start_claimed(shared, claimed).await;
        Ok(true)
    }

    async fn start_claimed(self: &Arc<Self>, shared: &Arc<SharedQueue>, claimed: Claimed) {
        let (id, fence) = (claimed.id, claimed.fence);
        let prepared = match self.prepare_request(claimed.request, &self.inventory).await {
            Ok(prepared) if prepared.key.hex() == claimed.action_key => prepared,
            Ok(prepared) => {
                let reason = failure(
                    v1::FailureKind::Infrastructure,
                    format!(
                        "daemon {} computes the action key {} for this request, not the {} it \
                         was submitted with: its toolchain or builder differs from the \
                         submitting daemon's; run one trtfarm release across the farm",
                        self.host,
                        prepared.key.hex(),
                        claimed.action_key
                    ),
                    Vec::new(),
                );
                shared.finish(id, fence, &Err(reason)).await;
                return;
            }
            Err(status) => {
                let reason = failure(
                    v1::FailureKind::Infrastructure,
                    format!(
                        "daemon {} cannot prepare this request: {}",
                        self.host,
                        status.message()
                    ),
                    Vec::new(),
                );
                shared.finish(id, fence, &Err(reason)).await;
                return;
            }
        };
        // An earlier run may have published before it lost the build, or a build of the key
        // finished between the submit's cache check and this claim.
        if !prepared.request.skip_cache
            && let Some(result) = self.cached_result(&prepared.key).await
        {
            shared.finish(id, fence, &Ok(result)).await;
            return;
        }
        let demand = if prepared.gpu_candidates.is_empty() {
            Demand::cpu()
        } else {
            Demand::any_gpu(prepared.gpu_candidates.iter().copied())
        };
        let reserved = self.lock().queue.reserve(&demand);
        let Some(resource) = reserved else {
            let reason = failure(
                v1::FailureKind::Infrastructure,
                format!(
                    "daemon {} claimed a build it has no free slot for",
                    self.host
                ),
                Vec::new(),
            );
            shared.finish(id, fence, &Err(reason)).await;
            return;
        };
        let mut state = self.lock();
        state.next_build += 1;
        let build_id = state.next_build;
        let events = EventWriter::start(Arc::clone(shared), id);
        events.send(v1::job_event::Event::Started(v1::Started {
            resource: format!("{}:{resource}", self.host),
            attempt: claimed.attempt.max(1) as u32,
        }));
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let lease = tokio::spawn(hold_lease(
            Arc::clone(self),
            Arc::clone(shared),
            build_id,
            id,
            fence,
        ));
        let prepared = Arc::new(prepared);
        state.builds.insert(
            build_id,
            Build {
                prepared: Arc::clone(&prepared),
                jobs: Default::default(),
                resource: Some(resource),
                cancel: Some(cancel_tx),
                recent_log: Default::default(),
                shared: Some(SharedRun {
                    id,
                    fence,
                    events,
                    lease,
                }),
                pid: None,
                memory_need: self.memory.estimate(&prepared),
            },
        );
        // In a farm the jobs are the farm's; this daemon's gauge counts the builds it runs.
        self.metrics
            .set_jobs_running(u64::from(state.queue.running()));
        drop(state);
        tracing::debug!(build = id, key = %prepared.key.hex(), %resource, "claimed a build from the farm");
        self.metrics.build_started();
        let farm = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = farm.execute(build_id, &prepared, resource, cancel_rx).await;
            farm.finish_build(build_id, outcome);
        });
    }

    /// Records the end of a build claimed from the farm (spawned by `finish_build`).
    pub(super) fn finish_shared(
        self: &Arc<Self>,
        run: SharedRun,
        outcome: Result<v1::ActionResult, v1::Failure>,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        tokio::spawn(async move {
            run.lease.abort();
            run.events.close().await;
            if !shared.finish(run.id, run.fence, &outcome).await {
                tracing::info!(
                    build = run.id,
                    "the farm gave this build to another daemon; this run's end is not recorded"
                );
            }
            shared.work.notify_one();
        });
    }

    /// The fence of the farm build running here as `build_id`, for a fenced publish.
    pub(crate) fn shared_fence(&self, build_id: BuildId) -> Option<(Arc<SharedQueue>, i64, i64)> {
        let shared = self.shared.clone()?;
        let state = self.lock();
        let run = state.builds.get(&build_id)?.shared.as_ref()?;
        Some((shared, run.id, run.fence))
    }

    /// Leaving the farm: builds still running go back to the queue for other daemons, and this
    /// daemon leaves the registry.
    pub(super) async fn leave_farm(&self, running: u32) {
        let Some(shared) = &self.shared else {
            return;
        };
        if running > 0 {
            match shared.release_own().await {
                Ok(n) => tracing::info!(builds = n, "handed running builds back to the farm"),
                Err(e) => tracing::warn!("cannot hand builds back to the farm: {}", e.message()),
            }
        }
        shared.deregister().await;
    }
}

/// Keeps this daemon's registration fresh.
async fn heartbeat(farm: Arc<Farm>, shared: Arc<SharedQueue>, endpoint: String) {
    loop {
        tokio::time::sleep(shared.beat()).await;
        if farm.is_draining() {
            return;
        }
        if let Err(e) = shared.heartbeat(farm.daemon_record(&endpoint)).await {
            tracing::warn!("heartbeat: {}", e.message());
        }
    }
}

/// Claims builds whenever the farm says there is work (or a poll interval passes) and this
/// daemon has room.
async fn claim_loop(farm: Arc<Farm>, shared: Arc<SharedQueue>) {
    loop {
        tokio::select! {
            _ = shared.work.notified() => {}
            _ = tokio::time::sleep(shared.beat()) => {}
        }
        if farm.is_draining() {
            return;
        }
        loop {
            match farm.claim_next(&shared).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("cannot claim from the farm: {}", e.message());
                    break;
                }
            }
        }
    }
}

/// Re-queues builds whose daemon went silent, and trims history.
async fn sweep_loop(farm: Arc<Farm>, shared: Arc<SharedQueue>) {
    loop {
        tokio::time::sleep((shared.lease / 2).max(Duration::from_millis(500))).await;
        if farm.is_draining() {
            return;
        }
        if let Err(e) = shared.sweep(farm.settings.job_history as u64).await {
            tracing::warn!("farm sweep: {}", e.message());
        }
    }
}

/// Renews the lease of a running build; stops the build when the lease is lost or no job
/// waits for it any more.
async fn hold_lease(
    farm: Arc<Farm>,
    shared: Arc<SharedQueue>,
    build_id: BuildId,
    id: i64,
    fence: i64,
) {
    let mut cancels = shared.cancels.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.beat()) => {}
            news = cancels.recv() => {
                if !matches!(news, Ok(n) if n == id || n == -1) {
                    continue;
                }
            }
        }
        match shared.renew(id, fence).await {
            Ok(Some(false)) => {}
            Ok(Some(true)) => {
                tracing::info!(
                    build = id,
                    "no job waits for the build any more: stopping it"
                );
                farm.stop_local_build(build_id);
            }
            Ok(None) => {
                tracing::warn!(build = id, "lost the lease on the build: stopping it");
                farm.stop_local_build(build_id);
                return;
            }
            Err(e) => tracing::warn!(build = id, "cannot renew the lease: {}", e.message()),
        }
    }
}
