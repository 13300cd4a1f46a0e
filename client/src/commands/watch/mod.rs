//! `trtfarm watch`: rebuild when a manifest, its model, the model's external data or a plugin
//! changes, until Ctrl-C.
//!
//! File events (notify, debounced) only say *that* something may have changed. Each relevant
//! batch (or a watcher error or overflow, which loses events) triggers a full rescan
//! ([`scan`]), and [`scan::to_resubmit`] compares manifest text and input digests with what was
//! last submitted, so touching a file rebuilds nothing. Events on our own outputs (engines,
//! `engine.lock`, temporary files) are not inputs and are ignored.
//!
//! Each rebuild starts with a header naming what changed (on a terminal, on a cleared screen)
//! and ends with a summary line ([`messages`]); the daemon is checked, and the local one started
//! again, before every rebuild ([`link`]). Ctrl-C cancels the builds this watch is following.

mod link;
mod messages;
pub mod scan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use trtfarm::digest_cache::DigestCache;

use super::submit::{
    Following, Options, Session, Status, build, cancel_jobs, print_report, select,
};
use crate::cli::{DaemonArgs, WatchArgs};
use crate::connect::{Reconnect, humanize};
use crate::discover::find_manifests;
use crate::progress::Display;
use link::Link;
use messages::{Health, Trigger, clock, header, manifests, recovery, relative_names, summary};
use scan::{Fingerprint, Scan, is_relevant, is_watched, rescan, to_resubmit};

/// How one manifest's rebuild ended.
enum Ended {
    /// The daemon answered; whether any variant failed.
    Built { failed: bool },
    /// It never got through to the daemon; why.
    Unreached(String),
}

/// A rebuild task's end, sent back to the loop.
struct Finished {
    path: PathBuf,
    serial: u64,
    ended: Ended,
}

/// A rebuild being followed.
struct Running {
    task: tokio::task::JoinHandle<()>,
    serial: u64,
    label: String,
}

/// Everything the loop keeps between events.
struct Watch {
    link: Link,
    cache: Arc<DigestCache>,
    display: Arc<Display>,
    reconnect: Reconnect,
    clear: bool,
    submitted: BTreeMap<PathBuf, Fingerprint>,
    health: BTreeMap<PathBuf, Health>,
    running: HashMap<PathBuf, Running>,
    serial: u64,
    failed_this_round: usize,
    /// The jobs its rebuilds are following (to cancel them when it is stopped).
    following: Following,
    done: mpsc::UnboundedSender<Finished>,
}

/// Runs `trtfarm watch` until Ctrl-C (or SIGTERM).
pub async fn run(daemon: &DaemonArgs, args: &WatchArgs) -> anyhow::Result<bool> {
    let roots = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    find_manifests(&roots)?; // fail now, not silently later, when there is nothing to watch
    let mut link = Link::new(daemon);
    // Reach the daemon once now: a wrong URL or token is an error at start, not a line later.
    link.ready(|_| {}).await.map_err(anyhow::Error::msg)?;
    let (done, mut finished) = mpsc::unbounded_channel();
    let mut watch = Watch {
        link,
        cache: Arc::new(DigestCache::open_default()),
        display: Arc::new(Display::new()),
        reconnect: Reconnect::new(daemon),
        clear: !args.no_clear && std::io::stderr().is_terminal(),
        submitted: BTreeMap::new(),
        health: BTreeMap::new(),
        running: HashMap::new(),
        serial: 0,
        failed_this_round: 0,
        following: Following::default(),
        done,
    };
    let (sender, mut events) = mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(
        Duration::from_millis(args.debounce_ms),
        None,
        move |batch| {
            let _ = sender.send(batch);
        },
    )?;
    let mut watched = BTreeMap::new();
    let cwd = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .unwrap_or_default();

    // Created once, so a Ctrl-C that arrives during a rescan is kept, not lost.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut scan = rescan(&roots, &watch.cache, &Scan::default());
    sync_watches(&mut debouncer, &mut watched, &scan.dirs);
    watch.display.note(&format!(
        "[{}] watching {} and {} for changes — Ctrl-C to stop",
        clock(),
        manifests(scan.fingerprints.len()),
        match scan.known.len().saturating_sub(scan.fingerprints.len()) {
            1 => "1 file".to_string(),
            n => format!("{n} files"),
        }
    ));
    watch.act(&scan, None).await;
    loop {
        let batch = tokio::select! {
            _ = interrupt.recv() => return watch.stop(130, &mut interrupt).await,
            _ = terminate.recv() => return watch.stop(143, &mut interrupt).await,
            Some(end) = finished.recv() => {
                watch.finished(end, scan.fingerprints.len());
                continue;
            }
            batch = events.recv() => batch,
        };
        let Some(batch) = batch else { break };
        let mut changed = Vec::new();
        let mut lost = false;
        collect(&batch, &scan.known, &mut changed, &mut lost);
        while let Ok(more) = events.try_recv() {
            collect(&more, &scan.known, &mut changed, &mut lost);
        }
        if changed.is_empty() && !lost {
            continue;
        }
        let trigger = match lost {
            true => Trigger::Lost,
            false => Trigger::Changed(relative_names(&changed, &cwd)),
        };
        scan = rescan(&roots, &watch.cache, &scan);
        sync_watches(&mut debouncer, &mut watched, &scan.dirs);
        if !watch.act(&scan, Some(&trigger)).await {
            let names = match &trigger {
                Trigger::Changed(names) => names.join(", "),
                Trigger::Lost => "lost events".into(),
            };
            watch.display.note(&format!(
                "[{}] {names}: no content changed; nothing to rebuild",
                clock()
            ));
        }
    }
    Ok(true)
}

/// Adds the watched files a debounced batch names to `changed`; sets `lost` when the watcher
/// lost events (an error or an overflow: anything may have changed).
fn collect(
    batch: &DebounceEventResult,
    known: &HashSet<PathBuf>,
    changed: &mut Vec<PathBuf>,
    lost: &mut bool,
) {
    let Ok(events) = batch else {
        *lost = true;
        return;
    };
    for event in events.iter().filter(|e| is_relevant(e, known)) {
        *lost |= event.need_rescan();
        changed.extend(event.paths.iter().filter(|p| is_watched(p, known)).cloned());
    }
}

impl Watch {
    /// Prints new diagnostics and submits what changed (replacing a build of the same manifest
    /// still being followed), after a header when `trigger` says why. Returns whether it did
    /// either.
    async fn act(&mut self, scan: &Scan, trigger: Option<&Trigger>) -> bool {
        self.submitted
            .retain(|path, _| scan.fingerprints.contains_key(path));
        self.health
            .retain(|path, _| scan.fingerprints.contains_key(path));
        let newly_invalid: Vec<(&PathBuf, &String)> = (scan.fingerprints.iter())
            .filter_map(|(path, fingerprint)| match fingerprint {
                Fingerprint::Invalid(rendered) if self.submitted.get(path) != Some(fingerprint) => {
                    Some((path, rendered))
                }
                _ => None,
            })
            .collect();
        let resubmit = to_resubmit(&self.submitted, &scan.fingerprints);
        if newly_invalid.is_empty() && resubmit.is_empty() {
            return false;
        }
        if let Some(trigger) = trigger {
            if self.clear {
                self.display.suspend(messages::clear_screen);
            }
            self.display.note(&header(&clock(), trigger));
        }
        for (path, rendered) in newly_invalid {
            self.display.suspend(|| eprint!("{rendered}"));
            self.submitted
                .insert(path.clone(), scan.fingerprints[path].clone());
            self.health.insert(path.clone(), Health::Invalid);
            self.failed_this_round += 1;
        }
        if !resubmit.is_empty() {
            let display = self.display.clone();
            match self
                .link
                .ready(|line| display.note(&format!("[{}] {line}", clock())))
                .await
            {
                Ok(client) => self.submit(scan, &resubmit, client),
                Err(why) => {
                    // Nothing recorded as submitted: the next change (even a touch) tries again.
                    self.display.note(&format!(
                        "[{}] {why}; nothing was built; will try again on the next change",
                        clock()
                    ));
                    for path in &resubmit {
                        self.health.insert(path.clone(), Health::Failed);
                    }
                    self.failed_this_round += resubmit.len();
                }
            }
        }
        if self.running.is_empty() {
            self.round_over(scan.fingerprints.len());
        }
        true
    }

    /// Starts one rebuild task per manifest in `paths`.
    fn submit(&mut self, scan: &Scan, paths: &[PathBuf], client: crate::connect::FarmConnection) {
        let session = Session {
            client,
            cache: self.cache.clone(),
            display: self.display.clone(),
            reconnect: self.reconnect.clone(),
            following: self.following.clone(),
        };
        for path in paths {
            let (Some(prepared), Some(fingerprint)) =
                (scan.prepared.get(path), scan.fingerprints.get(path))
            else {
                continue;
            };
            let label = prepared.label.clone();
            if let Some(news) = recovery(&label, self.health.get(path).copied(), Health::Good)
                .filter(|_| self.health.get(path) == Some(&Health::Invalid))
            {
                self.display.note(&news);
                self.health.insert(path.clone(), Health::Good);
            }
            self.submitted.insert(path.clone(), fingerprint.clone());
            if let Some(previous) = self.running.remove(path) {
                previous.task.abort();
            }
            self.serial += 1;
            let serial = self.serial;
            let session = session.clone();
            let prepared = vec![prepared.clone()];
            let done = self.done.clone();
            let owner = path.clone();
            let task = tokio::spawn(async move {
                let run = async {
                    let selected = select(&prepared, &[])?;
                    build(&session, &prepared, &selected, &Options::default()).await
                };
                let ended = match run.await {
                    Ok(outcomes) => {
                        let _ = session.display.suspend(|| print_report(&outcomes, false));
                        Ended::Built {
                            failed: outcomes.iter().any(|o| o.status == Status::Failed),
                        }
                    }
                    Err(error) => Ended::Unreached(format!("{:#}", humanize(error))),
                };
                let _ = done.send(Finished {
                    path: owner,
                    serial,
                    ended,
                });
            });
            self.running.insert(
                path.clone(),
                Running {
                    task,
                    serial,
                    label,
                },
            );
        }
    }

    /// A rebuild task ended: says what recovered or could not be reached, and once the last
    /// one of the round is done, the summary.
    fn finished(&mut self, end: Finished, watched: usize) {
        if self.running.get(&end.path).map(|r| r.serial) != Some(end.serial) {
            return; // replaced by a newer rebuild of the same manifest meanwhile
        }
        let Some(running) = self.running.remove(&end.path) else {
            return;
        };
        let before = self.health.get(&end.path).copied();
        let after = match end.ended {
            Ended::Built { failed: false } => Health::Good,
            Ended::Built { failed: true } => Health::Failed,
            Ended::Unreached(why) => {
                self.display.note(&format!(
                    "error: {}: {why}; will try again on the next change",
                    running.label
                ));
                // Forgotten, so that the next change (even a touch) submits it again.
                self.submitted.remove(&end.path);
                Health::Failed
            }
        };
        if let Some(news) = recovery(&running.label, before, after) {
            self.display.note(&news);
        }
        if after == Health::Failed {
            self.failed_this_round += 1;
        }
        self.health.insert(end.path, after);
        if self.running.is_empty() {
            self.round_over(watched);
        }
    }

    /// The summary line after the last report of a rebuild.
    fn round_over(&mut self, watched: usize) {
        self.display
            .note(&summary(&clock(), self.failed_this_round, watched));
        self.failed_this_round = 0;
    }

    /// Ctrl-C (`code` 130) or SIGTERM (143): with nothing running, a goodbye and exit 0; else
    /// cancels the jobs this watch is following, says which, and exits with `code`. Another
    /// Ctrl-C meanwhile exits at once.
    async fn stop(
        &mut self,
        code: i32,
        interrupt: &mut tokio::signal::unix::Signal,
    ) -> anyhow::Result<bool> {
        if self.running.is_empty() {
            self.display.note("stopped watching");
            return Ok(true);
        }
        let jobs = self.following.jobs();
        for running in self.running.values() {
            running.task.abort();
        }
        self.running.clear();
        eprintln!(
            "stopping: cancelling the builds of this watch (Ctrl-C again to leave them running)"
        );
        let cancel = async {
            match self.link.current() {
                Some(mut client) => {
                    cancel_jobs(&mut client, &jobs, |line| eprintln!("{line}")).await
                }
                None => eprintln!("no connection to the daemon: nothing was cancelled"),
            }
        };
        tokio::select! {
            _ = cancel => eprintln!("stopped watching"),
            _ = interrupt.recv() => eprintln!("stopped watching; builds left running"),
        }
        std::process::exit(code)
    }
}

/// Watches the directories `wanted` names and stops watching the others.
fn sync_watches(
    debouncer: &mut Debouncer<RecommendedWatcher, RecommendedCache>,
    watched: &mut BTreeMap<PathBuf, RecursiveMode>,
    wanted: &BTreeMap<PathBuf, RecursiveMode>,
) {
    watched.retain(|dir, mode| {
        let keep = wanted.get(dir) == Some(mode);
        if !keep {
            let _ = debouncer.unwatch(dir);
        }
        keep
    });
    for (dir, mode) in wanted {
        if !watched.contains_key(dir) {
            match debouncer.watch(dir, *mode) {
                Ok(()) => {
                    watched.insert(dir.clone(), *mode);
                }
                Err(error) => eprintln!("warning: cannot watch {}: {error}", dir.display()),
            }
        }
    }
}
