//! What can go wrong, each with what to do about it.

use std::path::PathBuf;

/// Why the engines could not be provided. Its `Debug` is its `Display`, so a build script's
/// `fn main() -> Result<(), trtfarm_build::Error>` prints the message, not a struct dump.
#[derive(thiserror::Error)]
pub enum Error {
    /// Not run from a build script (Cargo sets this variable for those).
    #[error(
        "{0} is not set: trtfarm_build runs inside a Cargo build script (build.rs), where Cargo \
         sets it"
    )]
    NotInBuildScript(&'static str),
    /// The manifest is not there.
    #[error("cannot read the manifest {path}: {source}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not TOML with engines (only read on docs.rs, where trtfarm is absent).
    #[error("{path} is not a valid engine.toml: {message} (`trtfarm check` says more)")]
    ManifestFormat {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No `trtfarm` program to run.
    #[error(
        "cannot find the `trtfarm` program ({searched}): install trtfarm (`trtfarm` and \
         `trtfarmd` on PATH), or set TRTFARM=/path/to/trtfarm for the build"
    )]
    NoCli {
        /// Where it was looked for.
        searched: String,
    },
    /// `trtfarm` could not reach a daemon (or was refused by it).
    #[error(
        "`{command}` could not reach a trtfarm daemon:\n{stderr}\nwhat to do: start the local \
         daemon with `trtfarm daemon start` (it needs `trtfarmd` beside `trtfarm` or on PATH), or \
         set TRTFARM_DAEMON=URL to a running farm; to build from engines already built, commit \
         engine.lock and set TRTFARM_LOCKED=1 (the engines must then be in OUT_DIR already or in \
         a reachable daemon's store)"
    )]
    Daemon {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `trtfarm` failed otherwise (an invalid manifest, a missing blob, ...).
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Cli {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `trtfarm` printed something that is not the JSON it documents.
    #[error(
        "`{command}` printed output that is not the JSON this trtfarm-build reads ({source}); \
         are `trtfarm` and trtfarm-build from the same release?"
    )]
    Json {
        /// The command line.
        command: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// Engines failed to build.
    #[error("engines of {manifest} failed to build:\n{}", failures.join("\n"))]
    Build {
        /// The manifest.
        manifest: PathBuf,
        /// One message per failed engine: `name: why`, with the end of its build log.
        failures: Vec<String>,
    },
    /// Locked mode without a lock.
    #[error(
        "{lock} does not exist, and this build only fetches what it pins ({why}): run \
         `trtfarm submit {manifest}` and commit engine.lock, or build without locked mode \
         (TRTFARM_LOCKED=0)"
    )]
    NoLock {
        /// The lock that is missing.
        lock: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// What asked for locked mode.
        why: &'static str,
    },
    /// The lock cannot be read.
    #[error("cannot read {lock}: {message}")]
    Lock {
        /// The lock.
        lock: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An engine asked for is not in the lock (or the manifest).
    #[error("{place} has no engine `{name}` (it has: {known})")]
    UnknownEngine {
        /// The engine asked for.
        name: String,
        /// The lock or manifest.
        place: PathBuf,
        /// The engines it has.
        known: String,
    },
    /// Two engines would set the same environment variable.
    #[error(
        "{variable} would name two engines ({first} and {second}): give one manifest's engines \
         a prefix with `.env_prefix(\"...\")`"
    )]
    EnvClash {
        /// The variable.
        variable: String,
        /// The engine that set it first.
        first: String,
        /// The engine that wanted it too.
        second: String,
    },
    /// A file under OUT_DIR could not be read or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
