//! Jobs: what clients submitted, and the builds that serve them.
//!
//! A *job* is one submission (persisted, with an id clients hold). A *build* is one run of a
//! builder process for an action key (in memory). Identical concurrent submissions are jobs attached to
//! one build (single-flight); cancelling a job detaches it, and the build stops only when no
//! job waits for it any more.

pub mod db;
mod dispatch;
mod ending;
pub mod memory;
pub mod postgres;
mod queries;
pub mod queue;
mod shared_farm;
mod store_retry;
mod timing_caches;

pub use queries::terminal_event;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::{broadcast, watch};
use tonic::Status;
use trtfarm_proto::v1;
use trtfarm_store::{ActionKey, ContentStore};

use crate::build::builder_process::{BuildRoot, BuilderLauncher};
use crate::ingest::request::{PreparedBuild, RequestPolicy, prepare};
use crate::ingest::timing::resolve_timing_cache;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::timing_cache::TimingCacheRegistry;
use db::JobDb;
use queue::{BuildId, BuildQueue, Demand, Resource};

/// Events buffered per watcher before the slowest one starts missing log lines.
const EVENT_BUFFER: usize = 1024;

/// A running build's latest log lines, replayed to a watcher that arrives late (a client
/// watches right after it submits, by when a fast prepare step may have said its part).
const RECENT_LOG_LINES: usize = 256;

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
    /// RLIMIT_AS for each builder process.
    pub worker_memory: Option<u64>,
    /// Finished jobs kept in the database.
    pub job_history: usize,
    /// How requests are checked.
    pub policy: RequestPolicy,
    /// The builder program (`trtfarm-builder`), installed into the build root.
    pub builder_program: PathBuf,
    /// The farm's shared queue, when this daemon is one of a farm's (`[queue] url`).
    pub shared: Option<Arc<postgres::SharedQueue>>,
}

/// The farm: job table, single-flight map, queue, running builds.
pub struct Farm {
    state: Mutex<FarmState>,
    db: JobDb,
    pub(crate) store: Arc<dyn ContentStore>,
    /// The same store with its writes retried through an outage, for a finished build's
    /// results (see `store_retry`).
    pub(crate) publishing: Arc<dyn ContentStore>,
    pub(crate) launcher: Arc<dyn BuilderLauncher>,
    pub(crate) inventory: Inventory,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: FarmSettings,
    /// Where builders run: fixed-length paths, whatever the state dir (see `BuildRoot`).
    pub(crate) build_root: BuildRoot,
    /// One lock per model conversion in progress, so builds that need the same conversion
    /// run it once.
    pub(crate) prepare_gates: Mutex<HashMap<ActionKey, Arc<tokio::sync::Mutex<()>>>>,
    draining: AtomicBool,
    pub(crate) host: String,
    /// The farm's database, for a daemon of a farm: jobs live there, not in `db`.
    shared: Option<Arc<postgres::SharedQueue>>,
    /// What builds of each model need, for admitting builds by memory.
    pub(crate) memory: memory::MemoryBook,
    /// Set while a dispatch waits for memory to free up.
    memory_wait: AtomicBool,
    /// Where clients reach this daemon, once it listens (for `GetFarm`).
    pub(crate) endpoint: std::sync::OnceLock<String>,
    /// When it started, Unix milliseconds.
    pub(crate) started_at_ms: i64,
    /// Recorded timing caches: in the store, indexed in the farm's database when there is one.
    pub(crate) timing_caches: TimingCacheRegistry,
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
    /// The slot it holds while running; `None` while queued.
    resource: Option<Resource>,
    /// Set while running: `true` stops the builder.
    cancel: Option<watch::Sender<bool>>,
    /// Its latest log lines, oldest first.
    recent_log: VecDeque<v1::LogLine>,
    /// Set for a build claimed from a farm's shared queue: its jobs are there.
    shared: Option<shared_farm::SharedRun>,
    /// Its builder's process id, once started.
    pid: Option<u32>,
    /// The memory it is expected to need.
    memory_need: u64,
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
        build_log: None,
    }
}

impl Farm {
    /// Opens the job database and re-queues every job a previous daemon left unfinished.
    pub async fn start(
        settings: FarmSettings,
        store: Arc<dyn ContentStore>,
        launcher: Arc<dyn BuilderLauncher>,
        inventory: Inventory,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Farm>> {
        let mut settings = settings;
        std::fs::create_dir_all(settings.state_dir.join("scratch"))?;
        let db = JobDb::open(&settings.state_dir.join("jobs.redb"))?;
        // After the database: its lock keeps a second daemon on this state dir from taking over
        // the same build root.
        let libraries: Vec<_> = inventory
            .available
            .iter()
            .filter_map(|t| Some((t.flavour, t.library_dir.clone()?)))
            .collect();
        let build_root =
            BuildRoot::prepare(&settings.state_dir, &settings.builder_program, &libraries)
                .context("cannot prepare the build root")?;
        // Keys name the builder as installed in the root (see action_key).
        settings.policy.builder_digest = build_root.program_digest().to_owned();
        let queue = BuildQueue::new(settings.slots.iter().copied());
        let shared = settings.shared.take();
        let publishing = store_retry::publishing_store(Arc::clone(&store), Arc::clone(&metrics));
        // Over the publishing store: a recorded cache survives a store outage like the plan
        // it was recorded with.
        let timing_caches = match &shared {
            Some(shared) => TimingCacheRegistry::with_index(
                Arc::clone(&publishing),
                Arc::new(postgres::timing_caches::PostgresIndex::new(Arc::clone(
                    shared,
                ))),
            ),
            None => TimingCacheRegistry::new(Arc::clone(&publishing)),
        };
        let farm = Arc::new(Farm {
            state: Mutex::new(FarmState {
                queue,
                ..FarmState::default()
            }),
            db,
            publishing,
            store,
            launcher,
            inventory,
            metrics,
            settings,
            build_root,
            prepare_gates: Mutex::default(),
            draining: AtomicBool::new(false),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            shared,
            memory: memory::MemoryBook::default(),
            memory_wait: AtomicBool::new(false),
            endpoint: std::sync::OnceLock::new(),
            started_at_ms: now_ms(),
            timing_caches,
        });
        if farm.shared.is_none() {
            farm.recover().await?;
        } else if !farm.db.unfinished()?.is_empty() {
            tracing::warn!(
                "this daemon's own queue holds unfinished jobs from before it joined a farm; \
                 they are not run (start it without [queue] url to finish them)"
            );
        }
        Ok(farm)
    }

    /// Checks `request` against `inventory` and resolves its timing cache: the build as it
    /// will run, with its final action key.
    pub(crate) async fn prepare_request(
        &self,
        request: v1::SubmitRequest,
        inventory: &Inventory,
    ) -> Result<PreparedBuild, Status> {
        let mut prepared = prepare(request, inventory, &self.settings.policy)?;
        self.resolve_timing(&mut prepared).await?;
        Ok(prepared)
    }

    /// Resolves `prepared`'s timing cache against this farm's registry (see `ingest::timing`).
    pub(crate) async fn resolve_timing(&self, prepared: &mut PreparedBuild) -> Result<(), Status> {
        resolve_timing_cache(prepared, &self.timing_caches, &self.settings.policy).await
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
            let prepared = match self.prepare_request(request, &self.inventory).await {
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
        let (prepared, requirement) = match &self.shared {
            Some(shared) => {
                let (mut prepared, requirement) = self.prepare_for_farm(shared, request).await?;
                self.resolve_timing(&mut prepared).await?;
                (prepared, Some(requirement))
            }
            None => (self.prepare_request(request, &self.inventory).await?, None),
        };
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
        let resolved = v1::SubmitResponse {
            action_key: prepared.key.hex(),
            outcome: None,
            joined: false,
            toolchain: Some(v1::ToolchainIdentity {
                flavour: prepared.toolchain.flavour.to_string(),
                version: prepared.toolchain.version.to_string(),
                library_digest: prepared.toolchain.library.hex(),
            }),
            target: prepared.target_text(),
            timing_cache: prepared.timing_cache_load().as_ref().map(Into::into),
        };
        if !prepared.request.skip_cache
            && let Some(result) = self.cached_result(&prepared.key).await
        {
            if !prepared.request.dry_run {
                self.metrics.cache_hit();
            }
            return Ok(v1::SubmitResponse {
                outcome: Some(v1::submit_response::Outcome::Cached(result)),
                ..resolved
            });
        }
        if prepared.request.dry_run {
            return Ok(resolved);
        }
        if !prepared.request.skip_cache {
            self.metrics.cache_miss();
        }
        if let (Some(shared), Some(requirement)) = (&self.shared, &requirement) {
            let (job, joined) = shared
                .enqueue(&prepared, requirement, self.settings.max_queued_jobs)
                .await?;
            if joined {
                self.metrics.singleflight_joined();
            }
            return Ok(v1::SubmitResponse {
                outcome: Some(v1::submit_response::Outcome::Job(job)),
                joined,
                ..resolved
            });
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
            outcome: Some(v1::submit_response::Outcome::Job(job)),
            joined: joinable.is_some(),
            ..resolved
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
                let demand = if prepared.gpu_candidates.is_empty() {
                    Demand::cpu()
                } else {
                    Demand::any_gpu(prepared.gpu_candidates.iter().copied())
                };
                if !prepared.request.skip_cache {
                    state.joinable.insert(prepared.key, build_id);
                }
                state.queue.push(build_id, priority, demand);
                state.builds.insert(
                    build_id,
                    Build {
                        prepared,
                        jobs: BTreeSet::new(),
                        resource: None,
                        cancel: None,
                        recent_log: VecDeque::new(),
                        shared: None,
                        pid: None,
                        memory_need: 0,
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

    /// Records the process id of a build's builder (for its memory, while it runs).
    pub(crate) fn note_builder_pid(&self, build_id: BuildId, pid: u32) {
        if let Some(build) = self.lock().builds.get_mut(&build_id) {
            build.pid = Some(pid);
        }
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
