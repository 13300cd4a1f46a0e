//! `trtfarm status|logs|cancel|ls`: looking at the daemon's jobs.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use trtfarm_proto::v1;
use trtfarm_proto::v1::job_event::Event;

use crate::cli::DaemonArgs;
use crate::connect::{
    FarmConnection, Losses, Reconnect, connect, describe_status, is_connection_loss, rpc_error,
};
use crate::term::LABEL_WIDTH;
use trtfarm::transfer::download_to_file;

mod json;

/// `status JOB`: the job's state, identity, times, queue place, and result or failure (text, or
/// one JSON object). Exits 0 whatever the job's state.
pub async fn status(daemon: &DaemonArgs, job: u64, as_json: bool) -> anyhow::Result<bool> {
    let mut client = connect(daemon).await?;
    let job = get_job(&mut client, job).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json::job_json(&job))?);
    } else {
        print!("{}", describe(&job, SystemTime::now()));
    }
    Ok(true)
}

/// `logs JOB`: a finished job's whole build log, or a queued or running job's log lines as
/// they come, until it ends. Exits 1 when the job has no log (it never ran).
pub async fn logs(daemon: &DaemonArgs, job: u64) -> anyhow::Result<bool> {
    let mut client = connect(daemon).await?;
    let found = get_job(&mut client, job).await?;
    let log = match state_of(&found) {
        v1::JobState::Queued | v1::JobState::Running => {
            return follow(&mut client, job, &Reconnect::new(daemon)).await;
        }
        v1::JobState::Succeeded => found.result.as_ref().and_then(|r| r.build_log.clone()),
        _ => found.failure.as_ref().and_then(|f| f.build_log.clone()),
    };
    let Some(log) = log else {
        let why = found.failure.map(|f| f.message).unwrap_or_default();
        eprintln!("job {job} has no build log (no worker ran for it): {why}");
        return Ok(false);
    };
    // Verified on disk first: a log the store damaged is refused, not printed in part.
    let tmp = std::env::temp_dir().join(format!("trtfarm-log-{}-{job}", std::process::id()));
    download_to_file(&mut client, &log, &tmp)
        .await
        .map_err(|error| rpc_error(format_args!("cannot fetch job {job}'s log"), error))?;
    let printed = std::fs::File::open(&tmp).and_then(|mut file| {
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut file, &mut stdout)?;
        stdout.flush()
    });
    let _ = std::fs::remove_file(&tmp);
    printed?;
    Ok(true)
}

/// `cancel JOB`. Cancelling a cancelled job succeeds (what was asked for holds); exits 1 when
/// the job had already succeeded or failed.
pub async fn cancel(daemon: &DaemonArgs, job: u64) -> anyhow::Result<bool> {
    let mut client = connect(daemon).await?;
    let before = get_job(&mut client, job).await?;
    if state_of(&before) == v1::JobState::Cancelled {
        println!("job {job} was already cancelled");
        return Ok(true);
    }
    if is_final(state_of(&before)) {
        println!(
            "job {job} had already {}; nothing to cancel",
            state_word(state_of(&before))
        );
        return Ok(false);
    }
    let after = client
        .cancel_job(v1::CancelJobRequest { job_id: job })
        .await
        .map_err(|status| rpc_error(format_args!("cannot cancel job {job}"), status.into()))?
        .into_inner();
    match state_of(&after) {
        v1::JobState::Cancelled => {
            println!("cancelled job {job}");
            Ok(true)
        }
        other => {
            println!(
                "job {job} had already {}; nothing to cancel",
                state_word(other)
            );
            Ok(false)
        }
    }
}

/// `ls`: the newest `limit` jobs as a table, or a JSON array.
pub async fn list(daemon: &DaemonArgs, limit: u32, as_json: bool) -> anyhow::Result<bool> {
    let mut client = connect(daemon).await?;
    let jobs = client
        .list_jobs(v1::ListJobsRequest { limit })
        .await
        .map_err(|status| rpc_error("cannot list jobs", status.into()))?
        .into_inner()
        .jobs;
    if as_json {
        let jobs: Vec<_> = jobs.iter().map(json::job_json).collect();
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(true);
    }
    print!("{}", table(&jobs, SystemTime::now()));
    Ok(true)
}

async fn get_job(client: &mut FarmConnection, job: u64) -> anyhow::Result<v1::Job> {
    Ok(client
        .get_job(v1::GetJobRequest { job_id: job })
        .await
        .map_err(|status| rpc_error(format_args!("job {job}"), status.into()))?
        .into_inner())
}

/// Prints log lines as the build emits them (in the stored log's `[severity] text` form);
/// state changes go to stderr. When the daemon goes away, reaches it again and follows on
/// (lines the daemon replays to a new watcher may then repeat).
async fn follow(
    client: &mut FarmConnection,
    job: u64,
    reconnect: &Reconnect,
) -> anyhow::Result<bool> {
    eprintln!("following job {job} from now (`trtfarm logs {job}` after it ends prints it all)");
    let mut losses = Losses::default();
    loop {
        let status = match follow_once(client, job).await {
            Ok(ended) => return Ok(ended),
            Err(status) if is_connection_loss(&status) => status,
            Err(status) => {
                return Err(rpc_error(format_args!("watching job {job}"), status.into()));
            }
        };
        let say =
            |what: &str| eprintln!("trtfarm: job {job}: {}: {what}", describe_status(&status));
        *client = reconnect.again(&mut losses, say).await?;
    }
}

/// One watch of the job: `Ok` at its end, the status when the stream broke.
async fn follow_once(client: &mut FarmConnection, job: u64) -> Result<bool, tonic::Status> {
    let mut events = client
        .watch_job(v1::WatchJobRequest { job_id: job })
        .await?
        .into_inner();
    let mut ended = false;
    while let Some(event) = events.message().await? {
        ended |= matches!(event.event, Some(Event::Finished(_) | Event::Failed(_)));
        match event.event {
            Some(Event::Log(line)) => println!("[{}] {}", line.severity, line.text),
            Some(Event::Queued(queued)) => {
                eprintln!("job {job} queued (position {})", queued.position)
            }
            Some(Event::Started(started)) => eprintln!(
                "job {job} started on {} (attempt {})",
                started.resource, started.attempt
            ),
            Some(Event::Finished(result)) => {
                let engine = result
                    .engine
                    .as_ref()
                    .map(v1::Digest::to_string)
                    .unwrap_or_default();
                eprintln!("job {job} succeeded: {engine}");
            }
            Some(Event::Failed(failure)) => {
                eprintln!(
                    "job {job} ended: {}: {}",
                    kind_word(failure.kind),
                    failure.message
                )
            }
            Some(Event::Progress(_)) | None => {}
        }
    }
    if ended {
        Ok(true)
    } else {
        Err(tonic::Status::unavailable(
            "the daemon closed the job's event stream before the job ended",
        ))
    }
}

fn state_of(job: &v1::Job) -> v1::JobState {
    v1::JobState::try_from(job.state).unwrap_or(v1::JobState::Unspecified)
}

fn is_final(state: v1::JobState) -> bool {
    matches!(
        state,
        v1::JobState::Succeeded | v1::JobState::Failed | v1::JobState::Cancelled
    )
}

fn state_word(state: v1::JobState) -> &'static str {
    match state {
        v1::JobState::Unspecified => "unknown",
        v1::JobState::Queued => "queued",
        v1::JobState::Running => "running",
        v1::JobState::Succeeded => "succeeded",
        v1::JobState::Failed => "failed",
        v1::JobState::Cancelled => "cancelled",
    }
}

fn kind_word(kind: i32) -> &'static str {
    match v1::FailureKind::try_from(kind).unwrap_or(v1::FailureKind::Unspecified) {
        v1::FailureKind::Unspecified => "failed",
        v1::FailureKind::Build => "build",
        v1::FailureKind::WorkerCrashed => "worker crashed",
        v1::FailureKind::Deadline => "deadline",
        v1::FailureKind::Cancelled => "cancelled",
        v1::FailureKind::Infrastructure => "infrastructure",
    }
}

/// The instant of a Unix-milliseconds field; `None` for 0 (never set).
pub(super) fn time_of(ms: i64) -> Option<SystemTime> {
    (ms > 0).then(|| UNIX_EPOCH + Duration::from_millis(ms as u64))
}

/// `3m 12s`: the two largest units of a whole number of seconds.
pub(super) fn age(since: SystemTime, now: SystemTime) -> String {
    let seconds = now.duration_since(since).unwrap_or_default().as_secs();
    let text = humantime::format_duration(Duration::from_secs(seconds)).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

fn engine_name(job: &v1::Job) -> String {
    format!("{}#{}", job.manifest_path, job.variant)
}

/// The text `status` prints.
fn describe(job: &v1::Job, now: SystemTime) -> String {
    let mut out = String::new();
    let mut line =
        |label: &str, value: String| out.push_str(&format!("{label:<LABEL_WIDTH$}{value}\n"));
    let state = state_of(job);
    let mut state_text = state_word(state).to_string();
    if state == v1::JobState::Queued && job.queue_position > 0 {
        state_text.push_str(&format!(" (position {} in the queue)", job.queue_position));
    }
    line("job", job.id.to_string());
    line("state", state_text);
    line("engine", engine_name(job));
    line("action key", job.action_key.clone());
    line("client", job.client.clone());
    line("priority", job.priority.to_string());
    line("attempts", job.attempts.to_string());
    for (label, ms) in [
        ("submitted", job.submitted_at_ms),
        ("started", job.started_at_ms),
        ("finished", job.finished_at_ms),
    ] {
        if let Some(at) = time_of(ms) {
            let when = humantime::format_rfc3339_seconds(at);
            line(label, format!("{when} ({} ago)", age(at, now)));
        }
    }
    if let Some(result) = &job.result {
        let digest = |d: &Option<v1::Digest>| d.as_ref().map(v1::Digest::to_string);
        if let Some(engine) = digest(&result.engine) {
            line("plan", engine);
        }
        line("plan sha256", result.engine_sha256.clone());
        for (label, value) in [
            ("build log", digest(&result.build_log)),
            ("timing cache", digest(&result.timing_cache)),
            ("timing cache loaded", digest(&result.timing_cache_loaded)),
            ("provenance", digest(&result.provenance)),
        ] {
            if let Some(value) = value {
                line(label, value);
            }
        }
        if let Some(layers) = result.precision_summary() {
            line("layers", layers);
        }
        if let Some(listing) = digest(&result.layer_listing) {
            line("layer listing", listing);
        }
        match digest(&result.layer_info) {
            Some(layers) => line("layer info", layers),
            None if !result.layer_info_unavailable.is_empty() => line(
                "layer info",
                format!("unavailable: {}", result.layer_info_unavailable),
            ),
            None => {}
        }
        if let Some(toolchain) = &result.toolchain {
            line(
                "toolchain",
                format!("{} {}", toolchain.flavour, toolchain.version),
            );
        }
        if !result.built_by.is_empty() {
            line("built by", result.built_by.clone());
        }
    }
    if let Some(failure) = &job.failure {
        line(
            "failure",
            format!("{}: {}", kind_word(failure.kind), failure.message),
        );
        if let Some(log) = &failure.build_log {
            line("build log", log.to_string());
        }
        if !failure.log_tail.is_empty() {
            out.push_str("log tail\n");
            for text in &failure.log_tail {
                out.push_str(&format!("  {text}\n"));
            }
        }
    }
    out
}

/// The table `ls` prints: id, state, manifest#variant, client, age, engine digest or failure.
fn table(jobs: &[v1::Job], now: SystemTime) -> String {
    let header = ["ID", "STATE", "ENGINE", "CLIENT", "AGE", "RESULT"].map(String::from);
    let mut rows = vec![header];
    for job in jobs {
        let state = state_of(job);
        let state_text = match state {
            v1::JobState::Queued if job.queue_position > 0 => {
                format!("queued #{}", job.queue_position)
            }
            other => state_word(other).to_string(),
        };
        let result = match (&job.result, &job.failure) {
            (Some(result), _) => result
                .engine
                .as_ref()
                .map(v1::Digest::to_string)
                .unwrap_or_default(),
            (None, Some(failure)) => kind_word(failure.kind).to_string(),
            (None, None) => String::new(),
        };
        let age = time_of(job.submitted_at_ms)
            .map(|at| age(at, now))
            .unwrap_or_default();
        rows.push([
            job.id.to_string(),
            state_text,
            engine_name(job),
            job.client.clone(),
            age,
            result,
        ]);
    }
    align(&rows)
}

/// `rows` (the header first) as left-aligned columns two spaces apart, one line each. The last
/// column is not padded, and no line ends in spaces.
pub(super) fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: v1::JobState) -> v1::Job {
        v1::Job {
            id: 7,
            action_key: "ab".repeat(32),
            state: state as i32,
            manifest_path: "models/engine.toml".into(),
            variant: "fp16".into(),
            client: "alice@host".into(),
            submitted_at_ms: 1_000_000,
            ..v1::Job::default()
        }
    }

    #[test]
    fn ages_keep_the_two_largest_units() {
        let start = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(age(start, start + Duration::from_millis(12_700)), "12s");
        assert_eq!(age(start, start + Duration::from_secs(3723)), "1h 2m");
        assert_eq!(
            age(start + Duration::from_secs(5), start),
            "0s",
            "clock skew"
        );
    }

    #[test]
    fn status_shows_the_queue_place_and_the_failure() {
        let now = UNIX_EPOCH + Duration::from_secs(1060);
        let mut queued = job(v1::JobState::Queued);
        queued.queue_position = 2;
        let text = describe(&queued, now);
        assert!(text.contains("queued (position 2 in the queue)"), "{text}");
        assert!(text.contains("models/engine.toml#fp16"), "{text}");
        assert!(text.contains("1970-01-01T00:16:40Z (1m ago)"), "{text}");

        let mut failed = job(v1::JobState::Failed);
        failed.failure = Some(v1::Failure {
            kind: v1::FailureKind::Build as i32,
            message: "no such input".into(),
            log_tail: vec!["error: parse failed".into()],
            build_log: None,
        });
        let text = describe(&failed, now);
        assert!(
            text.contains("failure             build: no such input"),
            "{text}"
        );
        assert!(text.contains("log tail\n  error: parse failed"), "{text}");
    }

    #[test]
    fn every_status_label_stands_apart_from_its_value() {
        let now = UNIX_EPOCH + Duration::from_secs(1060);
        let mut done = job(v1::JobState::Succeeded);
        let digest = Some(v1::Digest {
            blake3: "ab".repeat(32),
            size_bytes: 1,
        });
        done.result = Some(v1::ActionResult {
            engine: digest.clone(),
            layer_listing: digest.clone(),
            timing_cache: digest.clone(),
            timing_cache_loaded: digest,
            ..Default::default()
        });
        let text = describe(&done, now);
        assert!(text.contains("layer listing"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with(' ')) {
            let (label, value) = line.split_at(LABEL_WIDTH.min(line.len()));
            assert!(label.ends_with(' ') && !value.starts_with(' '), "{line:?}");
        }
    }

    #[test]
    fn the_table_aligns_and_names_results() {
        let now = UNIX_EPOCH + Duration::from_secs(1060);
        let mut done = job(v1::JobState::Succeeded);
        done.result = Some(v1::ActionResult {
            engine: Some(v1::Digest {
                blake3: "cd".repeat(32),
                size_bytes: 42,
            }),
            ..v1::ActionResult::default()
        });
        let mut cancelled = job(v1::JobState::Cancelled);
        cancelled.id = 12;
        cancelled.failure = Some(v1::Failure {
            kind: v1::FailureKind::Cancelled as i32,
            ..v1::Failure::default()
        });
        let text = table(&[done, cancelled], now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID  STATE      ENGINE"), "{text}");
        assert!(
            lines[1].ends_with(&format!("blake3:{}/42", "cd".repeat(32))),
            "{text}"
        );
        assert!(
            lines[2].starts_with("12  cancelled  models/engine.toml#fp16"),
            "{text}"
        );
        assert!(lines[2].ends_with("1m   cancelled"), "{text}");
    }
}
