//! `engine.lock`: what each engine variant of the `engine.toml` beside it resolved to when it was
//! last built: the toolchain (flavour, version, library digest), the target, the timing cache,
//! the action key and the engine digest.
//!
//! `trtfarm submit` writes it (atomically, engines sorted by name, a header comment);
//! `submit --locked` fails when a build would resolve differently; `trtfarm verify` rebuilds
//! each locked engine and compares; `trtfarm fetch MANIFEST#ENGINE` reads the digest from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use trtfarm_proto::v1;

/// The lock's file name, beside the manifest.
pub const LOCK_FILE_NAME: &str = "engine.lock";

/// The format version this release writes and reads.
pub const LOCK_VERSION: u32 = 1;

const HEADER: &str = "\
# engine.lock: what each engine of engine.toml resolved to when `trtfarm submit` last built it.
# Generated; do not edit. Commit it: `trtfarm submit --locked` fails when a build would resolve
# differently, and `trtfarm verify` rebuilds every engine and compares it with this file.
";

/// A parsed `engine.lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Format version ([`LOCK_VERSION`]).
    pub version: u32,
    /// One entry per engine variant, sorted by name.
    #[serde(default, rename = "engine")]
    pub engines: Vec<LockedEngine>,
}

/// What one engine variant resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedEngine {
    /// The variant's `[[engine]] name`.
    pub name: String,
    /// The toolchain that built it.
    pub toolchain: LockedToolchain,
    /// Where it runs: `sm86,sm89` (TensorRT-RTX) or `<GPU model>/<compute capability>`.
    pub target: String,
    /// `blake3:<hex>/<size>` of the timing cache the build recorded or used; absent for
    /// TensorRT-RTX, whose timing-cache calls are no-ops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_cache: Option<String>,
    /// The daemon's action key (64 hex digits).
    pub action_key: String,
    /// `blake3:<hex>/<size>` of the engine plan.
    pub engine: String,
}

/// A toolchain's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedToolchain {
    /// `tensorrt-rtx` or `tensorrt`.
    pub flavour: String,
    /// The full version, e.g. `1.7.1.116`.
    pub version: String,
    /// `blake3:<hex>` of the builder library.
    pub library: String,
}

impl LockedToolchain {
    /// From the daemon's identity (whose library digest is bare hex).
    pub fn from_wire(identity: &v1::ToolchainIdentity) -> Self {
        let library = &identity.library_digest;
        Self {
            flavour: identity.flavour.clone(),
            version: identity.version.clone(),
            library: if library.starts_with("blake3:") || library.is_empty() {
                library.clone()
            } else {
                format!("blake3:{library}")
            },
        }
    }
}

/// The lock file beside `manifest`.
pub fn lock_path(manifest: &Path) -> PathBuf {
    manifest.with_file_name(LOCK_FILE_NAME)
}

/// Reads the lock beside `manifest`; `None` when there is none.
pub fn read_lock(manifest: &Path) -> anyhow::Result<Option<Lock>> {
    let path = lock_path(manifest);
    match std::fs::read_to_string(&path) {
        Ok(text) => Lock::parse(&text)
            .map(Some)
            .with_context(|| format!("{}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Lock {
    /// Parses lock text, refusing versions this release does not know.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let lock: Lock = toml::from_str(text).context("not a valid engine.lock")?;
        anyhow::ensure!(
            lock.version == LOCK_VERSION,
            "engine.lock version {} is not one this trtfarm reads ({LOCK_VERSION}); \
             upgrade trtfarm or rebuild the lock with `trtfarm submit`",
            lock.version
        );
        Ok(lock)
    }

    /// The entry for engine variant `name`.
    pub fn engine(&self, name: &str) -> Option<&LockedEngine> {
        self.engines.iter().find(|e| e.name == name)
    }

    /// This lock with `built` entries replacing or adding to the old ones, and entries for
    /// variants not in `variants` (the manifest's current names) dropped.
    pub fn updated(&self, built: &[LockedEngine], variants: &[&str]) -> Lock {
        let mut engines: Vec<LockedEngine> = self
            .engines
            .iter()
            .filter(|e| variants.contains(&e.name.as_str()))
            .filter(|e| !built.iter().any(|b| b.name == e.name))
            .cloned()
            .chain(built.iter().cloned())
            .collect();
        engines.sort_by(|a, b| a.name.cmp(&b.name));
        Lock {
            version: LOCK_VERSION,
            engines,
        }
    }

    /// The file's text: header, version, then one `[[engine]]` per variant by name. Written by
    /// hand so that the key order is fixed and the toolchain stays on one line.
    pub fn to_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut engines: Vec<&LockedEngine> = self.engines.iter().collect();
        engines.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = format!("{HEADER}version = {}\n", self.version);
        for e in engines {
            let t = &e.toolchain;
            out.push_str(&format!(
                "\n[[engine]]\nname = {}\ntoolchain = {{ flavour = {}, version = {}, library = {} }}\ntarget = {}\n",
                quote(&e.name),
                quote(&t.flavour),
                quote(&t.version),
                quote(&t.library),
                quote(&e.target),
            ));
            if let Some(cache) = &e.timing_cache {
                out.push_str(&format!("timing_cache = {}\n", quote(cache)));
            }
            out.push_str(&format!(
                "action_key = {}\nengine = {}\n",
                quote(&e.action_key),
                quote(&e.engine)
            ));
        }
        out
    }

    /// Writes the lock beside `manifest` through a temporary file and a rename, so a reader (or
    /// a crash) never sees half a lock.
    pub fn write(&self, manifest: &Path) -> anyhow::Result<()> {
        let path = lock_path(manifest);
        let temporary =
            path.with_file_name(format!(".{LOCK_FILE_NAME}.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(self.to_toml().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.with_context(|| format!("cannot write {}", path.display()))
    }
}

/// How a variant's resolution now differs from its lock entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDiff {
    /// The lock has no entry for the variant.
    Missing(LockedEngine),
    /// The lock has an entry for a variant the manifest no longer has.
    Removed(LockedEngine),
    /// Fields that differ: (key, locked value, value now).
    Changed(String, Vec<(&'static str, String, String)>),
}

/// Compares what a variant resolves to now with its lock entry: toolchain, target, timing
/// cache and action key (the engine digest is compared after a build). `None` when they agree.
pub fn resolution_diff(locked: Option<&LockedEngine>, now: &LockedEngine) -> Option<LockDiff> {
    let Some(locked) = locked else {
        return Some(LockDiff::Missing(now.clone()));
    };
    let fields = |e: &LockedEngine| {
        [
            ("toolchain.flavour", e.toolchain.flavour.clone()),
            ("toolchain.version", e.toolchain.version.clone()),
            ("toolchain.library", e.toolchain.library.clone()),
            ("target", e.target.clone()),
            ("timing_cache", e.timing_cache.clone().unwrap_or_default()),
            ("action_key", e.action_key.clone()),
        ]
    };
    let changes: Vec<_> = fields(locked)
        .into_iter()
        .zip(fields(now))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((key, old), (_, new))| (key, old, new))
        .collect();
    (!changes.is_empty()).then(|| LockDiff::Changed(now.name.clone(), changes))
}

/// A readable diff: `[[engine]] NAME`, then `- key = "locked"` / `+ key = "now"` lines.
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
                out.push_str(&format!("  + action_key = {}\n", quote(&now.action_key)));
            }
            LockDiff::Removed(old) => {
                out.push_str(&format!(
                    "  [[engine]] {}: no longer in the manifest\n",
                    old.name
                ));
                out.push_str(&format!("  - action_key = {}\n", quote(&old.action_key)));
            }
            LockDiff::Changed(name, changes) => {
                out.push_str(&format!("  [[engine]] {name}\n"));
                for (key, old, new) in changes {
                    out.push_str(&format!(
                        "  - {key} = {}\n  + {key} = {}\n",
                        quote(old),
                        quote(new)
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, key: &str) -> LockedEngine {
        LockedEngine {
            name: name.into(),
            toolchain: LockedToolchain {
                flavour: "tensorrt-rtx".into(),
                version: "1.7.1.116".into(),
                library: format!("blake3:{}", "ab".repeat(32)),
            },
            target: "sm86,sm89".into(),
            timing_cache: None,
            action_key: key.into(),
            engine: format!("blake3:{}/1234", "cd".repeat(32)),
        }
    }

    #[test]
    fn round_trips_through_the_file_sorted_with_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("engine.toml");
        assert_eq!(read_lock(&manifest).unwrap(), None);
        let mut recorded = entry("b-enterprise", "22");
        recorded.toolchain.flavour = "tensorrt".into();
        recorded.timing_cache = Some(format!("blake3:{}/99", "ef".repeat(32)));
        recorded.target = "NVIDIA H100 \"SXM\"/9.0".into();
        let lock = Lock::default().updated(&[recorded, entry("a", "11")], &["a", "b-enterprise"]);
        lock.write(&manifest).unwrap();

        let text = std::fs::read_to_string(dir.path().join("engine.lock")).unwrap();
        assert!(text.starts_with("# engine.lock: "), "{text}");
        assert!(text.find("name = \"a\"").unwrap() < text.find("name = \"b-enterprise\"").unwrap());
        assert!(text.contains("toolchain = { flavour = \"tensorrt-rtx\", version = \"1.7.1.116\""));
        assert_eq!(text.matches("timing_cache").count(), 1, "absent for RTX");
        let read = read_lock(&manifest).unwrap().unwrap();
        assert_eq!(read, lock);
        assert_eq!(read.engine("a").unwrap().action_key, "11");
        assert_eq!(read.to_toml(), text, "writing is stable");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn updating_keeps_unbuilt_variants_and_drops_removed_ones() {
        let lock = Lock::default().updated(
            &[entry("a", "1"), entry("b", "2"), entry("c", "3")],
            &["a", "b", "c"],
        );
        let updated = lock.updated(&[entry("b", "20")], &["a", "b"]);
        let keys: Vec<(&str, &str)> = updated
            .engines
            .iter()
            .map(|e| (e.name.as_str(), e.action_key.as_str()))
            .collect();
        assert_eq!(keys, [("a", "1"), ("b", "20")]);
    }

    #[test]
    fn diff_names_each_changed_field_with_both_values() {
        let locked = entry("fp32", "aaaa");
        assert_eq!(resolution_diff(Some(&locked), &locked), None);
        let mut now = entry("fp32", "bbbb");
        now.toolchain.version = "1.7.2.1".into();
        let diffs = vec![
            resolution_diff(Some(&locked), &now).unwrap(),
            resolution_diff(None, &entry("int8", "cccc")).unwrap(),
            LockDiff::Removed(entry("old", "dddd")),
        ];
        let text = render_diff(Path::new("m/engine.lock"), &diffs);
        assert_eq!(
            text,
            "m/engine.lock differs from what the manifest resolves to now:\n\
             \x20 [[engine]] fp32\n\
             \x20 - toolchain.version = \"1.7.1.116\"\n\
             \x20 + toolchain.version = \"1.7.2.1\"\n\
             \x20 - action_key = \"aaaa\"\n\
             \x20 + action_key = \"bbbb\"\n\
             \x20 [[engine]] int8: not in the lock\n\
             \x20 + action_key = \"cccc\"\n\
             \x20 [[engine]] old: no longer in the manifest\n\
             \x20 - action_key = \"dddd\"\n"
        );
    }

    #[test]
    fn refuses_other_versions_and_garbage_and_parses_digests() {
        let error = Lock::parse("version = 2\n").unwrap_err();
        assert!(error.to_string().contains("version 2"), "{error}");
        assert!(Lock::parse("version = \"x\"").is_err());
    }
}
