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

use std::path::Path;

use anyhow::Context;
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
        }
    }
}

/// How a variant's resolution now differs from its lock entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDiff {
    /// The lock has no entry for the variant.
    Missing(Resolution),
    /// The lock has an entry for a variant the manifest no longer has.
    Removed(LockedEngine),
    /// Fields that differ: (key, locked value, value now).
    Changed(String, Vec<(&'static str, String, String)>),
}

/// Compares what a variant resolves to now with its lock entry: toolchain, target, timing
/// cache and action key (the engine digest is compared after a build). `None` when they agree.
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
    let changes: Vec<_> = fields(&Resolution::of(locked))
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
}
