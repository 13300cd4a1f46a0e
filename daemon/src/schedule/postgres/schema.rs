//! The farm's tables, created and migrated when a daemon starts.
//!
//! Each migration is applied once, in order, inside one transaction that holds an advisory
//! lock, so daemons starting together migrate once. A database migrated by a newer trtfarmd is
//! refused: an old daemon must not write rows whose meaning it does not know.

use tokio_postgres::Client;

/// The advisory lock migrations hold (any constant only trtfarm uses).
const MIGRATION_LOCK: i64 = 0x7472_7466_6172_6d00;

/// Every migration, oldest first; the schema version is how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE trtfarm_daemons (
    id             text PRIMARY KEY,
    host           text NOT NULL,
    endpoint       text NOT NULL,
    version        text NOT NULL,
    builder_digest text NOT NULL,
    capabilities   jsonb NOT NULL,
    slots          jsonb NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now()
);

-- One build of an action key, shared by the jobs attached to it.
CREATE TABLE trtfarm_builds (
    id               bigserial PRIMARY KEY,
    action_key       text NOT NULL,
    -- Whether later submits of the key may attach (not for verifying rebuilds).
    joinable         boolean NOT NULL,
    state            text NOT NULL
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority         integer NOT NULL,
    -- The SubmitRequest (protobuf) the claiming daemon prepares again.
    request          bytea NOT NULL,
    -- Who may build it: the toolchain identity, the builder digest, the GPU target.
    toolchain        text NOT NULL,
    builder_digest   text NOT NULL,
    gpu_target       text,
    needs_mps        boolean NOT NULL,
    owner            text,
    -- Raised at every claim: a daemon whose fence is not the current one may not finish it.
    fence            bigint NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    lease_until      timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    resource         text NOT NULL DEFAULT '',
    started_at_ms    bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- Single flight across the farm: one joinable build per key in progress.
CREATE UNIQUE INDEX trtfarm_builds_in_progress ON trtfarm_builds (action_key)
    WHERE joinable AND state IN ('queued', 'running');
CREATE INDEX trtfarm_builds_queue ON trtfarm_builds (priority DESC, id) WHERE state = 'queued';
CREATE INDEX trtfarm_builds_leases ON trtfarm_builds (lease_until) WHERE state = 'running';

-- One submission. Queued or running is the build's state; an ended job has its own.
CREATE TABLE trtfarm_jobs (
    id              bigserial PRIMARY KEY,
    build_id        bigint NOT NULL REFERENCES trtfarm_builds (id) ON DELETE CASCADE,
    -- trtfarm.v1.JobState: QUEUED while the job waits for its build, else how it ended.
    state           smallint NOT NULL,
    manifest_path   text NOT NULL,
    variant         text NOT NULL,
    client          text NOT NULL,
    priority        integer NOT NULL,
    submitted_at_ms bigint NOT NULL,
    finished_at_ms  bigint NOT NULL DEFAULT 0,
    result          bytea,
    failure         bytea
);
CREATE INDEX trtfarm_jobs_build ON trtfarm_jobs (build_id);

-- What a build said (started, log lines, progress), in order, for watchers on any daemon.
CREATE TABLE trtfarm_events (
    id       bigserial PRIMARY KEY,
    build_id bigint NOT NULL REFERENCES trtfarm_builds (id) ON DELETE CASCADE,
    body     bytea NOT NULL
);
CREATE INDEX trtfarm_events_build ON trtfarm_events (build_id, id);
"#,
    r#"
-- The timing-cache registry's index: each scope's versions in the order they were recorded.
-- An insert is atomic, so recordings that finish together all stay listed.
CREATE TABLE trtfarm_timing_caches (
    seq       bigserial PRIMARY KEY,
    scope_key text NOT NULL,
    blake3    text NOT NULL,
    -- The version record (JSON), as the store's version record holds it.
    record    text NOT NULL,
    UNIQUE (scope_key, blake3)
);
"#,
];

/// Creates or migrates the tables. Refuses a database a newer trtfarmd has migrated.
pub(super) async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS trtfarm_schema (version integer NOT NULL);
         INSERT INTO trtfarm_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM trtfarm_schema);",
    )
    .await?;
    let version: i32 = txn
        .query_one("SELECT version FROM trtfarm_schema", &[])
        .await?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if version > known {
        anyhow::bail!(
            "the farm's database has schema version {version}, newer than this trtfarmd knows \
             ({known}): a newer trtfarmd migrated it; upgrade this daemon to that version"
        );
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        txn.batch_execute(migration).await?;
        txn.execute(
            "UPDATE trtfarm_schema SET version = $1",
            &[&(index as i32 + 1)],
        )
        .await?;
        tracing::info!(version = index + 1, "migrated the farm's database");
    }
    txn.commit().await?;
    Ok(())
}

/// The schema version this daemon writes.
pub fn current_version() -> i32 {
    MIGRATIONS.len() as i32
}
