//! Starting queued builds: a free slot of the build's resource and room in memory beside the
//! builds already running (see [`super::memory`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use trtfarm_proto::v1;

use super::{Farm, FarmState, event, memory, now_ms};

impl Farm {
    /// Starts every queued build that has a free slot.
    pub(super) fn dispatch(self: &Arc<Self>, state: &mut FarmState) {
        if self.draining.load(Ordering::SeqCst) {
            return;
        }
        while let Some((build_id, resource)) = state.queue.next_runnable() {
            let need = state
                .builds
                .get(&build_id)
                .map_or(0, |build| self.memory.estimate(&build.prepared));
            if !self.memory_admits(state, need) {
                self.dispatch_when_memory_frees();
                break;
            }
            state.queue.start(build_id, resource);
            let Some(build) = state.builds.get_mut(&build_id) else {
                state.queue.release(resource);
                continue;
            };
            build.memory_need = need;
            let (cancel_tx, cancel_rx) = watch::channel(false);
            build.cancel = Some(cancel_tx);
            build.resource = Some(resource);
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
                let outcome = farm.execute(build_id, &prepared, resource, cancel_rx).await;
                farm.finish_build(build_id, outcome);
            });
        }
        self.publish_queue_state(state);
    }

    /// Whether a build needing `need` bytes fits beside the builds running now.
    pub(super) fn memory_admits(&self, state: &FarmState, need: u64) -> bool {
        let running: Vec<(u64, u64)> = state
            .builds
            .values()
            .filter(|build| build.resource.is_some())
            .map(|build| {
                let now = build
                    .pid
                    .and_then(crate::build::builder_process::usage::sample)
                    .map_or(0, |sample| sample.rss);
                (build.memory_need, now)
            })
            .collect();
        memory::admits(need, memory::available(), &running)
    }

    /// Looks again in a second: memory may free up without any build ending (other processes).
    fn dispatch_when_memory_frees(self: &Arc<Self>) {
        if self.memory_wait.swap(true, Ordering::SeqCst) {
            return;
        }
        let farm = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            farm.memory_wait.store(false, Ordering::SeqCst);
            let mut state = farm.lock();
            farm.dispatch(&mut state);
        });
    }
}
