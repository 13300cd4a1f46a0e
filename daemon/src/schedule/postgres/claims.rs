//! Claiming builds and holding them: the lease a running build's daemon renews, the fence that
//! keeps a daemon which lost its lease from publishing or ending the build, and the sweep that
//! hands a silent daemon's builds to others.

use std::future::Future;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::Status;
use trtfarm_proto::v1;

use super::{BUILD_CHANNEL, MAX_ATTEMPTS, SharedQueue, WORK_CHANNEL};
use crate::schedule::{failure, now_ms};

/// How long a finished build's daemon keeps trying to reach the database to record the end.
const FINISH_PATIENCE: Duration = Duration::from_secs(600);

/// A build this daemon claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its row.
    pub id: i64,
    /// The fence of this claim: only it may end the build.
    pub fence: i64,
    /// The how-manieth run this is.
    pub attempt: i32,
    /// The request it builds.
    pub request: v1::SubmitRequest,
    /// Its action key, as computed where it was submitted.
    pub action_key: String,
}

/// The lease on a build is gone: another daemon has it (or will), and this one may not publish
/// its result or end it.
#[derive(Debug, thiserror::Error)]
#[error(
    "this daemon's lease on the build ran out (it could not renew it in time) and the farm \
     gave the build to another daemon; this run's result is not published"
)]
pub struct FenceLost;

/// What the claiming daemon can take now.
pub struct Offer<'a> {
    /// Its builder's digest.
    pub builder_digest: &'a str,
    /// Its toolchains, as [`super::registry::toolchain_text`] writes them.
    pub toolchains: &'a [String],
    /// Whether a CPU build slot is free.
    pub cpu_free: bool,
    /// The GPU targets with a free slot.
    pub gpu_targets: &'a [String],
    /// Whether it runs MPS.
    pub mps: bool,
}

impl SharedQueue {
    /// Claims the next queued build this daemon can run, if any: highest priority first, then
    /// oldest; rows other daemons are claiming are skipped, not waited for.
    pub async fn claim(&self, offer: &Offer<'_>) -> Result<Option<Claimed>, Status> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH next AS (
                     SELECT id FROM trtfarm_builds
                     WHERE state = 'queued' AND builder_digest = $1 AND toolchain = ANY($2)
                       AND ((gpu_target IS NULL AND $3)
                            OR (gpu_target = ANY($4) AND (NOT needs_mps OR $5)))
                     ORDER BY priority DESC, id
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 UPDATE trtfarm_builds b SET
                     state = 'running', owner = $6, fence = b.fence + 1,
                     attempts = b.attempts + 1, started_at_ms = $7, cancel_requested = false,
                     lease_until = now() + make_interval(secs => $8)
                 FROM next WHERE b.id = next.id
                 RETURNING b.id, b.fence, b.attempts, b.request, b.action_key",
                &[
                    &offer.builder_digest,
                    &offer.toolchains,
                    &offer.cpu_free,
                    &offer.gpu_targets,
                    &offer.mps,
                    &self.daemon_id,
                    &now_ms(),
                    &self.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let request: Vec<u8> = row.get(3);
        let claimed = Claimed {
            id: row.get(0),
            fence: row.get(1),
            attempt: row.get(2),
            request: v1::SubmitRequest::decode(&*request)
                .map_err(|e| Status::internal(format!("a queued request does not decode: {e}")))?,
            action_key: row.get(4),
        };
        let _ = self.builds.send(claimed.id);
        client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&BUILD_CHANNEL, &claimed.id.to_string()],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Some(claimed))
    }

    /// Renews the lease of a build this daemon runs. `Ok(Some(cancel))` while held (`cancel`:
    /// no job waits any more); `Ok(None)` once lost.
    pub async fn renew(&self, id: i64, fence: i64) -> Result<Option<bool>, Status> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE trtfarm_builds SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND fence = $2 AND state = 'running'
                 RETURNING cancel_requested",
                &[&id, &fence, &self.lease.as_secs_f64()],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Runs `work` (publishing a result) while holding the build's row with the lease renewed,
    /// so no other daemon can take the build over in the meantime; refuses if the lease is
    /// already gone. Waits through a database outage (the work has not run yet).
    pub async fn fenced<T>(
        &self,
        id: i64,
        fence: i64,
        work: impl Future<Output = T>,
    ) -> Result<T, FenceHeld> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            let held = match self.client().await {
                Ok(mut client) => match self.hold(&mut client, id, fence).await {
                    Ok(Some(txn)) => {
                        let output = work.await;
                        if let Err(e) = txn.commit().await {
                            tracing::warn!(build = id, "cannot release the build's row: {e}");
                        }
                        return Ok(output);
                    }
                    Ok(None) => return Err(FenceHeld::Lost(FenceLost)),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if started.elapsed() >= FINISH_PATIENCE {
                return Err(FenceHeld::Unreachable(held));
            }
            tracing::warn!(
                build = id,
                "waiting for the farm's database to publish: {held}"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// A transaction holding the build's row, if the fence is current. Dropped unfinished (a
    /// panic in the work it guards), it rolls back before the connection returns to the pool.
    async fn hold<'a>(
        &self,
        client: &'a mut deadpool_postgres::Object,
        id: i64,
        fence: i64,
    ) -> Result<Option<deadpool_postgres::Transaction<'a>>, Status> {
        let txn = client
            .transaction()
            .await
            .map_err(|e| self.unavailable(e))?;
        let held = txn
            .query_opt(
                "UPDATE trtfarm_builds SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND fence = $2 AND state = 'running' RETURNING 1",
                &[&id, &fence, &self.lease.as_secs_f64()],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(held.map(|_| txn))
    }

    /// Records a build's end for every job still waiting for it, if this daemon still holds it.
    /// Retries through a database outage. Returns whether the end was recorded.
    pub async fn finish(
        &self,
        id: i64,
        fence: i64,
        outcome: &Result<v1::ActionResult, v1::Failure>,
    ) -> bool {
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.try_finish(id, fence, outcome).await {
                Ok(recorded) => return recorded,
                Err(e) if started.elapsed() < FINISH_PATIENCE => {
                    tracing::warn!(build = id, "cannot record the build's end yet: {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(
                        build = id,
                        "gave up recording the build's end: {e}; its lease runs out and another \
                         daemon finishes it"
                    );
                    return false;
                }
            }
        }
    }

    async fn try_finish(
        &self,
        id: i64,
        fence: i64,
        outcome: &Result<v1::ActionResult, v1::Failure>,
    ) -> Result<bool, Status> {
        let (build_state, job_state, result, failure) = match outcome {
            Ok(result) => (
                "succeeded",
                v1::JobState::Succeeded,
                Some(result.encode_to_vec()),
                None,
            ),
            Err(reason) if reason.kind == v1::FailureKind::Cancelled as i32 => (
                "cancelled",
                v1::JobState::Cancelled,
                None,
                Some(reason.encode_to_vec()),
            ),
            Err(reason) => (
                "failed",
                v1::JobState::Failed,
                None,
                Some(reason.encode_to_vec()),
            ),
        };
        let mut client = self.client().await?;
        let txn = client
            .transaction()
            .await
            .map_err(|e| self.unavailable(e))?;
        let ended = txn
            .execute(
                "UPDATE trtfarm_builds SET state = $3, finished_at = now(), owner = NULL,
                     lease_until = NULL
                 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[&id, &fence, &build_state],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        if ended == 0 {
            return Ok(false);
        }
        end_jobs(&txn, id, job_state, &result, &failure)
            .await
            .map_err(|e| self.unavailable(e))?;
        txn.execute(
            "SELECT pg_notify($1, $2)",
            &[&BUILD_CHANNEL, &id.to_string()],
        )
        .await
        .map_err(|e| self.unavailable(e))?;
        txn.commit().await.map_err(|e| self.unavailable(e))?;
        Ok(true)
    }

    /// Puts back this daemon's running builds (a previous run of it on this state directory
    /// died holding them, or it is shutting down with builds still running).
    pub async fn release_own(&self) -> Result<u64, Status> {
        let client = self.client().await?;
        let released = client
            .execute(
                "UPDATE trtfarm_builds SET state = 'queued', owner = NULL, lease_until = NULL,
                     fence = fence + 1
                 WHERE owner = $1 AND state = 'running'",
                &[&self.daemon_id],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        if released > 0 {
            client
                .execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        Ok(released)
    }

    /// Hands the builds whose lease ran out to other daemons (or fails them after
    /// [`MAX_ATTEMPTS`] runs, or ends them when no job waits any more), and forgets old rows.
    pub async fn sweep(&self, job_history: u64) -> Result<(), Status> {
        let mut client = self.client().await?;
        let txn = client
            .transaction()
            .await
            .map_err(|e| self.unavailable(e))?;
        let note = v1::JobEvent {
            job_id: 0,
            at_ms: now_ms(),
            event: Some(v1::job_event::Event::Log(v1::LogLine {
                severity: "farm".into(),
                text: "the daemon running this build stopped renewing its lease; the build is \
                       queued again for another daemon"
                    .into(),
            })),
        };
        let requeued = txn
            .query(
                "WITH lost AS (
                     UPDATE trtfarm_builds SET state = 'queued', owner = NULL, lease_until = NULL,
                         fence = fence + 1
                     WHERE state = 'running' AND lease_until < now() AND attempts < $1
                       AND NOT cancel_requested
                     RETURNING id)
                 INSERT INTO trtfarm_events (build_id, body) SELECT id, $2 FROM lost
                 RETURNING build_id",
                &[&MAX_ATTEMPTS, &note.encode_to_vec()],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        let abandoned = txn
            .query(
                "UPDATE trtfarm_builds SET
                     state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                     owner = NULL, lease_until = NULL, fence = fence + 1, finished_at = now()
                 WHERE state = 'running' AND lease_until < now()
                 RETURNING id",
                &[],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        let gave_up = failure(
            v1::FailureKind::Infrastructure,
            format!(
                "the daemons running this build stopped renewing their lease {MAX_ATTEMPTS} \
                 times (killed, out of memory, or cut off from the database); see `trtfarm farm` \
                 and the daemons' logs, then submit again"
            ),
            Vec::new(),
        );
        for row in &abandoned {
            let id: i64 = row.get(0);
            end_jobs(
                &txn,
                id,
                v1::JobState::Failed,
                &None,
                &Some(gave_up.encode_to_vec()),
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        }
        for row in requeued.iter().chain(&abandoned) {
            let id: i64 = row.get(0);
            txn.execute(
                "SELECT pg_notify($1, $2)",
                &[&BUILD_CHANNEL, &id.to_string()],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        }
        if !requeued.is_empty() {
            txn.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
                .await
                .map_err(|e| self.unavailable(e))?;
            tracing::warn!(
                builds = requeued.len(),
                "re-queued builds whose daemon stopped renewing its lease"
            );
        }
        // Bounded history: events of builds ended an hour ago, jobs beyond the history,
        // builds no job refers to, daemons silent for a day.
        txn.batch_execute(
            "DELETE FROM trtfarm_events e USING trtfarm_builds b
                 WHERE e.build_id = b.id AND b.finished_at < now() - interval '1 hour';
             DELETE FROM trtfarm_daemons WHERE heartbeat_at < now() - interval '1 day';",
        )
        .await
        .map_err(|e| self.unavailable(e))?;
        txn.execute(
            "DELETE FROM trtfarm_jobs WHERE state <> $1
                 AND id <= (SELECT max(id) FROM trtfarm_jobs) - $2",
            &[&(v1::JobState::Queued as i16), &(job_history as i64)],
        )
        .await
        .map_err(|e| self.unavailable(e))?;
        txn.batch_execute(
            "DELETE FROM trtfarm_builds b WHERE b.finished_at IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM trtfarm_jobs j WHERE j.build_id = b.id);",
        )
        .await
        .map_err(|e| self.unavailable(e))?;
        txn.commit().await.map_err(|e| self.unavailable(e))?;
        Ok(())
    }
}

/// Why a fenced publish did not run.
#[derive(Debug, thiserror::Error)]
pub enum FenceHeld {
    /// Another daemon has the build.
    #[error(transparent)]
    Lost(FenceLost),
    /// The database stayed away.
    #[error("the farm's database stayed unreachable: {}", .0.message())]
    Unreachable(Status),
}

/// Ends the jobs still waiting for build `id`.
async fn end_jobs(
    txn: &tokio_postgres::Transaction<'_>,
    id: i64,
    state: v1::JobState,
    result: &Option<Vec<u8>>,
    failure: &Option<Vec<u8>>,
) -> Result<u64, tokio_postgres::Error> {
    txn.execute(
        "UPDATE trtfarm_jobs SET state = $2, finished_at_ms = $3, result = $4, failure = $5
         WHERE build_id = $1 AND state = $6",
        &[
            &id,
            &(state as i16),
            &now_ms(),
            result,
            failure,
            &(v1::JobState::Queued as i16),
        ],
    )
    .await
}
