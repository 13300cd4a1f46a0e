//! Jobs: what clients submitted, and the builds that serve them.
//!
//! A *job* is one submission (persisted, with an id clients hold). A *build* is one run of a
//! worker for an action key (in memory). Identical concurrent submissions are jobs attached to
//! one build (single-flight); cancelling a job detaches it, and the build stops only when no
//! job waits for it any more.

pub mod db;
pub mod queue;
mod run;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, watch};
use tonic::Status;
use trtfarm_proto::v1;
use trtfarm_store::{ActionKey, ContentStore};

use crate::inventory::Inventory;
use crate::metrics::{Metrics, Outcome as MetricOutcome};
use crate::request::{PreparedBuild, RequestPolicy, prepare};
use crate::worker::WorkerLauncher;
use db::{JobDb, is_terminal};
use queue::{BuildId, BuildQueue, Resource};

/// Events buffered per watcher before the slowest one starts missing log lines.
const EVENT_BUFFER: usize = 1024;

/// What the farm needs from the daemon around it.
pub struct FarmSettings {
    /// Jobs database, scratch directories.
    pub state_dir: PathBuf,
    /// Slots per resource.
    pub slots: Vec<(Resource, u32)>,
    /// Most builds waiting at once.
    pub max_queued_jobs: usize,
    /// Most bytes of build log kept per build.
    pub max_log_size: u64,
    /// RLIMIT_AS for each worker.
    pub worker_memory: Option<u64>,
    /// Finished jobs kept in the database.
    pub job_history: usize,
    /// How requests are checked.
    pub policy: RequestPolicy,
    /// The program run as `<program> worker`.
    pub worker_program: PathBuf,
}

/// The farm: job table, single-flight map, queue, running builds.
pub struct Farm {
    state: Mutex<FarmState>,
    db: JobDb,
    store: Arc<dyn ContentStore>,
    launcher: Arc<dyn WorkerLauncher>,
    inventory: Inventory,
    metrics: Arc<Metrics>,
    settings: FarmSettings,
    draining: AtomicBool,
    host: String,
}

#[derive(Default)]
struct FarmState {
    jobs: HashMap<u64, ActiveJob>,
    builds: HashMap<BuildId, Build>,
    /// Builds other submissions may join, by key (not `skip_cache` ones).
    joinable: HashMap<ActionKey, BuildId>,
    queue: BuildQueue,
    next_build: BuildId,
}

/// A job that has not ended: its current state and its watchers.
struct ActiveJob {
    job: v1::Job,
    build: BuildId,
    events: broadcast::Sender<v1::JobEvent>,
    last_progress: Option<v1::Progress>,
}

/// One build of an action key, shared by the jobs attached to it.
struct Build {
    prepared: Arc<PreparedBuild>,
    jobs: BTreeSet<u64>,
    resource: Resource,
    /// Set while running: `true` stops the worker.
    cancel: Option<watch::Sender<bool>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn event(job_id: u64, body: v1::job_event::Event) -> v1::JobEvent {
    v1::JobEvent {
        job_id,
        at_ms: now_ms(),
        event: Some(body),
    }
}

/// A failure of `kind` with `message`.
pub fn failure(
    kind: v1::FailureKind,
    message: impl Into<String>,
    log_tail: Vec<String>,
) -> v1::Failure {
    v1::Failure {
        kind: kind as i32,
        message: message.into(),
        log_tail,
    }
}

impl Farm {
    /// Opens the job database and re-queues every job a previous daemon left unfinished.
    pub async fn start(
        settings: FarmSettings,
        store: Arc<dyn ContentStore>,
        launcher: Arc<dyn WorkerLauncher>,
        inventory: Inventory,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Farm>> {
        std::fs::create_dir_all(settings.state_dir.join("scratch"))?;
        let db = JobDb::open(&settings.state_dir.join("jobs.redb"))?;
        let queue = BuildQueue::new(settings.slots.iter().copied());
        let farm = Arc::new(Farm {
            state: Mutex::new(FarmState {
                queue,
                ..FarmState::default()
            }),
            db,
            store,
            launcher,
            inventory,
            metrics,
            settings,
            draining: AtomicBool::new(false),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
        });
        farm.recover().await?;
        Ok(farm)
    }

    /// The toolchains this farm builds with.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The store results go to.
    pub fn store(&self) -> &Arc<dyn ContentStore> {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, FarmState> {
        // A panic while holding the lock leaves consistent-enough bookkeeping; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-queues the jobs a previous daemon left queued or running.
    async fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let unfinished = self.db.unfinished()?;
        if !unfinished.is_empty() {
            tracing::info!(jobs = unfinished.len(), "re-queueing unfinished jobs");
        }
        for (mut job, request) in unfinished {
            job.state = v1::JobState::Queued as i32;
            let prepared = match prepare(request, &self.inventory, &self.settings.policy) {
                Ok(prepared) => prepared,
                Err(status) => {
                    let reason = failure(
                        v1::FailureKind::Infrastructure,
                        format!(
                            "after a daemon restart the request no longer prepares: {}",
                            status.message()
                        ),
                        Vec::new(),
                    );
                    self.end_detached_job(job, Err(reason))?;
                    continue;
                }
            };
            if !prepared.request.skip_cache
                && let Some(result) = self.cached_result(&prepared.key).await
            {
                self.end_detached_job(job, Ok(result))?;
                continue;
            }
            let mut state = self.lock();
            self.enqueue(&mut state, Arc::new(prepared), job)?;
        }
        let mut state = self.lock();
        self.dispatch(&mut state);
        Ok(())
    }

    /// Handles `Submit`.
    pub async fn submit(
        self: &Arc<Self>,
        request: v1::SubmitRequest,
    ) -> Result<v1::SubmitResponse, Status> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(Status::unavailable(
                "the daemon is shutting down; submit again shortly",
            ));
        }
        let prepared = prepare(request, &self.inventory, &self.settings.policy)?;
        let missing = self
            .store
            .find_missing(&prepared.input_digests())
            .await
            .map_err(|e| Status::unavailable(format!("the store: {e}")))?;
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Err(Status::failed_precondition(format!(
                "upload these blobs first: {}",
                names.join(", ")
            )));
        }
        let action_key = prepared.key.hex();
        if !prepared.request.skip_cache {
            if let Some(result) = self.cached_result(&prepared.key).await {
                self.metrics.cache_hit();
                return Ok(v1::SubmitResponse {
                    action_key,
                    outcome: Some(v1::submit_response::Outcome::Cached(result)),
                    joined: false,
                });
            }
            self.metrics.cache_miss();
        }

        let mut state = self.lock();
        let joinable = (!prepared.request.skip_cache)
            .then(|| state.joinable.get(&prepared.key).copied())
            .flatten();
        if joinable.is_none() && state.queue.len() >= self.settings.max_queued_jobs {
            return Err(Status::resource_exhausted(format!(
                "the queue is full ({} builds waiting); try again later",
                state.queue.len()
            )));
        }
        let job = new_job(&prepared);
        let id = self
            .enqueue(&mut state, Arc::new(prepared), job)
            .map_err(|e| Status::internal(e.to_string()))?;
        if joinable.is_some() {
            self.metrics.singleflight_joined();
        }
        self.dispatch(&mut state);
        let job = self
            .job_snapshot(&state, id)
            .ok_or_else(|| Status::internal("job vanished"))?;
        Ok(v1::SubmitResponse {
            action_key,
            outcome: Some(v1::submit_response::Outcome::Job(job)),
            joined: joinable.is_some(),
        })
    }

    /// Attaches `job` to the build of its key (creating the build if none can be joined),
    /// persisting new jobs. Returns the job id.
    fn enqueue(
        &self,
        state: &mut FarmState,
        prepared: Arc<PreparedBuild>,
        mut job: v1::Job,
    ) -> Result<u64, db::DbError> {
        if job.id == 0 {
            self.db.insert_new(&mut job, &prepared.request)?;
        } else {
            self.db.update(&job)?;
        }
        let priority = prepared.request.priority;
        let existing = (!prepared.request.skip_cache)
            .then(|| state.joinable.get(&prepared.key).copied())
            .flatten();
        let build_id = match existing {
            Some(build_id) => {
                state.queue.raise(build_id, priority);
                build_id
            }
            None => {
                state.next_build += 1;
                let build_id = state.next_build;
                let resource = Resource::Cpu;
                if !prepared.request.skip_cache {
                    state.joinable.insert(prepared.key, build_id);
                }
                state.queue.push(build_id, priority, resource);
                state.builds.insert(
                    build_id,
                    Build {
                        prepared,
                        jobs: BTreeSet::new(),
                        resource,
                        cancel: None,
                    },
                );
                build_id
            }
        };
        let id = job.id;
        if let Some(build) = state.builds.get_mut(&build_id) {
            build.jobs.insert(id);
            if build.cancel.is_some() {
                // Joined a running build: the job is running too.
                job.state = v1::JobState::Running as i32;
                job.started_at_ms = now_ms();
            }
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        state.jobs.insert(
            id,
            ActiveJob {
                job,
                build: build_id,
                events,
                last_progress: None,
            },
        );
        self.publish_queue_state(state);
        Ok(id)
    }

    /// Starts every queued build that has a free slot.
    fn dispatch(self: &Arc<Self>, state: &mut FarmState) {
        if self.draining.load(Ordering::SeqCst) {
            return;
        }
        while let Some((build_id, resource)) = state.queue.pop_runnable() {
            let Some(build) = state.builds.get_mut(&build_id) else {
                state.queue.release(resource);
                continue;
            };
            let (cancel_tx, cancel_rx) = watch::channel(false);
            build.cancel = Some(cancel_tx);
            let prepared = Arc::clone(&build.prepared);
            let job_ids: Vec<u64> = build.jobs.iter().copied().collect();
            let started = now_ms();
            for id in job_ids {
                if let Some(active) = state.jobs.get_mut(&id) {
                    active.job.state = v1::JobState::Running as i32;
                    active.job.started_at_ms = started;
                    active.job.attempts += 1;
                    active.job.queue_position = 0;
                    if let Err(e) = self.db.update(&active.job) {
                        tracing::error!(job = id, "cannot persist job start: {e}");
                    }
                    let _ = active.events.send(event(
                        id,
                        v1::job_event::Event::Started(v1::Started {
                            resource: resource.to_string(),
                            attempt: active.job.attempts,
                        }),
                    ));
                }
            }
            self.metrics.build_started();
            let farm = Arc::clone(self);
            tokio::spawn(async move {
                let outcome = farm.execute(build_id, &prepared, cancel_rx).await;
                farm.finish_build(build_id, outcome);
            });
        }
        self.publish_queue_state(state);
    }

    /// Sends each queued job its position, and updates the gauges.
    fn publish_queue_state(&self, state: &mut FarmState) {
        let mut queued = 0;
        let mut running = 0;
        for (id, active) in state.jobs.iter_mut() {
            match v1::JobState::try_from(active.job.state) {
                Ok(v1::JobState::Queued) => {
                    queued += 1;
                    let position = state.queue.position(active.build).unwrap_or(0);
                    if position != active.job.queue_position {
                        active.job.queue_position = position;
                        let _ = active.events.send(event(
                            *id,
                            v1::job_event::Event::Queued(v1::Queued { position }),
                        ));
                    }
                }
                Ok(v1::JobState::Running) => running += 1,
                _ => {}
            }
        }
        self.metrics.set_jobs_queued(queued);
        self.metrics.set_jobs_running(running);
    }

    /// Ends a build: every job still attached gets the outcome; the slot is freed; the next
    /// builds start.
    fn finish_build(
        self: &Arc<Self>,
        build_id: BuildId,
        outcome: Result<v1::ActionResult, v1::Failure>,
    ) {
        let mut state = self.lock();
        let Some(build) = state.builds.remove(&build_id) else {
            return;
        };
        if state.joinable.get(&build.prepared.key) == Some(&build_id) {
            state.joinable.remove(&build.prepared.key);
        }
        state.queue.release(build.resource);
        for id in &build.jobs {
            if let Some(active) = state.jobs.remove(id)
                && let Err(e) = self.end_job(active.job, &active.events, outcome.clone())
            {
                tracing::error!(job = id, "cannot persist the end of a job: {e}");
            }
        }
        self.dispatch(&mut state);
    }

    /// Records a job's end and tells its watchers.
    fn end_job(
        &self,
        mut job: v1::Job,
        events: &broadcast::Sender<v1::JobEvent>,
        outcome: Result<v1::ActionResult, v1::Failure>,
    ) -> Result<(), db::DbError> {
        job.finished_at_ms = now_ms();
        job.queue_position = 0;
        let (label, body) = match outcome {
            Ok(result) => {
                job.state = v1::JobState::Succeeded as i32;
                job.result = Some(result.clone());
                (
                    MetricOutcome::Succeeded,
                    v1::job_event::Event::Finished(result),
                )
            }
            Err(reason) => {
                let cancelled = reason.kind == v1::FailureKind::Cancelled as i32;
                job.state = if cancelled {
                    v1::JobState::Cancelled
                } else {
                    v1::JobState::Failed
                } as i32;
                job.failure = Some(reason.clone());
                (
                    if cancelled {
                        MetricOutcome::Cancelled
                    } else {
                        MetricOutcome::Failed
                    },
                    v1::job_event::Event::Failed(reason),
                )
            }
        };
        self.metrics.job_finished(label);
        self.db.update(&job)?;
        let _ = events.send(event(job.id, body));
        if job.id.is_multiple_of(64) {
            // Keep the table bounded without a scan per job.
            if let Err(e) = self.db.prune_finished(self.settings.job_history) {
                tracing::warn!("cannot prune job history: {e}");
            }
        }
        Ok(())
    }

    /// Ends a job that is not attached to a build (restart recovery).
    fn end_detached_job(
        &self,
        job: v1::Job,
        outcome: Result<v1::ActionResult, v1::Failure>,
    ) -> Result<(), db::DbError> {
        let (events, _) = broadcast::channel(1);
        self.end_job(job, &events, outcome)
    }

    /// The stored result for `key` if every blob it names is still in the store.
    pub async fn cached_result(&self, key: &ActionKey) -> Option<v1::ActionResult> {
        let bytes = match self.store.get_action_result(key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(key = %key.hex(), "cannot read the action result: {e}");
                return None;
            }
        };
        let result = match <v1::ActionResult as prost::Message>::decode(bytes) {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(key = %key.hex(), "undecodable action result, treated as a miss: {e}");
                return None;
            }
        };
        let digests = match run::result_digests(&result) {
            Ok(digests) => digests,
            Err(e) => {
                tracing::warn!(key = %key.hex(), "action result with a bad digest, treated as a miss: {e}");
                return None;
            }
        };
        match self.store.find_missing(&digests).await {
            Ok(missing) if missing.is_empty() => Some(result),
            Ok(missing) => {
                tracing::info!(key = %key.hex(), missing = missing.len(), "action result names blobs that are gone: a miss");
                None
            }
            Err(e) => {
                tracing::warn!(key = %key.hex(), "cannot check the result's blobs: {e}");
                None
            }
        }
    }

    /// A job's current state, from memory while active, else from the database.
    pub fn get_job(&self, id: u64) -> Result<v1::Job, Status> {
        if let Some(job) = self.job_snapshot(&self.lock(), id) {
            return Ok(job);
        }
        self.db
            .get(id)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    fn job_snapshot(&self, state: &FarmState, id: u64) -> Option<v1::Job> {
        state.jobs.get(&id).map(|active| active.job.clone())
    }

    /// Recent jobs, newest first, with live state for active ones.
    pub fn list_jobs(&self, limit: usize) -> Result<Vec<v1::Job>, Status> {
        let stored = self
            .db
            .recent(limit)
            .map_err(|e| Status::internal(e.to_string()))?;
        let state = self.lock();
        Ok(stored
            .into_iter()
            .map(|job| self.job_snapshot(&state, job.id).unwrap_or(job))
            .collect())
    }

    /// The events that describe a job now, and a subscription to what follows (none once the
    /// job has ended).
    pub fn watch(
        &self,
        id: u64,
    ) -> Result<(Vec<v1::JobEvent>, Option<broadcast::Receiver<v1::JobEvent>>), Status> {
        {
            let state = self.lock();
            if let Some(active) = state.jobs.get(&id) {
                let receiver = active.events.subscribe();
                let mut now = Vec::new();
                match v1::JobState::try_from(active.job.state) {
                    Ok(v1::JobState::Queued) => now.push(event(
                        id,
                        v1::job_event::Event::Queued(v1::Queued {
                            position: active.job.queue_position,
                        }),
                    )),
                    Ok(v1::JobState::Running) => {
                        let resource = state
                            .builds
                            .get(&active.build)
                            .map(|b| b.resource.to_string())
                            .unwrap_or_default();
                        now.push(event(
                            id,
                            v1::job_event::Event::Started(v1::Started {
                                resource,
                                attempt: active.job.attempts,
                            }),
                        ));
                        if let Some(progress) = &active.last_progress {
                            now.push(event(id, v1::job_event::Event::Progress(progress.clone())));
                        }
                    }
                    _ => {}
                }
                return Ok((now, Some(receiver)));
            }
        }
        let job = self.get_job(id)?;
        Ok((terminal_event(&job).into_iter().collect(), None))
    }

    /// Cancels a job. Its build stops only if no other job waits for it.
    pub fn cancel(&self, id: u64) -> Result<v1::Job, Status> {
        let mut state = self.lock();
        let Some(active) = state.jobs.remove(&id) else {
            drop(state);
            return self.get_job(id);
        };
        let build_id = active.build;
        let mut stop_build = false;
        if let Some(build) = state.builds.get_mut(&build_id) {
            build.jobs.remove(&id);
            stop_build = build.jobs.is_empty();
        }
        if stop_build {
            let was_queued = state.queue.remove(build_id);
            let key = state.builds.get(&build_id).map(|build| {
                if let Some(cancel) = &build.cancel {
                    let _ = cancel.send(true);
                }
                build.prepared.key
            });
            if let Some(key) = key
                && state.joinable.get(&key) == Some(&build_id)
            {
                state.joinable.remove(&key);
            }
            if was_queued {
                state.builds.remove(&build_id);
            }
        }
        let reason = failure(
            v1::FailureKind::Cancelled,
            "cancelled by request",
            Vec::new(),
        );
        let mut job = active.job;
        self.end_job(job.clone(), &active.events, Err(reason.clone()))
            .map_err(|e| Status::internal(e.to_string()))?;
        job.state = v1::JobState::Cancelled as i32;
        job.failure = Some(reason);
        self.publish_queue_state(&mut state);
        Ok(job)
    }

    /// Fans a build's progress or log line out to the jobs attached to it.
    fn broadcast(&self, build_id: BuildId, body: v1::job_event::Event) {
        let mut state = self.lock();
        let Some(build) = state.builds.get(&build_id) else {
            return;
        };
        let ids: Vec<u64> = build.jobs.iter().copied().collect();
        for id in ids {
            if let Some(active) = state.jobs.get_mut(&id) {
                if let v1::job_event::Event::Progress(progress) = &body {
                    active.last_progress = Some(progress.clone());
                }
                let _ = active.events.send(event(id, body.clone()));
            }
        }
    }

    /// Resource slots: capacity and use.
    pub fn slots(&self) -> Vec<v1::ResourceSlots> {
        self.lock()
            .queue
            .slots()
            .into_iter()
            .map(|(resource, slots, in_use)| v1::ResourceSlots {
                resource: resource.to_string(),
                slots,
                in_use,
            })
            .collect()
    }

    /// Stops taking work; waits up to `grace` for running builds. Builds still running after
    /// that are left to die with the daemon; their jobs stay queued for the next start.
    pub async fn drain(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self.lock().queue.running();
            if running == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    running,
                    "drain timeout: running builds will be re-run by the next daemon"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the farm refuses new work.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// A new, queued job for `prepared` (id assigned when persisted).
fn new_job(prepared: &PreparedBuild) -> v1::Job {
    let request = &prepared.request;
    v1::Job {
        action_key: prepared.key.hex(),
        state: v1::JobState::Queued as i32,
        manifest_path: request
            .manifest
            .as_ref()
            .map(|m| m.path.clone())
            .unwrap_or_default(),
        variant: request.variant.clone(),
        client: request.client.clone(),
        priority: request.priority,
        submitted_at_ms: now_ms(),
        ..v1::Job::default()
    }
}

/// The final event of an ended job.
pub fn terminal_event(job: &v1::Job) -> Option<v1::JobEvent> {
    if !is_terminal(job) {
        return None;
    }
    let body = match (&job.result, &job.failure) {
        (Some(result), _) => v1::job_event::Event::Finished(result.clone()),
        (None, Some(reason)) => v1::job_event::Event::Failed(reason.clone()),
        (None, None) => return None,
    };
    Some(v1::JobEvent {
        job_id: job.id,
        at_ms: job.finished_at_ms,
        event: Some(body),
    })
}
