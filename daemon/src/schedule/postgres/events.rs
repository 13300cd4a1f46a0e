//! A build's events in the farm's database: written in batches by the daemon running it, read
//! in order by watchers on any daemon, woken by `NOTIFY` and by a poll in case one is lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tonic::Status;
use trtfarm_proto::v1;

use super::{BUILD_CHANNEL, SharedQueue};
use crate::schedule::{now_ms, terminal_event};

/// Most events written in one statement.
const BATCH: usize = 512;
/// Least time between two writes of one build's events: a lone event (the build started, a
/// cancel's last line) is written at once, a flood of log lines in one statement per interval.
const GATHER: Duration = Duration::from_millis(100);
/// A watcher looks again this often even without a notification.
const POLL: Duration = Duration::from_secs(1);

/// Sends a running build's events to the database, in order.
pub struct EventWriter {
    sender: mpsc::UnboundedSender<v1::job_event::Event>,
    task: JoinHandle<()>,
}

impl EventWriter {
    /// A writer for build `id`.
    pub fn start(queue: Arc<SharedQueue>, id: i64) -> EventWriter {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_events(queue, id, receiver));
        EventWriter { sender, task }
    }

    /// Queues one event.
    pub fn send(&self, event: v1::job_event::Event) {
        let _ = self.sender.send(event);
    }

    /// Writes what is queued and stops (before the build's end is recorded, so watchers see
    /// every line before the end).
    pub async fn close(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

async fn write_events(
    queue: Arc<SharedQueue>,
    id: i64,
    mut receiver: mpsc::UnboundedReceiver<v1::job_event::Event>,
) {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut open = true;
    let mut pause = Duration::from_millis(250);
    let mut last_write: Option<tokio::time::Instant> = None;
    while open || !pending.is_empty() {
        if pending.is_empty() {
            match receiver.recv().await {
                Some(event) => pending.push_back(encode(event)),
                None => break,
            }
            if let Some(last) = last_write {
                tokio::time::sleep_until(last + GATHER).await;
            }
        }
        while pending.len() < 10 * BATCH {
            match receiver.try_recv() {
                Ok(event) => pending.push_back(encode(event)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let batch: Vec<Vec<u8>> = pending.iter().take(BATCH).cloned().collect();
        last_write = Some(tokio::time::Instant::now());
        match insert(&queue, id, &batch).await {
            Ok(()) => {
                pending.drain(..batch.len());
                pause = Duration::from_millis(250);
            }
            Err(e) => {
                tracing::warn!(build = id, "cannot write build events yet: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                if pending.len() > 20 * BATCH {
                    // A long outage: keep the newest lines rather than grow without bound.
                    let excess = pending.len() - 20 * BATCH;
                    pending.drain(..excess);
                }
            }
        }
    }
}

fn encode(event: v1::job_event::Event) -> Vec<u8> {
    v1::JobEvent {
        job_id: 0,
        at_ms: now_ms(),
        event: Some(event),
    }
    .encode_to_vec()
}

async fn insert(queue: &SharedQueue, id: i64, batch: &[Vec<u8>]) -> Result<(), Status> {
    let client = queue.client().await?;
    client
        .execute(
            "WITH written AS (
                 INSERT INTO trtfarm_events (build_id, body) SELECT $1, unnest($2::bytea[])
                 RETURNING 1)
             SELECT pg_notify($3, $1::text) FROM (SELECT 1) once
             WHERE EXISTS (SELECT 1 FROM written)",
            &[&id, &batch, &BUILD_CHANNEL],
        )
        .await
        .map_err(|e| queue.unavailable(e))?;
    Ok(())
}

/// Where a watcher is in its job's story.
struct Watch {
    queue: Arc<SharedQueue>,
    job_id: u64,
    build_id: Option<i64>,
    cursor: i64,
    pending: VecDeque<v1::JobEvent>,
    news: broadcast::Receiver<i64>,
    started: bool,
    ended: bool,
}

impl SharedQueue {
    /// The events of a job wherever its build runs: its state now, then every event until its
    /// end. Rides out a database outage (the stream waits); ends with an error only if the job
    /// does not exist.
    pub fn watch(
        self: &Arc<Self>,
        job_id: u64,
    ) -> impl Stream<Item = Result<v1::JobEvent, Status>> + Send + 'static {
        let watch = Watch {
            queue: Arc::clone(self),
            job_id,
            build_id: None,
            cursor: 0,
            pending: VecDeque::new(),
            news: self.builds.subscribe(),
            started: false,
            ended: false,
        };
        futures::stream::unfold(watch, |mut watch| async move {
            loop {
                if let Some(event) = watch.pending.pop_front() {
                    return Some((Ok(event), watch));
                }
                if watch.ended {
                    return None;
                }
                match watch.look().await {
                    Ok(true) => continue,
                    Ok(false) => watch.wait().await,
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        watch.ended = true;
                        return Some((Err(status), watch));
                    }
                    Err(status) => {
                        tracing::debug!(
                            job = watch.job_id,
                            "watch waits for the database: {status}"
                        );
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
        })
    }
}

impl Watch {
    /// Reads what happened since the last look. Returns whether there is something to send.
    async fn look(&mut self) -> Result<bool, Status> {
        let Some(found) = self.queue.job_row(self.job_id).await? else {
            return Err(Status::not_found(format!(
                "no job {} in the farm",
                self.job_id
            )));
        };
        self.build_id = Some(found.build_id);
        if !self.started {
            self.started = true;
            if found.job.state == v1::JobState::Queued as i32 {
                let job = self.queue.get_job(self.job_id).await?;
                self.pending.push_back(v1::JobEvent {
                    job_id: self.job_id,
                    at_ms: now_ms(),
                    event: Some(v1::job_event::Event::Queued(v1::Queued {
                        position: job.queue_position,
                    })),
                });
            }
        }
        // Events before the end: the end is recorded only after the last event is written.
        let client = self.queue.client().await?;
        let rows = client
            .query(
                "SELECT id, body FROM trtfarm_events WHERE build_id = $1 AND id > $2
                 ORDER BY id LIMIT 1000",
                &[&found.build_id, &self.cursor],
            )
            .await
            .map_err(|e| self.queue.unavailable(e))?;
        let complete = rows.len() < 1000;
        for row in rows {
            self.cursor = row.get(0);
            let body: Vec<u8> = row.get(1);
            if let Ok(mut event) = v1::JobEvent::decode(&*body) {
                event.job_id = self.job_id;
                self.pending.push_back(event);
            }
        }
        if complete && let Some(end) = terminal_event(&found.job) {
            self.pending.push_back(end);
            self.ended = true;
        }
        Ok(!self.pending.is_empty())
    }

    /// Until the build has news, or a poll interval.
    async fn wait(&mut self) {
        let build = self.build_id;
        let _ = tokio::time::timeout(POLL, async {
            loop {
                match self.news.recv().await {
                    Ok(id) if Some(id) == build || id == -1 => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        })
        .await;
    }
}
