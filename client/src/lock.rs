//! `engine.lock`: what each engine variant of the `engine.toml` beside it resolved to when it was
//! last built: the toolchain (flavour, version, library digest), the target, the timing cache,
//! the action key and the engine digest.
//!
//! `trtfarm submit` writes it (atomically, engines sorted by name, a header comment);
//! `submit --locked` fails when a build would resolve differently; `trtfarm verify` rebuilds
//! each locked engine and compares; `trtfarm fetch MANIFEST#ENGINE` reads the digest from it.
//!
//! The file format is `trtfarm_types::lock` (`trtfarmd store gc --lock` reads the same one);
//! this module adds where the lock sits, the lock entry of a daemon's answer, and the diff
//! `submit --locked` prints.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use trtfarm_proto::v1;
use trtfarm_types::{ActionKey, Blake3Digest, BlobDigest};

pub use trtfarm_types::lock::{
    LOCK_FILE_NAME, LOCK_VERSION, Lock, LockedEngine, LockedToolchain, lock_path,
};

/// Reads the lock beside `manifest`; `None` when there is none.
pub fn read_lock(manifest: &Path) -> anyhow::Result<Option<Lock>> {
    Ok(Lock::read_file(&lock_path(manifest))?)
}

/// Writes `lock` beside `manifest` (atomically).
pub fn write_lock(lock: &Lock, manifest: &Path) -> anyhow::Result<()> {
    Ok(lock.write_file(&lock_path(manifest))?)
}

/// The lock's toolchain from the daemon's identity; the wire carries the library digest as bare
/// hex, the lock as `blake3:<hex>`, both the same [`Blake3Digest`].
pub fn locked_toolchain(identity: &v1::ToolchainIdentity) -> anyhow::Result<LockedToolchain> {
    let context = || {
        format!(
            "the daemon reported a malformed toolchain ({} {}, library {})",
            identity.flavour, identity.version, identity.library_digest
        )
    };
    Ok(LockedToolchain {
        flavour: identity.flavour.parse().with_context(context)?,
        version: identity.version.parse().with_context(context)?,
        library: Blake3Digest::from_hex(&identity.library_digest).with_context(context)?,
    })
}

/// What a variant resolves to before it is built: its lock entry but for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The variant's name.
    pub name: String,
    /// The toolchain that would build it.
    pub toolchain: LockedToolchain,
    /// Where it would run (as [`LockedEngine::target`]).
    pub target: String,
    /// The timing cache it would use.
    pub timing_cache: Option<BlobDigest>,
    /// The daemon's action key.
    pub action_key: ActionKey,
    /// Its input files by role (as [`LockedEngine::inputs`]).
    pub inputs: BTreeMap<String, BlobDigest>,
    /// Its build settings by dotted name (as [`LockedEngine::settings`]).
    pub settings: BTreeMap<String, String>,
}

impl Resolution {
    /// The resolution a lock entry records.
    pub fn of(locked: &LockedEngine) -> Self {
        Resolution {
            name: locked.name.clone(),
            toolchain: locked.toolchain,
            target: locked.target.clone(),
            timing_cache: locked.timing_cache,
            action_key: locked.action_key,
            inputs: locked.inputs.clone(),
            settings: locked.settings.clone(),
        }
    }
}

/// The input files of a build by role, as the lock records them: `model`,
/// `external-data:<path>`, `plugin:<path>`. A file whose digest does not parse is left out (the
/// daemon refuses the request anyway).
pub fn key_files(files: &[v1::InputFile]) -> BTreeMap<String, BlobDigest> {
    files
        .iter()
        .filter_map(|file| {
            let digest = file.digest.as_ref()?.to_blob_digest().ok()?;
            let role = match v1::InputRole::try_from(file.role).ok()? {
                v1::InputRole::Model => "model".to_string(),
                v1::InputRole::ExternalData => format!("external-data:{}", file.path),
                v1::InputRole::Plugin => format!("plugin:{}", file.path),
                v1::InputRole::Unspecified => return None,
            };
            Some((role, digest))
        })
        .collect()
}

/// Every build setting of `variant` that is part of the engine's identity, by dotted name, its
/// value as text: what [`manifest_schema::Variant::canonical_encoding`] covers, so that a
/// changed action key can be explained setting by setting. Left out, as the encoding leaves them
/// out: the name, `output`, `build_timeout`, `compatibility.gpu` and profile names.
pub fn key_settings(variant: &manifest_schema::Variant) -> BTreeMap<String, String> {
    let mut value = serde_json::to_value(variant).unwrap_or_default();
    if let Some(top) = value.as_object_mut() {
        top.remove("name");
        top.remove("output");
    }
    if let Some(settings) = value.get_mut("settings").and_then(|s| s.as_object_mut()) {
        settings.remove("build_timeout");
        if let Some(compatibility) = settings
            .get_mut("compatibility")
            .and_then(|c| c.as_object_mut())
        {
            compatibility.remove("gpu");
        }
    }
    if let Some(profiles) = value.get_mut("profiles").and_then(|p| p.as_array_mut()) {
        for profile in profiles.iter_mut().filter_map(|p| p.as_object_mut()) {
            profile.remove("name");
        }
    }
    let mut flat = BTreeMap::new();
    flatten("", &value, &mut flat);
    // `settings.precision` reads as the manifest's `precision`.
    flat.into_iter()
        .map(|(k, v)| match k.strip_prefix("settings.") {
            Some(setting) => (setting.to_string(), v),
            None => (k, v),
        })
        .collect()
}

/// Tables become dotted names; a list of plain values (a shape, a list of GPUs) stays one value.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    use serde_json::Value;
    let name = |key: &str| match prefix {
        "" => key.to_string(),
        _ => format!("{prefix}.{key}"),
    };
    match value {
        Value::Null => {}
        Value::Object(table) => {
            for (key, item) in table {
                flatten(&name(key), item, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&name(&index.to_string()), item, out);
            }
        }
        Value::String(text) => {
            out.insert(prefix.to_string(), text.clone());
        }
        other => {
            let text = other.to_string().replace(',', ", ");
            out.insert(prefix.to_string(), text);
        }
    }
}

/// Why an action key changed, as far as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyChange {
    /// A build setting: its dotted name and values (`None`: not set).
    Setting {
        /// Dotted name, e.g. `precision`.
        name: String,
        /// In the lock.
        locked: Option<String>,
        /// Now.
        now: Option<String>,
    },
    /// An input file, by role.
    Input {
        /// `model`, `external-data:<path>`, `plugin:<path>`.
        role: String,
        /// In the lock.
        locked: Option<String>,
        /// Now.
        now: Option<String>,
    },
    /// The lock does not record settings and inputs (an older trtfarm wrote it).
    NotRecorded,
    /// Settings, inputs, toolchain, target and timing cache are as locked: what changed is the
    /// daemon's part of the key (its builder program, farm salt or key format).
    DaemonSide,
}

/// How a variant's resolution now differs from its lock entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDiff {
    /// The lock has no entry for the variant.
    Missing(Resolution),
    /// The lock has an entry for a variant the manifest no longer has.
    Removed(LockedEngine),
    /// Fields that differ, and why the key changed.
    Changed {
        /// The variant.
        name: String,
        /// (lock field, locked value, value now).
        fields: Vec<(&'static str, String, String)>,
        /// What changed among the key's inputs (empty when the key did not change).
        reasons: Vec<KeyChange>,
    },
}

/// Compares what a variant resolves to now with its lock entry: toolchain, target, timing
/// cache and action key (the engine digest is compared after a build), and for a changed key,
/// which recorded settings and inputs differ. `None` when they agree.
pub fn resolution_diff(locked: Option<&LockedEngine>, now: &Resolution) -> Option<LockDiff> {
    let Some(locked) = locked else {
        return Some(LockDiff::Missing(now.clone()));
    };
    let fields = |e: &Resolution| {
        [
            ("toolchain.flavour", e.toolchain.flavour.to_string()),
            ("toolchain.version", e.toolchain.version.to_string()),
            ("toolchain.library", e.toolchain.library.to_string()),
            ("target", e.target.clone()),
            (
                "timing_cache",
                e.timing_cache.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("action_key", e.action_key.to_string()),
        ]
    };
    let then = Resolution::of(locked);
    let changes: Vec<_> = fields(&then)
        .into_iter()
        .zip(fields(now))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((key, old), (_, new))| (key, old, new))
        .collect();
    if changes.is_empty() {
        return None;
    }
    let reasons = match then.action_key == now.action_key {
        true => Vec::new(),
        false => key_changes(&then, now, changes.len() > 1),
    };
    Some(LockDiff::Changed {
        name: now.name.clone(),
        fields: changes,
        reasons,
    })
}

/// What differs between two resolutions' recorded settings and inputs. `others` says whether
/// a lock field besides the key (toolchain, target, timing cache) changed, which explains it.
fn key_changes(then: &Resolution, now: &Resolution, others: bool) -> Vec<KeyChange> {
    if then.settings.is_empty() && then.inputs.is_empty() {
        return vec![KeyChange::NotRecorded];
    }
    let mut reasons = Vec::new();
    for name in keys(&then.settings, &now.settings) {
        let (old, new) = (then.settings.get(name), now.settings.get(name));
        if old != new {
            reasons.push(KeyChange::Setting {
                name: name.clone(),
                locked: old.cloned(),
                now: new.cloned(),
            });
        }
    }
    for role in keys(&then.inputs, &now.inputs) {
        let (old, new) = (then.inputs.get(role), now.inputs.get(role));
        if old != new {
            reasons.push(KeyChange::Input {
                role: role.clone(),
                locked: old.map(ToString::to_string),
                now: new.map(ToString::to_string),
            });
        }
    }
    if reasons.is_empty() && !others {
        reasons.push(KeyChange::DaemonSide);
    }
    reasons
}

/// The names of two maps, each once, in order.
fn keys<'a, V>(a: &'a BTreeMap<String, V>, b: &'a BTreeMap<String, V>) -> Vec<&'a String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
}

/// A readable diff: `[[engine]] NAME`, then `- key = "locked"` / `+ key = "now"` lines, and
/// for a changed action key the settings and inputs that changed it.
pub fn render_diff(lock_file: &Path, diffs: &[LockDiff]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = format!(
        "{} differs from what the manifest resolves to now:\n",
        lock_file.display()
    );
    for diff in diffs {
        match diff {
            LockDiff::Missing(now) => {
                out.push_str(&format!("  [[engine]] {}: not in the lock\n", now.name));
                let key = now.action_key.to_string();
                out.push_str(&format!("  + action_key = {}\n", quote(&key)));
            }
            LockDiff::Removed(old) => {
                out.push_str(&format!(
                    "  [[engine]] {}: no longer in the manifest\n",
                    old.name
                ));
                let key = old.action_key.to_string();
                out.push_str(&format!("  - action_key = {}\n", quote(&key)));
            }
            LockDiff::Changed {
                name,
                fields,
                reasons,
            } => {
                out.push_str(&format!("  [[engine]] {name}\n"));
                for (key, old, new) in fields {
                    out.push_str(&format!(
                        "  - {key} = {}\n  + {key} = {}\n",
                        quote(old),
                        quote(new)
                    ));
                }
                if !reasons.is_empty() {
                    out.push_str("    the key changed because:\n");
                }
                for reason in reasons {
                    out.push_str(&format!("      {}\n", describe_change(reason)));
                }
            }
        }
    }
    out
}

/// One manifest's diff as JSON objects, one per engine: `lock`, `engine`, `kind` (`missing`,
/// `removed`, `changed`), the lock fields that differ and, for a changed key, `reasons`.
pub fn diff_json(lock_file: &Path, diffs: &[LockDiff]) -> Vec<serde_json::Value> {
    let lock = lock_file.display().to_string();
    diffs
        .iter()
        .map(|diff| match diff {
            LockDiff::Missing(now) => serde_json::json!({
                "lock": lock, "engine": now.name, "kind": "missing",
                "fields": [{ "field": "action_key", "locked": null, "now": now.action_key.to_string() }],
                "reasons": [],
            }),
            LockDiff::Removed(old) => serde_json::json!({
                "lock": lock, "engine": old.name, "kind": "removed",
                "fields": [{ "field": "action_key", "locked": old.action_key.to_string(), "now": null }],
                "reasons": [],
            }),
            LockDiff::Changed { name, fields, reasons } => serde_json::json!({
                "lock": lock, "engine": name, "kind": "changed",
                "fields": fields.iter().map(|(field, locked, now)| serde_json::json!({
                    "field": field, "locked": locked, "now": now,
                })).collect::<Vec<_>>(),
                "reasons": reasons,
            }),
        })
        .collect()
}

/// One reason, in words: `setting precision: "fp32" -> "fp16"`.
fn describe_change(change: &KeyChange) -> String {
    let value = |v: &Option<String>| match v {
        Some(v) => toml::Value::String(v.clone()).to_string(),
        None => "(not set)".to_string(),
    };
    match change {
        KeyChange::Setting { name, locked, now } => {
            format!("setting {name}: {} -> {}", value(locked), value(now))
        }
        KeyChange::Input { role, locked, now } => {
            let file = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_string());
            format!("input {role}: {} -> {}", file(locked), file(now))
        }
        KeyChange::NotRecorded => "unknown: this lock does not record the settings and inputs \
             of its builds (an older trtfarm wrote it); `trtfarm submit` records them"
            .to_string(),
        KeyChange::DaemonSide => "the settings and input files are as locked: the daemon's \
             part of the key changed (its builder program, the farm's salt or the key format), \
             as after a trtfarm upgrade; `trtfarm verify` tells whether the engines still match"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, key: u8) -> LockedEngine {
        LockedEngine {
            name: name.into(),
            toolchain: LockedToolchain {
                flavour: trtfarm_types::Flavour::TensorRtRtx,
                version: "1.7.1.116".parse().unwrap(),
                library: Blake3Digest([0xab; 32]),
            },
            target: "sm86,sm89".into(),
            timing_cache: None,
            action_key: ActionKey([key; 32]),
            engine: BlobDigest::of_bytes(name.as_bytes()),
            inputs: BTreeMap::new(),
            settings: BTreeMap::new(),
        }
    }

    #[test]
    fn reads_and_writes_beside_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("engine.toml");
        assert_eq!(read_lock(&manifest).unwrap(), None);
        let lock = Lock::default().updated(&[entry("a", 1)], &["a"]);
        write_lock(&lock, &manifest).unwrap();
        assert!(dir.path().join(LOCK_FILE_NAME).is_file());
        assert_eq!(read_lock(&manifest).unwrap(), Some(lock));
    }

    #[test]
    fn the_wire_toolchain_becomes_the_locked_one_or_a_clear_error() {
        let wire = v1::ToolchainIdentity {
            flavour: "tensorrt-rtx".into(),
            version: "1.7.1.116".into(),
            library_digest: "ab".repeat(32),
        };
        assert_eq!(locked_toolchain(&wire).unwrap(), entry("a", 1).toolchain);
        let error = locked_toolchain(&v1::ToolchainIdentity::default()).unwrap_err();
        assert!(
            format!("{error:#}").contains("the daemon reported a malformed toolchain"),
            "{error:#}"
        );
    }

    #[test]
    fn diff_names_each_changed_field_with_both_values() {
        let locked = entry("fp32", 0xaa);
        assert_eq!(
            resolution_diff(Some(&locked), &Resolution::of(&locked)),
            None
        );
        let mut now = Resolution::of(&entry("fp32", 0xbb));
        now.toolchain.version = "1.7.2.1".parse().unwrap();
        let diffs = vec![
            resolution_diff(Some(&locked), &now).unwrap(),
            resolution_diff(None, &Resolution::of(&entry("int8", 0xcc))).unwrap(),
            LockDiff::Removed(entry("old", 0xdd)),
        ];
        let text = render_diff(Path::new("m/engine.lock"), &diffs);
        let key = |byte: &str| byte.repeat(32);
        assert_eq!(
            text,
            format!(
                "m/engine.lock differs from what the manifest resolves to now:\n\
                 \x20 [[engine]] fp32\n\
                 \x20 - toolchain.version = \"1.7.1.116\"\n\
                 \x20 + toolchain.version = \"1.7.2.1\"\n\
                 \x20 - action_key = \"{}\"\n\
                 \x20 + action_key = \"{}\"\n\
                 \x20   the key changed because:\n\
                 \x20     unknown: this lock does not record the settings and inputs of its \
                 builds (an older trtfarm wrote it); `trtfarm submit` records them\n\
                 \x20 [[engine]] int8: not in the lock\n\
                 \x20 + action_key = \"{}\"\n\
                 \x20 [[engine]] old: no longer in the manifest\n\
                 \x20 - action_key = \"{}\"\n",
                key("aa"),
                key("bb"),
                key("cc"),
                key("dd")
            )
        );
    }

    #[test]
    fn a_changed_key_is_explained_by_the_settings_and_inputs_that_changed() {
        let mut locked = entry("fp16", 0xaa);
        locked.settings = [
            ("precision".to_string(), "fp32".to_string()),
            ("optimization_level".to_string(), "3".to_string()),
        ]
        .into();
        locked.inputs = [("model".to_string(), BlobDigest::of_bytes(b"a"))].into();
        let mut now = Resolution::of(&entry("fp16", 0xbb));
        now.settings = [
            ("precision".to_string(), "fp16".to_string()),
            ("optimization_level".to_string(), "3".to_string()),
            ("autocast.keep_fp32".to_string(), "[\"Resize\"]".to_string()),
        ]
        .into();
        now.inputs = [("model".to_string(), BlobDigest::of_bytes(b"b"))].into();
        let Some(LockDiff::Changed { reasons, .. }) = resolution_diff(Some(&locked), &now) else {
            panic!("a changed key is a change");
        };
        assert_eq!(
            reasons,
            vec![
                KeyChange::Setting {
                    name: "autocast.keep_fp32".into(),
                    locked: None,
                    now: Some("[\"Resize\"]".into()),
                },
                KeyChange::Setting {
                    name: "precision".into(),
                    locked: Some("fp32".into()),
                    now: Some("fp16".into()),
                },
                KeyChange::Input {
                    role: "model".into(),
                    locked: Some(BlobDigest::of_bytes(b"a").to_string()),
                    now: Some(BlobDigest::of_bytes(b"b").to_string()),
                },
            ]
        );
        let text = render_diff(
            Path::new("engine.lock"),
            &[resolution_diff(Some(&locked), &now).unwrap()],
        );
        assert!(
            text.contains("      setting precision: \"fp32\" -> \"fp16\"\n"),
            "{text}"
        );
        // Same settings and files, another key: the daemon's side changed.
        now.settings = locked.settings.clone();
        now.inputs = locked.inputs.clone();
        let Some(LockDiff::Changed { reasons, .. }) = resolution_diff(Some(&locked), &now) else {
            panic!("a changed key is a change");
        };
        assert_eq!(reasons, vec![KeyChange::DaemonSide]);
    }

    #[test]
    fn settings_are_recorded_by_dotted_name_without_what_the_key_leaves_out() {
        let text = "schema_version = 1\n[model]\npath = \"m.onnx\"\n[defaults]\ntoolchain = \"tensorrt-rtx 1.7\"\ncompatibility.compute_capabilities = [\"8.9\"]\n[[profile]]\nname = \"p\"\ninputs.x = { min = [1, 3], opt = [2, 3], max = [4, 3] }\n[[engine]]\nname = \"fp16\"\nprecision = \"fp16\"\noutput = \"x.engine\"\n";
        let manifest = manifest_schema::parse(text, Path::new("engine.toml")).unwrap();
        let settings = key_settings(manifest.variant("fp16").unwrap());
        assert_eq!(settings.get("precision").map(String::as_str), Some("fp16"));
        assert_eq!(
            settings.get("profiles.0.inputs.x.min").map(String::as_str),
            Some("[1, 3]")
        );
        for left_out in ["name", "output", "build_timeout", "profiles.0.name"] {
            assert!(!settings.contains_key(left_out), "{left_out}: {settings:?}");
        }
        assert!(
            settings.keys().all(|k| !k.starts_with("settings.")),
            "{settings:?}"
        );
    }
}
