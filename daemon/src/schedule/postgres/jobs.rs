//! Jobs in the farm's database: submitting (attaching to the build of the key in progress, or
//! queueing a new one), reading, listing and cancelling.

use prost::Message;
use tokio_postgres::Row;
use tonic::Status;
use trtfarm_proto::v1;

use super::registry::Requirement;
use super::{BUILD_CHANNEL, CANCEL_CHANNEL, SharedQueue, WORK_CHANNEL};
use crate::ingest::request::PreparedBuild;
use crate::schedule::{failure, now_ms};

/// A job row's state while it waits for its build (queued or running is the build's).
const ACTIVE: i16 = v1::JobState::Queued as i16;

/// The columns [`job_from_row`] reads.
const JOB_COLUMNS: &str = "j.id, b.action_key, j.state, j.manifest_path, j.variant, j.client, \
     j.priority, j.submitted_at_ms, b.started_at_ms, j.finished_at_ms, j.result, j.failure, \
     b.attempts, b.state, b.id, b.priority";

/// A job and the build it waits for.
pub(crate) struct JobRow {
    pub job: v1::Job,
    pub build_id: i64,
    build_priority: i32,
}

fn job_from_row(row: &Row) -> JobRow {
    let stored: i16 = row.get(2);
    let build_state: &str = row.get(13);
    let active = stored == ACTIVE;
    let state = match (active, build_state) {
        (true, "running") => v1::JobState::Running as i32,
        (true, _) => v1::JobState::Queued as i32,
        (false, _) => i32::from(stored),
    };
    let decode_result =
        |bytes: Option<Vec<u8>>| bytes.and_then(|b| v1::ActionResult::decode(&*b).ok());
    let decode_failure = |bytes: Option<Vec<u8>>| bytes.and_then(|b| v1::Failure::decode(&*b).ok());
    let started: i64 = row.get(8);
    let attempts: i32 = row.get(12);
    JobRow {
        job: v1::Job {
            id: row.get::<_, i64>(0) as u64,
            action_key: row.get(1),
            state,
            manifest_path: row.get(3),
            variant: row.get(4),
            client: row.get(5),
            priority: row.get(6),
            submitted_at_ms: row.get(7),
            started_at_ms: if state == v1::JobState::Queued as i32 {
                0
            } else {
                started
            },
            finished_at_ms: row.get(9),
            queue_position: 0,
            result: decode_result(row.get(10)),
            failure: decode_failure(row.get(11)),
            attempts: attempts.max(0) as u32,
        },
        build_id: row.get(14),
        build_priority: row.get(15),
    }
}

impl SharedQueue {
    /// Attaches a job for `prepared` to the build of its key in progress anywhere in the farm,
    /// or queues a new build. Returns the job and whether it joined a build.
    pub async fn enqueue(
        &self,
        prepared: &PreparedBuild,
        requirement: &Requirement,
        max_queued: usize,
    ) -> Result<(v1::Job, bool), Status> {
        let request = &prepared.request;
        let mut client = self.client().await?;
        let joinable = !request.skip_cache;
        let key = prepared.key.hex();
        let txn = client
            .transaction()
            .await
            .map_err(|e| self.unavailable(e))?;
        // Conflicts only with a joinable build of the key in progress (the partial unique
        // index): that build is the one to attach to.
        let row = txn
            .query_one(
                "INSERT INTO trtfarm_builds
                     (action_key, joinable, state, priority, request, toolchain, builder_digest,
                      gpu_target, needs_mps)
                 VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (action_key) WHERE joinable AND state IN ('queued', 'running')
                 DO UPDATE SET priority = GREATEST(trtfarm_builds.priority, EXCLUDED.priority)
                 RETURNING id, xmax::text <> '0'",
                &[
                    &key,
                    &joinable,
                    &request.priority,
                    &request.encode_to_vec(),
                    &requirement.toolchain,
                    &requirement.builder_digest,
                    &requirement.gpu_target,
                    &requirement.needs_mps,
                ],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        let build_id: i64 = row.get(0);
        let joined: bool = row.get(1);
        if !joined {
            // Counted only for a new build (joining one adds nothing to the queue); the count
            // includes the build just inserted.
            let queued: i64 = txn
                .query_one(
                    "SELECT count(*) FROM trtfarm_builds WHERE state = 'queued'",
                    &[],
                )
                .await
                .map_err(|e| self.unavailable(e))?
                .get(0);
            if queued as usize > max_queued {
                return Err(Status::resource_exhausted(format!(
                    "the farm's queue is full ({} builds waiting); try again later",
                    queued - 1
                )));
            }
        }
        let manifest_path = request
            .manifest
            .as_ref()
            .map(|m| m.path.clone())
            .unwrap_or_default();
        let job_id: i64 = txn
            .query_one(
                "INSERT INTO trtfarm_jobs
                     (build_id, state, manifest_path, variant, client, priority, submitted_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 RETURNING id",
                &[
                    &build_id,
                    &ACTIVE,
                    &manifest_path,
                    &request.variant,
                    &request.client,
                    &request.priority,
                    &now_ms(),
                ],
            )
            .await
            .map_err(|e| self.unavailable(e))?
            .get(0);
        if !joined {
            txn.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        txn.commit().await.map_err(|e| self.unavailable(e))?;
        // One pooled connection per request at a time: many concurrent submits must not each
        // hold one while waiting for another.
        drop(client);
        let job = self.get_job(job_id as u64).await?;
        Ok((job, joined))
    }

    /// A job, with its place in the farm's queue while queued.
    pub async fn get_job(&self, id: u64) -> Result<v1::Job, Status> {
        let Some(mut found) = self.job_row(id).await? else {
            return Err(Status::not_found(format!("no job {id} in the farm")));
        };
        if found.job.state == v1::JobState::Queued as i32 {
            let client = self.client().await?;
            let ahead: i64 = client
                .query_one(
                    "SELECT count(*) FROM trtfarm_builds
                     WHERE state = 'queued' AND (priority > $1 OR (priority = $1 AND id <= $2))",
                    &[&found.build_priority, &found.build_id],
                )
                .await
                .map_err(|e| self.unavailable(e))?
                .get(0);
            found.job.queue_position = ahead.max(1) as u32;
        }
        Ok(found.job)
    }

    /// A job and its build id, if it exists.
    pub(crate) async fn job_row(&self, id: u64) -> Result<Option<JobRow>, Status> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM trtfarm_jobs j
                     JOIN trtfarm_builds b ON b.id = j.build_id WHERE j.id = $1"
                ),
                &[&(id as i64)],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(row.as_ref().map(job_from_row))
    }

    /// The farm's most recent jobs, newest first.
    pub async fn list_jobs(&self, limit: usize) -> Result<Vec<v1::Job>, Status> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM trtfarm_jobs j
                     JOIN trtfarm_builds b ON b.id = j.build_id
                     ORDER BY j.id DESC LIMIT $1"
                ),
                &[&(limit as i64)],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(rows.iter().map(|row| job_from_row(row).job).collect())
    }

    /// Cancels a job. Its build stops (wherever it runs) only if no other job waits for it.
    pub async fn cancel(&self, id: u64) -> Result<v1::Job, Status> {
        let Some(found) = self.job_row(id).await? else {
            return Err(Status::not_found(format!("no job {id} in the farm")));
        };
        let mut client = self.client().await?;
        let txn = client
            .transaction()
            .await
            .map_err(|e| self.unavailable(e))?;
        // The build's row first, as every writer locks it: then a submit attaching to it has
        // committed (its job is seen below) or will not find it joinable.
        txn.query_opt(
            "SELECT 1 FROM trtfarm_builds WHERE id = $1 FOR UPDATE",
            &[&found.build_id],
        )
        .await
        .map_err(|e| self.unavailable(e))?;
        let reason = failure(
            v1::FailureKind::Cancelled,
            "cancelled by request",
            Vec::new(),
        );
        let cancelled = txn
            .execute(
                "UPDATE trtfarm_jobs SET state = $2, finished_at_ms = $3, failure = $4
                 WHERE id = $1 AND state = $5",
                &[
                    &(id as i64),
                    &(v1::JobState::Cancelled as i16),
                    &now_ms(),
                    &reason.encode_to_vec(),
                    &ACTIVE,
                ],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        if cancelled > 0 {
            txn.execute(
                "UPDATE trtfarm_builds SET
                     state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                     finished_at = CASE WHEN state = 'queued' THEN now() END,
                     cancel_requested = (state = 'running'),
                     joinable = false
                 WHERE id = $1 AND state IN ('queued', 'running')
                   AND NOT EXISTS (SELECT 1 FROM trtfarm_jobs WHERE build_id = $1 AND state = $2)",
                &[&found.build_id, &ACTIVE],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
            for channel in [BUILD_CHANNEL, CANCEL_CHANNEL] {
                txn.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&channel, &found.build_id.to_string()],
                )
                .await
                .map_err(|e| self.unavailable(e))?;
            }
        }
        txn.commit().await.map_err(|e| self.unavailable(e))?;
        drop(client);
        self.get_job(id).await
    }
}
