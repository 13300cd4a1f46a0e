//! Ending jobs and builds: a build's outcome reaching every job attached to it, cancellation
//! that detaches one job and stops a build only when nobody waits for it, and draining.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::broadcast;
use tonic::Status;
use trtfarm_proto::v1;

use super::queue::BuildId;
use super::{Farm, db, event, failure, now_ms};
use crate::metrics::Outcome as MetricOutcome;

impl Farm {
    /// Ends a build: every job still attached gets the outcome; the slot is freed; the next
    /// builds start.
    pub(super) fn finish_build(
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
        if let Some(resource) = build.resource {
            state.queue.release(resource);
        }
        if let Some(run) = build.shared {
            self.metrics
                .set_jobs_running(u64::from(state.queue.running()));
            self.finish_shared(run, outcome);
            return;
        }
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
    pub(super) fn end_job(
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
    pub(super) fn end_detached_job(
        &self,
        job: v1::Job,
        outcome: Result<v1::ActionResult, v1::Failure>,
    ) -> Result<(), db::DbError> {
        let (events, _) = broadcast::channel(1);
        self.end_job(job, &events, outcome)
    }

    /// Cancels a job. Its build stops only if no other job waits for it.
    pub async fn cancel(&self, id: u64) -> Result<v1::Job, Status> {
        if let Some(shared) = &self.shared {
            return shared.cancel(id).await;
        }
        self.cancel_local(id)
    }

    fn cancel_local(&self, id: u64) -> Result<v1::Job, Status> {
        let mut state = self.lock();
        let Some(active) = state.jobs.remove(&id) else {
            drop(state);
            return self.get_local_job(id);
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
    pub(crate) fn broadcast(&self, build_id: BuildId, body: v1::job_event::Event) {
        let mut state = self.lock();
        let Some(build) = state.builds.get_mut(&build_id) else {
            return;
        };
        if let Some(run) = &build.shared {
            run.send(body);
            return;
        }
        if let v1::job_event::Event::Log(line) = &body {
            if build.recent_log.len() == super::RECENT_LOG_LINES {
                build.recent_log.pop_front();
            }
            build.recent_log.push_back(line.clone());
        }
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

    /// Stops taking work; waits up to `grace` for running builds. Builds still running after
    /// that are left to die with the daemon; their jobs stay queued for the next start.
    pub async fn drain(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        let running = loop {
            let running = self.lock().queue.running();
            if running == 0 {
                break running;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    running,
                    "drain timeout: running builds will be re-run by the next daemon"
                );
                break running;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.leave_farm(running).await;
    }

    /// Whether the farm refuses new work.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
