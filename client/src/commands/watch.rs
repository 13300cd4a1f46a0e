//! `trtfarm watch`: rebuild when a manifest, its model, the model's external data or a plugin
//! changes, until Ctrl-C.
//!
//! File events (notify, debounced) only say *that* something may have changed. Each relevant
//! batch (or a watcher error or overflow, which loses events) triggers a full rescan: find the
//! manifests, validate them and digest their inputs through the digest cache, which hashes only
//! files whose size, mtime or inode moved. [`to_resubmit`] then compares manifest text and input
//! digests with what was last submitted, so touching a file rebuilds nothing. Events on our own
//! outputs (engines, `engine.lock`, temporary files) are not inputs and are ignored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{Event, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::signal::unix::{SignalKind, signal};
use trtfarm::digest_cache::DigestCache;
use trtfarm::inputs::digest_inputs;
use trtfarm_proto::v1;

use super::submit::{
    Options, Prepared, Session, build, label, load_and_list, print_report, select,
};
use crate::cli::{DaemonArgs, WatchArgs};
use crate::connect::connect;
use crate::discover::{MANIFEST_FILE_NAME, find_manifests};
use crate::progress::Display;

/// What a manifest was when it was last submitted (or found invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fingerprint {
    /// The manifest's text and every input with its digest.
    Valid {
        /// The manifest text.
        toml: String,
        /// The inputs, as the request names them.
        inputs: Vec<v1::InputFile>,
    },
    /// It does not validate; the rendered reason.
    Invalid(String),
}

/// Which valid manifests to submit: those not submitted before, or whose text or input
/// digests differ from what was. Pure: the whole "did anything change?" decision.
pub fn to_resubmit(
    submitted: &BTreeMap<PathBuf, Fingerprint>,
    now: &BTreeMap<PathBuf, Fingerprint>,
) -> Vec<PathBuf> {
    now.iter()
        .filter(|(path, fingerprint)| {
            matches!(fingerprint, Fingerprint::Valid { .. })
                && submitted.get(*path) != Some(fingerprint)
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// Whether an event may change a build: an overflow (events were lost), or a change (not a
/// mere read: our own rescans open every input) to a manifest or an input we know of, or to a
/// new `engine.toml`. Engines, locks and temporary files are none of these.
pub fn is_relevant(event: &Event, known: &HashSet<PathBuf>) -> bool {
    if event.need_rescan() {
        return true;
    }
    !matches!(event.kind, EventKind::Access(_))
        && event.paths.iter().any(|path| {
            known.contains(path) || path.file_name().is_some_and(|n| n == MANIFEST_FILE_NAME)
        })
}

/// One full scan of the watched manifests.
struct Scan {
    prepared: BTreeMap<PathBuf, Prepared>,
    fingerprints: BTreeMap<PathBuf, Fingerprint>,
    /// Manifests and inputs, as absolute paths in canonical directories (how events name them).
    known: HashSet<PathBuf>,
    /// Directories to watch.
    dirs: BTreeMap<PathBuf, RecursiveMode>,
}

/// Runs `trtfarm watch` until Ctrl-C (or SIGTERM).
pub async fn run(daemon: &DaemonArgs, args: &WatchArgs) -> anyhow::Result<bool> {
    let roots = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    find_manifests(&roots)?; // fail now, not silently later, when there is nothing to watch
    let session = Session {
        client: connect(daemon).await?,
        cache: Arc::new(DigestCache::open_default()),
        display: Arc::new(Display::new()),
        reconnect: crate::connect::Reconnect::new(daemon),
    };
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(
        Duration::from_millis(args.debounce_ms),
        None,
        move |batch| {
            let _ = sender.send(batch);
        },
    )?;
    let mut watched = BTreeMap::new();
    let mut submitted = BTreeMap::new();
    let mut running: HashMap<PathBuf, tokio::task::JoinHandle<()>> = HashMap::new();

    // Created once, so a Ctrl-C that arrives during a rescan is kept, not lost.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut scan = rescan(&roots, &session.cache);
    sync_watches(&mut debouncer, &mut watched, &scan.dirs);
    act(&session, &scan, &mut submitted, &mut running);
    session.display.note(&format!(
        "watching {} manifests and {} files for changes; Ctrl-C to stop",
        scan.fingerprints.len(),
        scan.known.len()
    ));
    loop {
        let batch = tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            batch = events.recv() => batch,
        };
        let Some(batch) = batch else { break };
        let mut relevant = matters(&batch, &scan.known);
        while let Ok(more) = events.try_recv() {
            relevant |= matters(&more, &scan.known);
        }
        if !relevant {
            continue;
        }
        scan = rescan(&roots, &session.cache);
        sync_watches(&mut debouncer, &mut watched, &scan.dirs);
        if !act(&session, &scan, &mut submitted, &mut running) {
            session
                .display
                .note("watch: no content changed; nothing to rebuild");
        }
    }
    for task in running.values() {
        task.abort();
    }
    Ok(true)
}

/// Whether a debounced batch may change a build; a watcher error or an overflow always may.
fn matters(batch: &DebounceEventResult, known: &HashSet<PathBuf>) -> bool {
    match batch {
        Err(_) => true,
        Ok(events) => events.iter().any(|e| is_relevant(e, known)),
    }
}

/// Finds, validates and digests every manifest under `roots`.
fn rescan(roots: &[PathBuf], cache: &DigestCache) -> Scan {
    let mut scan = Scan {
        prepared: BTreeMap::new(),
        fingerprints: BTreeMap::new(),
        known: HashSet::new(),
        dirs: BTreeMap::new(),
    };
    for root in roots {
        if let Ok(dir) = std::fs::canonicalize(root) {
            match dir.is_dir() {
                true => scan.dirs.insert(dir, RecursiveMode::Recursive),
                false => scan.dirs.insert(parent(&dir), RecursiveMode::NonRecursive),
            };
        }
    }
    for path in find_manifests(roots).unwrap_or_default() {
        remember(&mut scan, &path);
        let fingerprint = match load_and_list(&path, cache) {
            Err(rendered) => Fingerprint::Invalid(rendered),
            Ok((manifest, local, learned)) => {
                local
                    .iter()
                    .for_each(|input| remember(&mut scan, &input.local));
                match digest_inputs(cache, &[&local]) {
                    Err(error) => {
                        Fingerprint::Invalid(format!("{}: error: {error:#}\n", path.display()))
                    }
                    Ok(mut lists) => {
                        if let Some(learned) = learned.filter(|l| !l.remembered) {
                            trtfarm::model_facts::remember(
                                cache,
                                &manifest.model.resolved_path,
                                &learned.facts,
                            );
                        }
                        let inputs = lists.pop().unwrap_or_default();
                        let fingerprint = Fingerprint::Valid {
                            toml: manifest.source_text().to_string(),
                            inputs: inputs.clone(),
                        };
                        let label = label(&path);
                        let prepared = Prepared {
                            path: path.clone(),
                            label,
                            manifest,
                            local,
                            inputs,
                        };
                        scan.prepared.insert(path.clone(), prepared);
                        fingerprint
                    }
                }
            }
        };
        scan.fingerprints.insert(path, fingerprint);
    }
    scan
}

/// Records `path` as known and makes sure its directory is watched.
fn remember(scan: &mut Scan, path: &Path) {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = std::fs::canonicalize(parent(&absolute)).unwrap_or_else(|_| parent(&absolute));
    if let Some(name) = absolute.file_name() {
        scan.known.insert(dir.join(name));
    }
    if let Ok(canonical) = std::fs::canonicalize(&absolute) {
        scan.known.insert(canonical);
    }
    let covered = scan
        .dirs
        .iter()
        .any(|(d, mode)| *d == dir || (*mode == RecursiveMode::Recursive && dir.starts_with(d)));
    if !covered {
        scan.dirs.insert(dir, RecursiveMode::NonRecursive);
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
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

/// Prints new diagnostics and submits what changed (replacing a build of the same manifest
/// still being followed). Returns whether it did either.
fn act(
    session: &Session,
    scan: &Scan,
    submitted: &mut BTreeMap<PathBuf, Fingerprint>,
    running: &mut HashMap<PathBuf, tokio::task::JoinHandle<()>>,
) -> bool {
    submitted.retain(|path, _| scan.fingerprints.contains_key(path));
    let mut acted = false;
    for (path, fingerprint) in &scan.fingerprints {
        if let Fingerprint::Invalid(rendered) = fingerprint
            && submitted.get(path) != Some(fingerprint)
        {
            eprint!("{rendered}");
            submitted.insert(path.clone(), fingerprint.clone());
            acted = true;
        }
    }
    for path in to_resubmit(submitted, &scan.fingerprints) {
        let (Some(prepared), Some(fingerprint)) =
            (scan.prepared.get(&path), scan.fingerprints.get(&path))
        else {
            continue;
        };
        submitted.insert(path.clone(), fingerprint.clone());
        acted = true;
        if let Some(previous) = running.remove(&path) {
            previous.abort();
        }
        let session = session.clone();
        let prepared = vec![prepared.clone()];
        let task = tokio::spawn(async move {
            let run = async {
                let selected = select(&prepared, &[])?;
                let outcomes = build(&session, &prepared, &selected, &Options::default()).await?;
                session.display.suspend(|| print_report(&outcomes, false))
            };
            if let Err(error) = run.await {
                eprintln!("error: {}: {error:#}", prepared[0].label);
            }
        });
        running.insert(path, task);
    }
    running.retain(|_, task| !task.is_finished());
    acted
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::notify::event::{AccessKind, Flag, MetadataKind, ModifyKind};

    fn input(path: &str, hex: char) -> v1::InputFile {
        v1::InputFile {
            path: path.into(),
            digest: Some(v1::Digest {
                blake3: hex.to_string().repeat(64),
                size_bytes: 10,
            }),
            role: v1::InputRole::Model as i32,
        }
    }

    fn valid(toml: &str, digest: char) -> Fingerprint {
        Fingerprint::Valid {
            toml: toml.into(),
            inputs: vec![input("model.onnx", digest)],
        }
    }

    fn map(entries: &[(&str, Fingerprint)]) -> BTreeMap<PathBuf, Fingerprint> {
        entries
            .iter()
            .map(|(p, f)| (PathBuf::from(p), f.clone()))
            .collect()
    }

    #[test]
    fn only_new_or_changed_manifests_are_resubmitted() {
        let before = map(&[
            ("a/engine.toml", valid("x", 'a')),
            ("b/engine.toml", valid("y", 'b')),
        ]);
        // A touched model re-digests to the same value: nothing to do.
        assert_eq!(to_resubmit(&before, &before.clone()), Vec::<PathBuf>::new());
        // New weights: the model's digest moved.
        let now = map(&[
            ("a/engine.toml", valid("x", 'c')),
            ("b/engine.toml", valid("y", 'b')),
        ]);
        assert_eq!(to_resubmit(&before, &now), [PathBuf::from("a/engine.toml")]);
        // An edited manifest, and a manifest seen for the first time.
        let now = map(&[
            ("a/engine.toml", valid("x", 'a')),
            ("b/engine.toml", valid("y2", 'b')),
            ("c/engine.toml", valid("z", 'd')),
        ]);
        assert_eq!(
            to_resubmit(&before, &now),
            [
                PathBuf::from("b/engine.toml"),
                PathBuf::from("c/engine.toml")
            ]
        );
    }

    #[test]
    fn invalid_manifests_are_never_submitted_and_a_fix_is() {
        let broken = map(&[("a/engine.toml", Fingerprint::Invalid("error".into()))]);
        assert_eq!(
            to_resubmit(&BTreeMap::new(), &broken),
            Vec::<PathBuf>::new()
        );
        let fixed = map(&[("a/engine.toml", valid("x", 'a'))]);
        assert_eq!(
            to_resubmit(&broken, &fixed),
            [PathBuf::from("a/engine.toml")]
        );
    }

    #[test]
    fn an_extra_external_data_file_is_a_change() {
        let before = map(&[("a/engine.toml", valid("x", 'a'))]);
        let mut with_data = valid("x", 'a');
        if let Fingerprint::Valid { inputs, .. } = &mut with_data {
            inputs.push(input("model.onnx.data", 'e'));
        }
        assert_eq!(
            to_resubmit(&before, &map(&[("a/engine.toml", with_data)])).len(),
            1
        );
    }

    #[test]
    fn our_own_outputs_and_reads_are_not_relevant_but_changes_to_inputs_are() {
        let known: HashSet<PathBuf> = [
            "/r/a/engine.toml",
            "/r/a/model.onnx",
            "/r/a/model.onnx.data",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        let touched = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
        let event = |kind: EventKind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        for path in [
            "/r/a/model.onnx",
            "/r/a/model.onnx.data",
            "/r/a/engine.toml",
            "/r/new/engine.toml",
        ] {
            assert!(is_relevant(&event(touched, path), &known), "{path}");
        }
        for path in [
            "/r/a/engine.lock",
            "/r/a/.engine.lock.123.tmp",
            "/r/a/build/a.fp32.engine",
            "/r/a/build/.a.fp32.engine.123.partial",
            "/r/a/notes.txt",
        ] {
            assert!(!is_relevant(&event(touched, path), &known), "{path}");
        }
        // Hashing an input opens it; that must not trigger another rescan.
        let read = EventKind::Access(AccessKind::Any);
        assert!(!is_relevant(&event(read, "/r/a/model.onnx"), &known));
        // Lost events: rescan whatever they were about.
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(is_relevant(&overflow, &known));
    }
}
