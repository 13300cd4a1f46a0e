//! Reading jobs: their state, their event streams, the stored result of a key, slots.

use tokio::sync::broadcast;
use tonic::Status;
use trtfarm_proto::v1;
use trtfarm_store::ActionKey;

use super::db::is_terminal;
use super::{Farm, FarmState, event};

impl Farm {
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
        let digests = match crate::publish::result_digests(&result) {
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

    /// A job's current state: from the farm's database in a farm; else from memory while
    /// active, else from this daemon's database.
    pub async fn get_job(&self, id: u64) -> Result<v1::Job, Status> {
        if let Some(shared) = &self.shared {
            return shared.get_job(id).await;
        }
        self.get_local_job(id)
    }

    pub(super) fn get_local_job(&self, id: u64) -> Result<v1::Job, Status> {
        if let Some(job) = self.job_snapshot(&self.lock(), id) {
            return Ok(job);
        }
        self.db
            .get(id)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no job {id} (`trtfarm ls` lists the jobs this daemon knows)"
                ))
            })
    }

    pub(super) fn job_snapshot(&self, state: &FarmState, id: u64) -> Option<v1::Job> {
        state.jobs.get(&id).map(|active| active.job.clone())
    }

    /// Recent jobs (the farm's, in a farm), newest first, with live state for active ones.
    pub async fn list_jobs(&self, limit: usize) -> Result<Vec<v1::Job>, Status> {
        if let Some(shared) = &self.shared {
            return shared.list_jobs(limit).await;
        }
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
                        let build = state.builds.get(&active.build);
                        let resource = build
                            .and_then(|b| b.resource)
                            .map(|r| r.to_string())
                            .unwrap_or_default();
                        now.push(event(
                            id,
                            v1::job_event::Event::Started(v1::Started {
                                resource,
                                attempt: active.job.attempts,
                            }),
                        ));
                        for line in build.iter().flat_map(|b| &b.recent_log) {
                            now.push(event(id, v1::job_event::Event::Log(line.clone())));
                        }
                        if let Some(progress) = &active.last_progress {
                            now.push(event(id, v1::job_event::Event::Progress(progress.clone())));
                        }
                    }
                    _ => {}
                }
                return Ok((now, Some(receiver)));
            }
        }
        let job = self.get_local_job(id)?;
        Ok((terminal_event(&job).into_iter().collect(), None))
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
