//! `trtfarm submit`: validate manifests, hash their inputs (digest cache), upload what the daemon
//! lacks, submit every variant, follow the jobs with live progress, fetch the engines into place
//! and record `engine.lock`. `watch` and `verify` reuse the pieces.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use trtfarm::digest_cache::DigestCache;
use trtfarm::lock::{
    LockDiff, LockedEngine, Resolution, diff_json, key_files, key_settings, lock_path,
    locked_toolchain, read_lock, render_diff, resolution_diff,
};
use trtfarm_proto::refusal::refused_setting;
use trtfarm_proto::v1;
use trtfarm_proto::v1::submit_response::Outcome as Answer;

use crate::cli::{DaemonArgs, SubmitArgs};
use crate::connect::{
    FarmConnection, Losses, Reconnect, connect, describe_status, is_connection_loss,
};
use crate::discover::find_manifests;
use crate::progress::{Display, JobEnd, Line, LineState, follow_job};

mod depfile;
mod outputs;
mod prepare;
mod report;

use outputs::{check_engine_against_lock, fetch_output, record_locks};
pub use prepare::{Prepared, label, load_and_list, prepare_all, request, select, upload_missing};
pub use report::{print_report, print_timed_report};

/// Jobs followed at once; more wait for a slot (the daemon queues builds anyway).
const IN_FLIGHT: usize = 64;

/// What every daemon-facing step needs.
#[derive(Clone)]
pub struct Session {
    /// The daemon.
    pub client: FarmConnection,
    /// Digests of local files.
    pub cache: Arc<DigestCache>,
    /// Live progress on stderr.
    pub display: Arc<Display>,
    /// How to reach the daemon again when it goes away mid-job.
    pub reconnect: Reconnect,
    /// The jobs being followed now.
    pub following: Following,
}

/// The jobs a command is following (id → `manifest#variant`), so that it can cancel exactly its
/// own when it is stopped (`watch` on Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct Following(Arc<std::sync::Mutex<std::collections::BTreeMap<u64, String>>>);

impl Following {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The jobs followed now, oldest id first.
    pub fn jobs(&self) -> Vec<(u64, String)> {
        self.set()
            .iter()
            .map(|(id, label)| (*id, label.clone()))
            .collect()
    }
}

/// Cancels `jobs` (id, `manifest#variant`: the ones a stopped command was following) and says
/// so, one line each, through `say`.
pub async fn cancel_jobs(client: &mut FarmConnection, jobs: &[(u64, String)], say: impl Fn(&str)) {
    if jobs.is_empty() {
        say("no build of this command was still queued or running");
    }
    for (id, label) in jobs {
        match client
            .cancel_job(v1::CancelJobRequest { job_id: *id })
            .await
        {
            Ok(_) => say(&format!("cancelled job {id} ({label})")),
            Err(status) => say(&format!(
                "cannot cancel job {id} ({label}): {}; cancel it with `trtfarm cancel {id}`",
                describe_status(&status)
            )),
        }
    }
}

/// Runs `work` until it ends or the user interrupts (Ctrl-C, SIGTERM): then cancels the jobs
/// `session` follows, says which, and exits 130 (143 for SIGTERM). A second interrupt while
/// cancelling exits at once and leaves them running.
async fn cancel_on_interrupt<T>(
    session: &Session,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let code = tokio::select! {
        done = work => return Ok(done),
        _ = interrupt.recv() => 130,
        _ = terminate.recv() => 143,
    };
    session.display.finish_round();
    let jobs = session.following.jobs();
    eprintln!("stopping: cancelling this command's builds (Ctrl-C again to leave them running)");
    let mut client = session.client.clone();
    tokio::select! {
        _ = cancel_jobs(&mut client, &jobs, |line| eprintln!("{line}")) => {}
        _ = interrupt.recv() => eprintln!("builds left running"),
    }
    std::process::exit(code)
}

/// How variants are submitted.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Queue priority.
    pub priority: i32,
    /// Build even when cached (`verify`).
    pub skip_cache: bool,
    /// Return after submitting.
    pub no_wait: bool,
    /// Compare built engines with `engine.lock` instead of writing it.
    pub locked: bool,
    /// Fetch into this directory instead of each variant's `output`.
    pub out: Option<PathBuf>,
}

/// How one variant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered from the cache.
    Cached,
    /// Built (or joined a build) now.
    Built,
    /// Submitted with `--no-wait`.
    Queued,
    /// Refused or failed.
    Failed,
}

/// The outcome of one variant.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Index into the prepared manifests.
    pub manifest: usize,
    /// The manifest's label.
    pub label: String,
    /// The variant.
    pub variant: String,
    /// The daemon's resolution (empty when the submission was refused).
    pub action_key: String,
    /// The toolchain it resolved to.
    pub toolchain: Option<v1::ToolchainIdentity>,
    /// Where the engine runs.
    pub target: String,
    /// How it ended.
    pub status: Status,
    /// The build's result, when there is one.
    pub result: Option<v1::ActionResult>,
    /// The job, when one was created or joined.
    pub job_id: Option<u64>,
    /// Where the engine was written.
    pub output: Option<PathBuf>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The end of the build log of a failed build.
    pub log_tail: Vec<String>,
    /// The manifest setting a refusal is about (e.g. `toolchain`), when the daemon named one.
    pub refused_setting: Option<String>,
}

impl Outcome {
    /// The lock entry this outcome records, when it produced an engine; an error when the
    /// daemon's answer does not hold valid digests, key and toolchain.
    pub fn locked_engine(&self) -> anyhow::Result<Option<LockedEngine>> {
        let (Some(result), Some(toolchain)) = (&self.result, &self.toolchain) else {
            return Ok(None);
        };
        let Some(engine) = &result.engine else {
            return Ok(None);
        };
        let context = || format!("the daemon's result for engine `{}`", self.variant);
        Ok(Some(LockedEngine {
            name: self.variant.clone(),
            toolchain: locked_toolchain(toolchain)?,
            target: self.target.clone(),
            // A `record` build pins the cache it wrote; a `locked` one the cache it was held to.
            timing_cache: (result.timing_cache.as_ref())
                .or(result.timing_cache_loaded.as_ref())
                .map(v1::Digest::to_blob_digest)
                .transpose()
                .with_context(context)?,
            action_key: self.action_key.parse().with_context(context)?,
            engine: engine.to_blob_digest().with_context(context)?,
            // Filled in from the manifest by whoever records the lock (see `key_inputs`).
            inputs: Default::default(),
            settings: Default::default(),
        }))
    }

    fn fail(&mut self, message: String) {
        self.status = Status::Failed;
        self.failure = Some(message);
    }

    /// Points a refusal about one setting at the line of `manifest` that writes it for this
    /// engine: `--> file:line:column` and the line itself under the message.
    pub fn locate_refusal(&mut self, manifest: &manifest_schema::Manifest) {
        let (Some(key), Some(failure)) = (&self.refused_setting, &mut self.failure) else {
            return;
        };
        if let Some(place) = manifest.setting_place(&self.variant, key) {
            failure.push_str(&format!(
                "\n--> {}\n{}",
                place.location,
                place.snippet.trim_end()
            ));
        }
    }
}

/// Runs `trtfarm submit`. `Ok(false)` when a manifest is invalid, a variant failed or the lock
/// differs.
pub async fn run(daemon: &DaemonArgs, args: &SubmitArgs) -> anyhow::Result<bool> {
    let cache = Arc::new(DigestCache::open_default());
    let Some(prepared) = prepare_all(&find_manifests(&args.paths)?, &cache) else {
        return Ok(false);
    };
    let selected = select(&prepared, &args.engines)?;
    // Rendered before anything is built: an engine with no file to name fails now.
    let depfile = (args.depfile.as_ref())
        .map(|path| {
            depfile::render(&prepared, &selected, &args.engines, args.out.as_deref())
                .map(|text| (path, text))
        })
        .transpose()?;
    let session = Session {
        client: connect(daemon).await?,
        cache,
        display: Arc::new(Display::new()),
        reconnect: Reconnect::new(daemon),
        following: Following::default(),
    };
    let options = Options {
        priority: args.priority,
        no_wait: args.no_wait,
        locked: args.locked,
        out: args.out.clone(),
        skip_cache: false,
    };
    if args.locked {
        upload_missing(&mut session.client.clone(), &prepared).await?;
        let diffs = lock_diffs(&session, &prepared, &selected).await?;
        if !diffs.text.is_empty() {
            for diff in &diffs.text {
                eprint!("{diff}");
            }
            eprintln!(
                "error: --locked: nothing was built; run `trtfarm submit` to update the lock"
            );
            if args.json {
                report::print_json(&[], &diffs.json)?;
            }
            return Ok(false);
        }
    }
    let started = std::time::Instant::now();
    let building = build(&session, &prepared, &selected, &options);
    let outcomes = match options.no_wait {
        true => building.await?,
        false => cancel_on_interrupt(&session, building).await??,
    };
    if let Some((path, text)) = &depfile {
        depfile::write_if_changed(path, text)?;
    }
    print_timed_report(&outcomes, args.json, Some(started.elapsed()))
}

/// What `--locked` found: per manifest that differs, its diff as text (for people) and as JSON
/// objects (for `--json`).
#[derive(Debug, Default)]
struct LockReport {
    text: Vec<String>,
    json: Vec<serde_json::Value>,
}

/// Dry-runs every selected variant and compares it with `engine.lock`.
async fn lock_diffs(
    session: &Session,
    prepared: &[Prepared],
    selected: &[(usize, String)],
) -> anyhow::Result<LockReport> {
    let mut report = LockReport::default();
    for (index, p) in prepared.iter().enumerate() {
        let lock = read_lock(&p.path)?.unwrap_or_default();
        let lock_file = lock_path(Path::new(&p.label));
        let mut diffs = Vec::new();
        for (_, name) in selected.iter().filter(|(i, _)| *i == index) {
            let mut req = request(p, name, &Options::default());
            req.dry_run = true;
            let answer = match session.client.clone().submit(req).await {
                Ok(answer) => answer.into_inner(),
                Err(status) => {
                    let why = describe_status(&status);
                    report.text.push(format!(
                        "{}#{name}: cannot resolve: {}\n",
                        p.label,
                        why.replace('\n', "\n    ")
                    ));
                    report.json.push(serde_json::json!({
                        "lock": lock_file.display().to_string(), "engine": name,
                        "kind": "unresolved", "error": why, "fields": [], "reasons": [],
                    }));
                    continue;
                }
            };
            let (inputs, settings) = key_inputs(p, name);
            let now =
                Resolution {
                    name: name.clone(),
                    inputs,
                    settings,
                    toolchain: locked_toolchain(&answer.toolchain.unwrap_or_default())?,
                    target: answer.target,
                    // The cache a `locked` build would be held to; a `record` build's pin moves only
                    // when it records, so until then the locked one stands.
                    timing_cache: match &answer.timing_cache {
                        Some(digest) => Some(digest.to_blob_digest().with_context(|| {
                            format!("the daemon's dry run of {}#{name}", p.label)
                        })?),
                        None => lock.engine(name).and_then(|e| e.timing_cache),
                    },
                    action_key: answer
                        .action_key
                        .parse()
                        .with_context(|| format!("the daemon's dry run of {}#{name}", p.label))?,
                };
            diffs.extend(resolution_diff(lock.engine(name), &now));
        }
        for stale in &lock.engines {
            if p.manifest.variant(&stale.name).is_none() {
                diffs.push(LockDiff::Removed(stale.clone()));
            }
        }
        if !diffs.is_empty() {
            report.text.push(render_diff(&lock_file, &diffs));
            report.json.extend(diff_json(&lock_file, &diffs));
        }
    }
    Ok(report)
}

/// What went into `variant`'s action key from its manifest and files, as the lock records it.
pub fn key_inputs(
    p: &Prepared,
    variant: &str,
) -> (
    std::collections::BTreeMap<String, trtfarm_types::BlobDigest>,
    std::collections::BTreeMap<String, String>,
) {
    let settings = p.manifest.variant(variant).map(key_settings);
    (key_files(&p.inputs), settings.unwrap_or_default())
}

/// Uploads, submits and follows `selected`, then fetches engines and records (or, locked,
/// checks) `engine.lock`.
pub async fn build(
    session: &Session,
    prepared: &[Prepared],
    selected: &[(usize, String)],
    options: &Options,
) -> anyhow::Result<Vec<Outcome>> {
    if let Err(error) = upload_missing(&mut session.client.clone(), prepared).await {
        // The daemon may have gone away since the last build (`watch` runs for days): reach
        // it again (restarting the local one) and try once more.
        let say = |what: &str| session.display.note(&format!("trtfarm: {error:#}: {what}"));
        let mut again = session.reconnect.again(&mut Losses::default(), say).await?;
        upload_missing(&mut again, prepared).await?;
    }
    let lines = session.display.lines(
        (selected.iter())
            .map(|(index, name)| format!("{}#{name}", prepared[*index].label))
            .collect(),
    );
    // Collected first: a stream over a borrowing closure is not `Send` enough for `watch`'s tasks.
    let tasks: Vec<_> = selected
        .iter()
        .zip(lines)
        .map(|((index, name), line)| {
            let req = request(&prepared[*index], name, options);
            let outcome = blank_outcome(*index, &prepared[*index].label, name);
            run_variant(session, req, line, outcome, options.no_wait)
        })
        .collect();
    let mut outcomes: Vec<Outcome> = futures::stream::iter(tasks)
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    session.display.finish_round();
    for outcome in &mut outcomes {
        outcome.locate_refusal(&prepared[outcome.manifest].manifest);
    }
    if options.no_wait {
        return Ok(outcomes);
    }
    for outcome in outcomes.iter_mut().filter(|o| o.result.is_some()) {
        let p = &prepared[outcome.manifest];
        if options.locked {
            check_engine_against_lock(p, outcome)?;
        }
        if outcome.status != Status::Failed {
            fetch_output(session, p, outcome, options.out.as_deref()).await;
        }
    }
    if !options.locked {
        record_locks(prepared, &outcomes)?;
    }
    Ok(outcomes)
}

/// An outcome that has not happened yet (a failure until something better is known).
pub fn blank_outcome(manifest: usize, label: &str, variant: &str) -> Outcome {
    Outcome {
        manifest,
        label: label.to_string(),
        variant: variant.to_string(),
        action_key: String::new(),
        toolchain: None,
        target: String::new(),
        status: Status::Failed,
        result: None,
        job_id: None,
        output: None,
        failure: None,
        log_tail: Vec::new(),
        refused_setting: None,
    }
}

/// Submits one variant and, unless `no_wait`, follows its job to the end, reaching the daemon
/// again if it goes away meanwhile.
pub async fn run_variant(
    session: &Session,
    req: v1::SubmitRequest,
    line: Line,
    mut outcome: Outcome,
    no_wait: bool,
) -> Outcome {
    let mut client = session.client.clone();
    let mut losses = Losses::default();
    let answer = loop {
        let lost = match client.submit(req.clone()).await {
            Ok(answer) => break answer.into_inner(),
            Err(status) if is_connection_loss(&status) => describe_status(&status),
            Err(status) => {
                outcome.fail(describe_status(&status));
                outcome.refused_setting = refused_setting(&status).map(str::to_string);
                line.finish(&LineState::Failed(describe_status(&status)));
                return outcome;
            }
        };
        let say = |what: &str| {
            session
                .display
                .note(&format!("trtfarm: {}: {lost}: {what}", outcome.label))
        };
        match session.reconnect.again(&mut losses, say).await {
            Ok(again) => client = again,
            Err(error) => {
                outcome.fail(format!("{error:#}"));
                line.finish(&LineState::Failed(format!("{error:#}")));
                return outcome;
            }
        }
    };
    outcome.action_key = answer.action_key;
    outcome.toolchain = answer.toolchain;
    outcome.target = answer.target;
    let job = match answer.outcome {
        Some(Answer::Cached(result)) => {
            outcome.status = Status::Cached;
            outcome.result = Some(result);
            line.finish(&LineState::Cached);
            return outcome;
        }
        Some(Answer::Job(job)) => job,
        None => {
            let why = "the daemon answered with neither a result nor a job";
            line.finish(&LineState::Failed(why.into()));
            outcome.fail(why.into());
            return outcome;
        }
    };
    outcome.job_id = Some(job.id);
    if no_wait {
        outcome.status = Status::Queued;
        line.finish(&LineState::Submitted(job.id));
        return outcome;
    }
    let label = format!("{}#{}", outcome.label, outcome.variant);
    session.following.set().insert(job.id, label);
    let ended = follow_job(
        &mut client,
        job.id,
        &line,
        &session.reconnect,
        &session.display,
    )
    .await;
    session.following.set().remove(&job.id);
    match ended {
        Ok(JobEnd::Finished(result)) => {
            line.finish(&LineState::Built(result.build_duration()));
            outcome.status = Status::Built;
            outcome.result = Some(*result);
        }
        Ok(JobEnd::Failed(failure)) => {
            line.finish(&LineState::Failed(failure.message.clone()));
            outcome.fail(failure.message);
            outcome.log_tail = failure.log_tail;
        }
        Err(error) => {
            line.finish(&LineState::Failed(format!("{error:#}")));
            outcome.fail(format!("{error:#}"));
        }
    }
    outcome
}
