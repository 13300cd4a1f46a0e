//! TensorRT engines as build outputs of a Rust crate: a build script names an `engine.toml`,
//! and trtfarm builds its engines (cached by content, so an unchanged model builds nothing),
//! records them in `engine.lock`, and puts them under `OUT_DIR`, where the crate includes or
//! loads them through environment variables.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), trtfarm_build::Error> {
//!     let engines = trtfarm_build::Engines::from_manifest("models/engine.toml")?.fetch()?;
//!     for engine in &engines {
//!         // Also in `env!("TRTFARM_ENGINE_FP32")` etc. for the crate itself.
//!         println!("cargo:warning={} is {}", engine.name, engine.path.display());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs
//! static ENGINE: &[u8] = include_bytes!(env!("TRTFARM_ENGINE_FP32"));
//! ```
//!
//! What a build does depends on where it runs:
//!
//! - **Normally** it runs `trtfarm submit --json --out $OUT_DIR/trtfarm MANIFEST`: the daemon
//!   (the local one, started on demand, or `TRTFARM_DAEMON`) builds what is not cached, the
//!   engines are fetched by digest (a file already there with that digest is left alone, mtime
//!   and all), and `engine.lock` beside the manifest is updated.
//! - **Locked** (`TRTFARM_LOCKED=1`, [`Engines::locked`], or `CARGO_NET_OFFLINE=true`) it builds
//!   nothing: it takes the engines `engine.lock` pins, keeps those already under `OUT_DIR` with
//!   the right digest, and fetches the others by digest (`trtfarm fetch`). An offline build
//!   whose engines are already here needs neither a daemon nor the `trtfarm` program.
//!   `TRTFARM_LOCKED=0` builds normally even offline (the local daemon is no network).
//! - **On docs.rs** (`DOCS_RS`) trtfarm is absent: each engine is an empty placeholder file, the
//!   build says so with a `cargo:warning`, and nothing fails.
//!
//! Cargo runs the build script again when the manifest, the model, its external-data files,
//! its plugins or `engine.lock` change (as `trtfarm inputs --json` lists them), or one of
//! `TRTFARM`, `TRTFARM_LOCKED`, `TRTFARM_DAEMON`, `TRTFARM_DAEMON_DIR`, `CARGO_NET_OFFLINE`,
//! `DOCS_RS`; not otherwise.
//!
//! The `trtfarm` program is `TRTFARM`, else `trtfarm` on `PATH`. This crate links no gRPC or
//! async runtime: it runs that program and reads its JSON.

#![warn(missing_docs)]

mod cargo_env;
mod error;
mod files;
mod program;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use trtfarm_types::lock::{Lock, lock_path};

pub use cargo_env::env_variable;
pub use error::Error;
pub use trtfarm_types::BlobDigest;

use cargo_env::{CargoEnv, Mode, TRACKED_VARIABLES, decide, directive};
use program::Program;

/// The engines of one manifest, to be provided to this crate's build.
#[derive(Debug, Clone)]
pub struct Engines {
    manifest: PathBuf,
    engines: Vec<String>,
    locked: Option<bool>,
    env_prefix: Option<String>,
    env: CargoEnv,
}

/// One engine, ready for the crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// Its `[[engine]] name` in the manifest.
    pub name: String,
    /// The plan file under `OUT_DIR` (empty on docs.rs).
    pub path: PathBuf,
    /// The plan's digest (`None` for a docs.rs placeholder).
    pub digest: Option<BlobDigest>,
    /// The variable naming `path` at compile time (`TRTFARM_ENGINE_<NAME>`).
    pub env_variable: String,
}

/// Variables already set by this build script, and for which engine: two manifests with an
/// engine of the same name must not silently share one.
static ANNOUNCED: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

impl Engines {
    /// The engines of the `engine.toml` at `manifest` (relative to the package's directory).
    /// Fails outside a build script and when the manifest is not there.
    pub fn from_manifest(manifest: impl AsRef<Path>) -> Result<Engines, Error> {
        let env = CargoEnv::from_process()?;
        let manifest = env.package_dir.join(manifest);
        if let Err(source) = std::fs::metadata(&manifest) {
            return Err(Error::Manifest {
                path: manifest,
                source,
            });
        }
        Ok(Engines {
            manifest,
            engines: Vec::new(),
            locked: None,
            env_prefix: None,
            env,
        })
    }

    /// Only this engine variant (call again for more; default: every engine).
    pub fn engine(mut self, name: impl Into<String>) -> Engines {
        self.engines.push(name.into());
        self
    }

    /// `true`: only fetch what `engine.lock` pins, never build; `false`: build even offline.
    /// `TRTFARM_LOCKED` set by the person building overrides this.
    pub fn locked(mut self, locked: bool) -> Engines {
        self.locked = Some(locked);
        self
    }

    /// Name the variables `TRTFARM_ENGINE_<PREFIX>_<NAME>`, for a second manifest whose engine
    /// names repeat the first's.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Engines {
        self.env_prefix = Some(prefix.into());
        self
    }

    /// Provides the engines under `OUT_DIR`, tells Cargo when to run the build script again
    /// and sets `TRTFARM_ENGINE_<NAME>` for each (see the crate documentation for the modes).
    pub fn fetch(self) -> Result<Vec<Engine>, Error> {
        for variable in TRACKED_VARIABLES {
            directive("rerun-if-env-changed", variable);
        }
        directive("rerun-if-changed", &self.manifest.display().to_string());
        let root = self.env.out_dir.join("trtfarm");
        let engines = match decide(&self.env, self.locked) {
            // Apart from real engines, so a docs build here never clobbers one.
            Mode::Docs => self.placeholders(&root.join("placeholders")),
            Mode::Locked(why) => self.locked_engines(&root, why)?,
            Mode::Submit => self.submit(&root)?,
        };
        self.announce(&engines)?;
        Ok(engines)
    }

    /// `trtfarm submit`, after telling Cargo about every input.
    fn submit(&self, root: &Path) -> Result<Vec<Engine>, Error> {
        let program = Program::find(&self.env)?;
        for input in program.inputs(&self.manifest)? {
            directive("rerun-if-changed", &input.display().to_string());
        }
        let lock_file = lock_path(&self.manifest);
        let lock_before = std::fs::read(&lock_file).ok();
        let variants = program.submit(&self.manifest, root, &self.engines)?;
        // The lock is an input too (a `git pull` may bring a new one), but naming a file this
        // very run rewrote would make Cargo run the script once more for nothing: it is named
        // once a run leaves it as it found it.
        if lock_before.is_some() && std::fs::read(&lock_file).ok() == lock_before {
            directive("rerun-if-changed", &lock_file.display().to_string());
        }
        let mut failures = Vec::new();
        let mut engines = Vec::new();
        for v in variants {
            let digest = v
                .engine
                .as_deref()
                .and_then(|d| d.parse::<BlobDigest>().ok());
            match (v.status.as_str(), v.output, digest) {
                ("built" | "cached", Some(path), Some(digest)) => engines.push(Engine {
                    env_variable: self.variable(&v.variant),
                    name: v.variant,
                    path,
                    digest: Some(digest),
                }),
                _ => {
                    let why = v
                        .failure
                        .unwrap_or_else(|| format!("ended as `{}`", v.status));
                    let mut message = format!("{}: {why}", v.variant);
                    for line in &v.log_tail {
                        message.push_str(&format!("\n  | {line}"));
                    }
                    failures.push(message);
                }
            }
        }
        match failures.is_empty() {
            true => Ok(engines),
            false => Err(Error::Build {
                manifest: self.manifest.clone(),
                failures,
            }),
        }
    }

    /// What `engine.lock` pins: kept when the file under `OUT_DIR` has the digest, else
    /// fetched by digest.
    fn locked_engines(&self, root: &Path, why: &'static str) -> Result<Vec<Engine>, Error> {
        let lock_file = lock_path(&self.manifest);
        directive("rerun-if-changed", &lock_file.display().to_string());
        let lock = Lock::read_file(&lock_file)
            .map_err(|error| Error::Lock {
                lock: lock_file.clone(),
                message: error.to_string(),
            })?
            .ok_or_else(|| Error::NoLock {
                lock: lock_file.clone(),
                manifest: self.manifest.clone(),
                why,
            })?;
        let names: Vec<String> = lock.engines.iter().map(|e| e.name.clone()).collect();
        let wanted = self.selected(names, &lock_file)?;
        let mut program = None;
        let mut engines = Vec::new();
        for name in wanted {
            let Some(locked) = lock.engine(&name) else {
                continue;
            };
            let path = files::engine_path(root, &self.env.package_dir, &self.manifest, &name);
            if !files::has_digest(&path, &locked.engine) {
                if program.is_none() {
                    program = Some(Program::find(&self.env)?);
                }
                if let Some(program) = &program {
                    program.fetch(&locked.engine.to_string(), &path)?;
                }
            }
            engines.push(Engine {
                env_variable: self.variable(&name),
                name,
                path,
                digest: Some(locked.engine),
            });
        }
        Ok(engines)
    }

    /// docs.rs: an empty file per engine, and a warning. Never an error: a problem becomes a
    /// warning too, so the documentation still builds.
    fn placeholders(&self, root: &Path) -> Vec<Engine> {
        let warn = |message: String| directive("warning", &message);
        let names = match files::manifest_engine_names(&self.manifest)
            .and_then(|names| self.selected(names, &self.manifest))
        {
            Ok(names) => names,
            Err(error) => {
                warn(format!("trtfarm-build on docs.rs: {error}"));
                return Vec::new();
            }
        };
        warn(format!(
            "DOCS_RS is set: the engines of {} are empty placeholder files (trtfarm does not run \
             on docs.rs)",
            self.manifest.display()
        ));
        let mut engines = Vec::new();
        for name in names {
            let path = files::engine_path(root, &self.env.package_dir, &self.manifest, &name);
            if let Err(error) = files::write_placeholder(&path) {
                warn(format!("trtfarm-build on docs.rs: {error}"));
                continue;
            }
            engines.push(Engine {
                env_variable: self.variable(&name),
                name,
                path,
                digest: None,
            });
        }
        engines
    }

    /// The engines asked for (all of `available` when none were), each checked to exist.
    fn selected(&self, available: Vec<String>, place: &Path) -> Result<Vec<String>, Error> {
        if self.engines.is_empty() {
            return Ok(available);
        }
        for name in &self.engines {
            if !available.contains(name) {
                return Err(Error::UnknownEngine {
                    name: name.clone(),
                    place: place.to_path_buf(),
                    known: available.join(", "),
                });
            }
        }
        Ok(self.engines.clone())
    }

    fn variable(&self, engine: &str) -> String {
        env_variable(self.env_prefix.as_deref(), engine)
    }

    /// Sets each engine's variable, refusing one another manifest's engine already set.
    fn announce(&self, engines: &[Engine]) -> Result<(), Error> {
        let mut announced = ANNOUNCED.lock().unwrap_or_else(|e| e.into_inner());
        for engine in engines {
            let owner = format!("{}#{}", self.manifest.display(), engine.name);
            if let Some(first) = announced.get(&engine.env_variable)
                && *first != owner
            {
                return Err(Error::EnvClash {
                    variable: engine.env_variable.clone(),
                    first: first.clone(),
                    second: owner,
                });
            }
            announced.insert(engine.env_variable.clone(), owner);
            directive(
                "rustc-env",
                &format!("{}={}", engine.env_variable, engine.path.display()),
            );
        }
        Ok(())
    }
}
