//! The job table, persisted in an embedded database (redb) so that a daemon killed at any
//! moment restarts with every queued and running job and every finished result.
//!
//! Rows are protobuf: the wire `Job` plus the `SubmitRequest` it came from, so there is one
//! schema for jobs on the wire and on disk. Every write is its own durable transaction.

use std::path::Path;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use trtfarm_proto::v1;

/// job id → encoded [`StoredJob`].
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
/// Counters (`next_job_id`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// One row of the job table.
#[derive(Clone, PartialEq, Message)]
pub struct StoredJob {
    /// The job as clients see it.
    #[prost(message, optional, tag = "1")]
    pub job: Option<v1::Job>,
    /// The request it came from; kept until the job ends, to re-run it after a restart.
    #[prost(message, optional, tag = "2")]
    pub request: Option<v1::SubmitRequest>,
}

/// A database failure, with what the daemon was doing.
#[derive(Debug, thiserror::Error)]
#[error("job database: {context}: {source}")]
pub struct DbError {
    context: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn err<E: std::error::Error + Send + Sync + 'static>(
    context: &'static str,
) -> impl Fn(E) -> DbError {
    move |source| DbError {
        context,
        source: Box::new(source),
    }
}

/// The persistent job table.
pub struct JobDb {
    db: Database,
}

impl JobDb {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<JobDb, DbError> {
        let db = Database::create(path).map_err(err("open"))?;
        let txn = db.begin_write().map_err(err("open"))?;
        txn.open_table(JOBS).map_err(err("open"))?;
        txn.open_table(META).map_err(err("open"))?;
        txn.commit().map_err(err("open"))?;
        Ok(JobDb { db })
    }

    /// Stores a new job, giving it the next id (written into `job.id`).
    pub fn insert_new(
        &self,
        job: &mut v1::Job,
        request: &v1::SubmitRequest,
    ) -> Result<u64, DbError> {
        let txn = self.db.begin_write().map_err(err("insert job"))?;
        let id = {
            let mut meta = txn.open_table(META).map_err(err("insert job"))?;
            let id = meta
                .get("next_job_id")
                .map_err(err("insert job"))?
                .map_or(1, |v| v.value());
            meta.insert("next_job_id", id + 1)
                .map_err(err("insert job"))?;
            id
        };
        job.id = id;
        let row = StoredJob {
            job: Some(job.clone()),
            request: Some(request.clone()),
        };
        txn.open_table(JOBS)
            .map_err(err("insert job"))?
            .insert(id, row.encode_to_vec().as_slice())
            .map_err(err("insert job"))?;
        txn.commit().map_err(err("insert job"))?;
        Ok(id)
    }

    /// Replaces a job's state; drops its request once the job has ended.
    pub fn update(&self, job: &v1::Job) -> Result<(), DbError> {
        let txn = self.db.begin_write().map_err(err("update job"))?;
        {
            let mut table = txn.open_table(JOBS).map_err(err("update job"))?;
            let request = if is_terminal(job) {
                None
            } else {
                table
                    .get(job.id)
                    .map_err(err("update job"))?
                    .and_then(|row| StoredJob::decode(row.value()).ok())
                    .and_then(|row| row.request)
            };
            let row = StoredJob {
                job: Some(job.clone()),
                request,
            };
            table
                .insert(job.id, row.encode_to_vec().as_slice())
                .map_err(err("update job"))?;
        }
        txn.commit().map_err(err("update job"))
    }

    /// One job.
    pub fn get(&self, id: u64) -> Result<Option<v1::Job>, DbError> {
        let txn = self.db.begin_read().map_err(err("read job"))?;
        let table = txn.open_table(JOBS).map_err(err("read job"))?;
        let row = table.get(id).map_err(err("read job"))?;
        Ok(row.and_then(|row| StoredJob::decode(row.value()).ok()?.job))
    }

    /// Jobs that had not ended when the daemon stopped, oldest first, with their requests.
    pub fn unfinished(&self) -> Result<Vec<(v1::Job, v1::SubmitRequest)>, DbError> {
        let txn = self.db.begin_read().map_err(err("scan jobs"))?;
        let table = txn.open_table(JOBS).map_err(err("scan jobs"))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err("scan jobs"))? {
            let (_, value) = row.map_err(err("scan jobs"))?;
            let Ok(StoredJob {
                job: Some(job),
                request: Some(request),
            }) = StoredJob::decode(value.value())
            else {
                continue;
            };
            if !is_terminal(&job) {
                out.push((job, request));
            }
        }
        Ok(out)
    }

    /// Up to `limit` jobs, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<v1::Job>, DbError> {
        let txn = self.db.begin_read().map_err(err("list jobs"))?;
        let table = txn.open_table(JOBS).map_err(err("list jobs"))?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for row in table.iter().map_err(err("list jobs"))?.rev().take(limit) {
            let (_, value) = row.map_err(err("list jobs"))?;
            if let Ok(StoredJob { job: Some(job), .. }) = StoredJob::decode(value.value()) {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Deletes the oldest finished jobs so that at most `keep` finished jobs remain.
    pub fn prune_finished(&self, keep: usize) -> Result<usize, DbError> {
        let txn = self.db.begin_write().map_err(err("prune jobs"))?;
        let removed = {
            let mut table = txn.open_table(JOBS).map_err(err("prune jobs"))?;
            let mut finished = Vec::new();
            for row in table.iter().map_err(err("prune jobs"))? {
                let (id, value) = row.map_err(err("prune jobs"))?;
                let terminal = StoredJob::decode(value.value())
                    .ok()
                    .and_then(|row| row.job)
                    .is_some_and(|job| is_terminal(&job));
                if terminal {
                    finished.push(id.value());
                }
            }
            let excess = finished.len().saturating_sub(keep);
            for id in &finished[..excess] {
                table.remove(*id).map_err(err("prune jobs"))?;
            }
            excess
        };
        txn.commit().map_err(err("prune jobs"))?;
        Ok(removed)
    }
}

/// Whether a job has ended.
pub fn is_terminal(job: &v1::Job) -> bool {
    matches!(
        v1::JobState::try_from(job.state),
        Ok(v1::JobState::Succeeded | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: v1::JobState) -> v1::Job {
        v1::Job {
            state: state as i32,
            variant: "fp32".into(),
            ..Default::default()
        }
    }

    fn request() -> v1::SubmitRequest {
        v1::SubmitRequest {
            variant: "fp32".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ids_grow_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        let db = JobDb::open(&path).unwrap();
        let first = db
            .insert_new(&mut job(v1::JobState::Queued), &request())
            .unwrap();
        let second = db
            .insert_new(&mut job(v1::JobState::Queued), &request())
            .unwrap();
        assert_eq!((first, second), (1, 2));
        drop(db);
        let db = JobDb::open(&path).unwrap();
        let third = db
            .insert_new(&mut job(v1::JobState::Queued), &request())
            .unwrap();
        assert_eq!(third, 3);
        assert_eq!(db.get(2).unwrap().unwrap().id, 2);
    }

    #[test]
    fn unfinished_lists_queued_and_running_with_requests_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = JobDb::open(&dir.path().join("jobs.redb")).unwrap();
        let mut queued = job(v1::JobState::Queued);
        db.insert_new(&mut queued, &request()).unwrap();
        let mut running = job(v1::JobState::Queued);
        db.insert_new(&mut running, &request()).unwrap();
        running.state = v1::JobState::Running as i32;
        db.update(&running).unwrap();
        let mut done = job(v1::JobState::Queued);
        db.insert_new(&mut done, &request()).unwrap();
        done.state = v1::JobState::Succeeded as i32;
        db.update(&done).unwrap();

        let unfinished = db.unfinished().unwrap();
        let ids: Vec<u64> = unfinished.iter().map(|(job, _)| job.id).collect();
        assert_eq!(ids, vec![queued.id, running.id]);
        assert_eq!(unfinished[1].1.variant, "fp32", "the request is kept");
    }

    #[test]
    fn recent_is_newest_first_and_prune_keeps_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let db = JobDb::open(&dir.path().join("jobs.redb")).unwrap();
        for _ in 0..5 {
            let mut j = job(v1::JobState::Queued);
            db.insert_new(&mut j, &request()).unwrap();
            j.state = v1::JobState::Failed as i32;
            db.update(&j).unwrap();
        }
        let mut open = job(v1::JobState::Queued);
        db.insert_new(&mut open, &request()).unwrap();
        let recent: Vec<u64> = db.recent(3).unwrap().iter().map(|j| j.id).collect();
        assert_eq!(recent, vec![6, 5, 4]);
        assert_eq!(db.prune_finished(2).unwrap(), 3);
        let left: Vec<u64> = db.recent(10).unwrap().iter().map(|j| j.id).collect();
        assert_eq!(left, vec![6, 5, 4]);
    }
}
