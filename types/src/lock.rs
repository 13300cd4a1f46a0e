//! `engine.lock`: what each engine variant of the `engine.toml` beside it resolved to when it
//! was last built: the toolchain (flavour, version, library digest), the target, the timing
//! cache, the action key and the engine digest.
//!
//! One reader and one writer for everyone: `trtfarm submit` writes it, `submit --locked`,
//! `verify` and `fetch MANIFEST#ENGINE` read it, and `trtfarmd store gc --lock` keeps the blobs
//! it names. Every value is parsed into its type on reading, so a malformed digest is reported
//! with its line, not later by whoever uses it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{ActionKey, Blake3Digest, BlobDigest};
use crate::toolchain::{Flavour, Version};

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
    /// The timing cache the build recorded or used; absent for TensorRT-RTX, whose
    /// timing-cache calls are no-ops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_cache: Option<BlobDigest>,
    /// The daemon's action key.
    pub action_key: ActionKey,
    /// The engine plan.
    pub engine: BlobDigest,
    /// The files that went into the action key, by role: `model`, `external-data:<path>`,
    /// `plugin:<index>`. With `settings`, what lets `submit --locked` say why a key changed.
    /// Empty in locks written before trtfarm recorded it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, BlobDigest>,
    /// Every build setting that is part of the engine's identity, by dotted name
    /// (`precision`, `profiles.0.inputs.images.min`), its value as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

/// The toolchain an engine was built with, as the lock records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedToolchain {
    /// Which product.
    pub flavour: Flavour,
    /// The full version, e.g. `1.7.1.116`.
    pub version: Version,
    /// The builder library, `blake3:<hex>`.
    pub library: Blake3Digest,
}

/// Why a lock's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockFormatError {
    /// Not TOML, or not the lock's fields and value forms (the TOML parser's message, which
    /// names the line and the value).
    #[error("not a valid engine.lock: {0}")]
    Invalid(String),
    /// A format version this release does not know.
    #[error(
        "engine.lock version {0} is not one this release reads ({LOCK_VERSION}); upgrade \
         trtfarm or rebuild the lock with `trtfarm submit`"
    )]
    UnsupportedVersion(u32),
}

/// Why a lock file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Reading the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The lock file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file's text is not a lock this release reads.
    #[error("{}: {source}", path.display())]
    Format {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with its text.
        source: LockFormatError,
    },
    /// Writing the file failed; nothing was left at the path.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The lock file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// The lock file beside `manifest`.
pub fn lock_path(manifest: &Path) -> PathBuf {
    manifest.with_file_name(LOCK_FILE_NAME)
}

impl Lock {
    /// Parses lock text, refusing versions this release does not know (checked first, so a
    /// newer lock is reported as newer rather than as malformed).
    pub fn parse(text: &str) -> Result<Self, LockFormatError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let invalid = |error: toml::de::Error| LockFormatError::Invalid(error.to_string());
        let VersionOnly { version } = toml::from_str(text).map_err(invalid)?;
        if version != LOCK_VERSION {
            return Err(LockFormatError::UnsupportedVersion(version));
        }
        toml::from_str(text).map_err(invalid)
    }

    /// Reads the lock file at `path`; `None` when there is none.
    pub fn read_file(path: &Path) -> Result<Option<Self>, LockError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .map_err(|source| LockError::Format {
                    path: path.to_path_buf(),
                    source,
                }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LockError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The entry for engine variant `name`.
    pub fn engine(&self, name: &str) -> Option<&LockedEngine> {
        self.engines.iter().find(|e| e.name == name)
    }

    /// Every blob the lock pins: each engine, then its timing cache, in entry order.
    pub fn blob_digests(&self) -> Vec<BlobDigest> {
        self.engines
            .iter()
            .flat_map(|e| std::iter::once(e.engine).chain(e.timing_cache))
            .collect()
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
        let quote = |s: &dyn ToString| toml::Value::String(s.to_string()).to_string();
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
            // A bare key where TOML allows one, quoted otherwise (dots would nest tables).
            let key = |k: &str| {
                let bare = !k.is_empty()
                    && (k.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                match bare {
                    true => k.to_string(),
                    false => quote(&k),
                }
            };
            if !e.inputs.is_empty() {
                out.push_str("\n[engine.inputs]\n");
                for (role, digest) in &e.inputs {
                    out.push_str(&format!("{} = {}\n", key(role), quote(digest)));
                }
            }
            if !e.settings.is_empty() {
                out.push_str("\n[engine.settings]\n");
                for (name, value) in &e.settings {
                    out.push_str(&format!("{} = {}\n", key(name), quote(value)));
                }
            }
        }
        out
    }

    /// Writes the lock to `path` through a temporary file and a rename, so a reader (or a
    /// crash) never sees half a lock.
    pub fn write_file(&self, path: &Path) -> Result<(), LockError> {
        let temporary =
            path.with_file_name(format!(".{LOCK_FILE_NAME}.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(self.to_toml().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, key: u8) -> LockedEngine {
        LockedEngine {
            name: name.into(),
            toolchain: LockedToolchain {
                flavour: Flavour::TensorRtRtx,
                version: "1.7.1.116".parse().unwrap(),
                library: Blake3Digest([0xab; 32]),
            },
            target: "sm86,sm89".into(),
            timing_cache: None,
            action_key: ActionKey([key; 32]),
            engine: BlobDigest {
                hash: [0xcd; 32],
                size: 1234,
            },
            inputs: BTreeMap::new(),
            settings: BTreeMap::new(),
        }
    }

    fn lock_of(engine: LockedEngine) -> Lock {
        let name = engine.name.clone();
        Lock::default().updated(&[engine], &[name.as_str()])
    }

    #[test]
    fn round_trips_through_the_file_sorted_with_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(&dir.path().join("engine.toml"));
        assert_eq!(path, dir.path().join("engine.lock"));
        assert_eq!(Lock::read_file(&path).unwrap(), None);
        let mut recorded = entry("b-enterprise", 0x22);
        recorded.toolchain.flavour = Flavour::TensorRt;
        recorded.timing_cache = Some(BlobDigest {
            hash: [0xef; 32],
            size: 99,
        });
        recorded.target = "NVIDIA H100 \"SXM\"/9.0".into();
        recorded.inputs = [("model".to_string(), BlobDigest::of_bytes(b"onnx"))].into();
        recorded.settings = [
            ("precision".to_string(), "fp16".to_string()),
            ("profiles.0.inputs.x.min".to_string(), "[1, 3]".to_string()),
        ]
        .into();
        let lock = Lock::default().updated(&[recorded, entry("a", 0x11)], &["a", "b-enterprise"]);
        lock.write_file(&path).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# engine.lock: "), "{text}");
        assert!(text.find("name = \"a\"").unwrap() < text.find("name = \"b-enterprise\"").unwrap());
        assert!(text.contains(&format!(
            "toolchain = {{ flavour = \"tensorrt-rtx\", version = \"1.7.1.116\", library = \
             \"blake3:{}\" }}",
            "ab".repeat(32)
        )));
        assert!(text.contains(&format!("action_key = \"{}\"", "11".repeat(32))));
        assert!(text.contains(&format!("engine = \"blake3:{}/1234\"", "cd".repeat(32))));
        assert_eq!(text.matches("timing_cache").count(), 1, "absent for RTX");
        assert!(
            text.contains("[engine.settings]\nprecision = \"fp16\"\n\"profiles.0.inputs.x.min\" = \"[1, 3]\"\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("[engine.inputs]").count(),
            1,
            "only where recorded"
        );
        let read = Lock::read_file(&path).unwrap().unwrap();
        assert_eq!(read, lock);
        assert_eq!(read.engine("a").unwrap().action_key, ActionKey([0x11; 32]));
        assert_eq!(read.to_toml(), text, "writing is stable");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn updating_keeps_unbuilt_variants_and_drops_removed_ones() {
        let lock = Lock::default().updated(
            &[entry("a", 1), entry("b", 2), entry("c", 3)],
            &["a", "b", "c"],
        );
        let updated = lock.updated(&[entry("b", 20)], &["a", "b"]);
        let keys: Vec<(&str, u8)> = updated
            .engines
            .iter()
            .map(|e| (e.name.as_str(), e.action_key.0[0]))
            .collect();
        assert_eq!(keys, [("a", 1), ("b", 20)]);
    }

    #[test]
    fn names_every_pinned_blob_in_entry_order() {
        let mut with_cache = entry("b", 2);
        let cache = BlobDigest::of_bytes(b"cache");
        with_cache.timing_cache = Some(cache);
        let lock = Lock::default().updated(&[entry("a", 1), with_cache], &["a", "b"]);
        let engine = entry("a", 1).engine;
        assert_eq!(lock.blob_digests(), vec![engine, engine, cache]);
    }

    #[test]
    fn refuses_other_versions_before_anything_else() {
        let error = Lock::parse("version = 2\n[[engine]]\nname = 3\n").unwrap_err();
        assert_eq!(error, LockFormatError::UnsupportedVersion(2));
        assert_eq!(
            error.to_string(),
            "engine.lock version 2 is not one this release reads (1); upgrade trtfarm or \
             rebuild the lock with `trtfarm submit`"
        );
        let error = Lock::parse("version = \"x\"").unwrap_err();
        assert!(
            error.to_string().starts_with("not a valid engine.lock: "),
            "{error}"
        );
    }

    #[test]
    fn a_malformed_value_is_reported_with_its_line_and_the_expected_form() {
        let text = lock_of(entry("fp32", 1))
            .to_toml()
            .replace(&format!("blake3:{}/1234", "cd".repeat(32)), "sha256:00/1");
        let error = Lock::parse(&text).unwrap_err().to_string();
        assert!(error.contains("engine = \"sha256:00/1\""), "{error}");
        assert!(
            error.contains("expected blake3:<64 lower-case hex digits>/<size in bytes>"),
            "{error}"
        );
        let upper = lock_of(entry("fp32", 0xab))
            .to_toml()
            .replace(&"ab".repeat(32), &"AB".repeat(32));
        let error = Lock::parse(&upper).unwrap_err().to_string();
        assert!(error.contains("written in lower case"), "{error}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.lock");
        std::fs::write(&path, "version = 9\n").unwrap();
        let error = Lock::read_file(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}: engine.lock version 9", path.display())),
            "{error}"
        );
        let error = Lock::read_file(dir.path()).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("cannot read {}", dir.path().display())),
            "{error}"
        );
        let missing = dir.path().join("no/such/engine.lock");
        let error = Lock::default()
            .write_file(&missing)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("cannot write {}", missing.display())),
            "{error}"
        );
    }
}
