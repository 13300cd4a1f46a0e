//! What the watched manifests are now: find them, validate them, digest their inputs (through
//! the digest cache, which hashes only files whose size, mtime or inode moved), and decide what
//! changed since the last submission ([`to_resubmit`]) and which file events matter
//! ([`is_relevant`]).
//!
//! A manifest that stops validating (a broken model, a model that went missing) keeps the
//! inputs it had at its last good scan among the watched files: otherwise restoring the old
//! model, the very fix, would go unnoticed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use notify_debouncer_full::notify::{Event, EventKind, RecursiveMode};
use trtfarm::digest_cache::DigestCache;
use trtfarm::inputs::digest_inputs;
use trtfarm_proto::v1;

use super::super::submit::{Prepared, label, load_and_list};
use crate::discover::{MANIFEST_FILE_NAME, find_manifests};

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
    !matches!(event.kind, EventKind::Access(_)) && event.paths.iter().any(|p| is_watched(p, known))
}

/// Whether `path` is a manifest or an input we know of (or a new manifest).
pub fn is_watched(path: &Path, known: &HashSet<PathBuf>) -> bool {
    known.contains(path) || path.file_name().is_some_and(|n| n == MANIFEST_FILE_NAME)
}

/// One full scan of the watched manifests.
#[derive(Default)]
pub struct Scan {
    /// The manifests that validate, ready to submit.
    pub prepared: BTreeMap<PathBuf, Prepared>,
    /// Every manifest found, valid or not.
    pub fingerprints: BTreeMap<PathBuf, Fingerprint>,
    /// Manifests and inputs, as absolute paths in canonical directories (how events name them).
    pub known: HashSet<PathBuf>,
    /// Directories to watch.
    pub dirs: BTreeMap<PathBuf, RecursiveMode>,
    /// Each manifest's input files at its last scan that listed them (carried over while the
    /// manifest does not validate).
    pub inputs: BTreeMap<PathBuf, Vec<PathBuf>>,
}

/// Finds, validates and digests every manifest under `roots`; `previous` lends the inputs of
/// manifests that no longer validate.
pub fn rescan(roots: &[PathBuf], cache: &DigestCache, previous: &Scan) -> Scan {
    let mut scan = Scan::default();
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
            Err(rendered) => {
                // Still watch what it read last time: putting that file back is the fix.
                for input in previous.inputs.get(&path).into_iter().flatten() {
                    remember(&mut scan, input);
                }
                if let Some(inputs) = previous.inputs.get(&path) {
                    scan.inputs.insert(path.clone(), inputs.clone());
                }
                Fingerprint::Invalid(rendered)
            }
            Ok((manifest, local, learned)) => {
                for input in &local {
                    remember(&mut scan, &input.local);
                }
                let listed = local.iter().map(|input| input.local.clone()).collect();
                scan.inputs.insert(path.clone(), listed);
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
                        let prepared = Prepared {
                            path: path.clone(),
                            label: label(&path),
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

#[cfg(test)]
mod restore_tests {
    use super::*;
    use onnx_graph::{DataType, GraphBuilder, ModelBuilder, dims};

    /// A valid project: a one-ReLU model and a manifest with one engine.
    fn project(dir: &Path) -> (PathBuf, PathBuf) {
        let mut g = GraphBuilder::new("tiny", 1);
        let x = g.input("images", DataType::Float, dims!["N", 3, 8, 8]);
        let y = g.relu(&x);
        g.output("out", &y, DataType::Float, dims!["N", 3, 8, 8]);
        let model = dir.join("model.onnx");
        ModelBuilder::new(g).write(&model).unwrap();
        let manifest = dir.join("engine.toml");
        std::fs::write(
            &manifest,
            "schema_version = 1\n[model]\npath = \"model.onnx\"\n[defaults]\ntoolchain = \
             \"tensorrt-rtx 1.7\"\n[defaults.compatibility]\ncompute_capabilities = \
             [\"8.9\"]\n[[profile]]\ninputs.images = { min = [1, 3, 8, 8], opt = \
             [1, 3, 8, 8], max = [2, 3, 8, 8] }\n[[engine]]\nname = \"fp32\"\n",
        )
        .unwrap();
        (manifest, model)
    }

    #[test]
    fn a_broken_model_stays_watched_so_restoring_it_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (manifest, model) = project(&root);
        let backup = root.join("backup.onnx");
        std::fs::copy(&model, &backup).unwrap();
        let cache = DigestCache::disabled();
        let roots = [root.clone()];

        let good = rescan(&roots, &cache, &Scan::default());
        assert!(
            matches!(good.fingerprints[&manifest], Fingerprint::Valid { .. }),
            "{:?}",
            good.fingerprints[&manifest]
        );
        assert!(good.known.contains(&model));

        // The model is replaced by bytes that are no model: the manifest no longer validates.
        std::fs::write(&model, b"not an onnx model").unwrap();
        let broken = rescan(&roots, &cache, &good);
        assert!(matches!(
            broken.fingerprints[&manifest],
            Fingerprint::Invalid(_)
        ));
        let restore = Event::new(EventKind::Modify(
            notify_debouncer_full::notify::event::ModifyKind::Any,
        ))
        .add_path(model.clone());
        assert!(
            is_relevant(&restore, &broken.known),
            "putting the old model back must trigger a rescan"
        );
        // And it stays watched however many scans it stays broken.
        assert!(rescan(&roots, &cache, &broken).known.contains(&model));

        // Restored: valid again, with the first scan's fingerprint, so it is submitted again.
        std::fs::copy(&backup, &model).unwrap();
        let restored = rescan(&roots, &cache, &broken);
        assert_eq!(
            restored.fingerprints[&manifest],
            good.fingerprints[&manifest]
        );
        let submitted: BTreeMap<_, _> = broken.fingerprints.clone();
        assert_eq!(to_resubmit(&submitted, &restored.fingerprints), [manifest]);
    }
}
