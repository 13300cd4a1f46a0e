//! The farm's shared state on PostgreSQL: daemons, builds, jobs and their events, for every
//! daemon that points at the same database (`[queue] url`).
//!
//! PostgreSQL does the coordination itself: a partial unique index makes one build per action
//! key at a time farm-wide (later submits attach to it), `FOR UPDATE SKIP LOCKED` lets daemons
//! claim builds without blocking each other, a lease with a fencing counter decides which daemon
//! may finish a build, and `LISTEN/NOTIFY` wakes daemons and watchers (each also polls, in case
//! a notification is lost while a connection is down).

mod claims;
mod connect;
mod events;
mod jobs;
pub mod registry;
mod schema;
pub mod timing_caches;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use tokio::sync::{Notify, broadcast};
use tokio_postgres::AsyncMessage;
use tonic::Status;

pub use claims::{Claimed, FenceHeld, FenceLost, Offer};
pub use connect::{PgEnvironment, QueueDatabase};
pub use events::EventWriter;
pub use registry::{Capabilities, DaemonRecord, Requirement};
pub use schema::current_version as schema_version;

/// Channel of "a build may be claimable".
const WORK_CHANNEL: &str = "trtfarm_work";
/// Channel of "build N has news" (events, its end); the payload is its id.
const BUILD_CHANNEL: &str = "trtfarm_build";
/// Channel of "no job waits for build N any more"; the payload is its id.
const CANCEL_CHANNEL: &str = "trtfarm_cancel";
/// Connections each daemon keeps at most (PostgreSQL's default `max_connections` of 100 then
/// serves some eight daemons). Every request holds one connection at a time, never two.
const POOL_SIZE: usize = 10;
/// Builds whose daemon lost them this many times fail instead of running again.
const MAX_ATTEMPTS: i32 = 3;

/// One daemon's connection to the farm's database.
pub struct SharedQueue {
    pool: Pool,
    database: QueueDatabase,
    /// This daemon's id in the farm (stable per state directory).
    pub daemon_id: String,
    /// How long a claim lasts unrenewed.
    pub lease: Duration,
    /// Woken when a build may have become claimable.
    pub work: Notify,
    /// Ids of builds with news; `-1` after the listening connection came back (anything may
    /// have happened meanwhile).
    pub builds: broadcast::Sender<i64>,
    /// Ids of builds no job waits for any more; `-1` after the listening connection came back.
    pub cancels: broadcast::Sender<i64>,
    /// The registry as last read, and when: submits within a heartbeat of it use it, so a
    /// burst of submits (each checked against the farm) reads the registry once.
    registry: Mutex<Option<(Instant, Arc<Vec<DaemonRecord>>)>>,
}

impl SharedQueue {
    /// Connects, migrates the schema and starts listening for notifications.
    pub async fn connect(
        database: QueueDatabase,
        daemon_id: String,
        lease: Duration,
    ) -> anyhow::Result<Arc<SharedQueue>> {
        let manager = Manager::from_config(
            database.config().clone(),
            database.tls(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let mut client = pool.get().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the farm's database {database}: {}{}",
                causes(&e),
                if causes(&e).contains("certificate") {
                    " (give the CA that signed the database's certificate with queue.ca_file)"
                } else {
                    ""
                }
            )
        })?;
        schema::migrate(&mut client).await.map_err(|e| {
            anyhow::anyhow!("cannot prepare the farm's tables in {database}: {e:#}")
        })?;
        drop(client);
        let (builds, _) = broadcast::channel(1024);
        let (cancels, _) = broadcast::channel(64);
        let queue = Arc::new(SharedQueue {
            pool,
            database,
            daemon_id,
            lease,
            work: Notify::new(),
            builds,
            cancels,
            registry: Mutex::new(None),
        });
        tokio::spawn(listen(Arc::clone(&queue)));
        Ok(queue)
    }

    /// The database, for messages (no password).
    pub fn database(&self) -> &QueueDatabase {
        &self.database
    }

    /// A pooled connection, or the error a client gets while the database is away.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Status> {
        self.pool.get().await.map_err(|e| self.unavailable(e))
    }

    /// The status for a database failure: the farm's queue is unreachable for now.
    pub(crate) fn unavailable(&self, error: impl std::error::Error) -> Status {
        Status::unavailable(format!(
            "the farm's database {} cannot be reached ({}); the daemon reconnects on its \
             own: try again shortly",
            self.database,
            causes(&error)
        ))
    }

    /// How often leases are renewed and heartbeats sent: several times per lease.
    pub fn beat(&self) -> Duration {
        (self.lease / 5).max(Duration::from_millis(200))
    }

    /// Registers or refreshes this daemon.
    pub async fn heartbeat(&self, record: DaemonRecord) -> Result<(), Status> {
        let client = self.client().await?;
        registry::upsert(&**client, &record)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// Every registered daemon; live ones have sent a heartbeat within a lease.
    pub async fn daemons(&self) -> Result<Vec<DaemonRecord>, Status> {
        let client = self.client().await?;
        let daemons = registry::list(&**client, self.lease + self.beat())
            .await
            .map_err(|e| self.unavailable(e))?;
        *self.registry.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), Arc::new(daemons.clone())));
        Ok(daemons)
    }

    /// [`SharedQueue::daemons`], as read within the last heartbeat interval (no fresher than
    /// the heartbeats themselves), else read now.
    pub async fn recent_daemons(&self) -> Result<Arc<Vec<DaemonRecord>>, Status> {
        let recent = self
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(read, _)| read.elapsed() < self.beat())
            .map(|(_, daemons)| Arc::clone(daemons));
        match recent {
            Some(daemons) => Ok(daemons),
            None => Ok(Arc::new(self.daemons().await?)),
        }
    }

    /// Removes this daemon's registration (shutdown).
    pub async fn deregister(&self) {
        if let Ok(client) = self.client().await
            && let Err(e) = registry::remove(&**client, &self.daemon_id).await
        {
            tracing::warn!("cannot remove this daemon from the farm's registry: {e}");
        }
    }
}

/// An error and its causes, `: `-separated, leaving out a cause the line already ends with (the
/// pool repeats the driver's message, the driver the TLS library's).
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Keeps one connection listening on both channels, reconnecting with backoff, and forwards
/// what arrives.
async fn listen(queue: Arc<SharedQueue>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match queue.database.config().connect(queue.database.tls()).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("the farm's database connection broke: {e}");
                                break;
                            }
                        }
                    }
                });
                let listening = client
                    .batch_execute(&format!(
                        "LISTEN {WORK_CHANNEL}; LISTEN {BUILD_CHANNEL}; LISTEN {CANCEL_CHANNEL};"
                    ))
                    .await;
                if let Err(e) = listening {
                    tracing::warn!("cannot listen for the farm's notifications: {e}");
                    driver.abort();
                } else {
                    backoff = Duration::from_millis(250);
                    // Whatever was notified while no one listened: look again.
                    queue.work.notify_one();
                    let _ = queue.builds.send(-1);
                    let _ = queue.cancels.send(-1);
                    while let Some((channel, payload)) = rx.recv().await {
                        let id = payload.parse::<i64>();
                        match (channel.as_str(), id) {
                            (WORK_CHANNEL, _) => queue.work.notify_one(),
                            (BUILD_CHANNEL, Ok(id)) => {
                                let _ = queue.builds.send(id);
                            }
                            (CANCEL_CHANNEL, Ok(id)) => {
                                let _ = queue.cancels.send(id);
                            }
                            _ => {}
                        }
                    }
                    drop(client);
                }
            }
            Err(e) => {
                tracing::warn!(database = %queue.database, "cannot reach the farm's database: {e}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
