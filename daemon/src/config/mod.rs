//! The daemon's configuration: `daemon.toml`, overlaid by environment variables and flags.
//!
//! These structs are the documentation (`docs/daemon-config.md` is written from them, and a
//! test keeps the two in step). Precedence, highest first: flag, environment variable, file,
//! built-in default. Sizes are text like `"2GiB"`, durations text like `"90s"` or `"1h"`.
//! Relative paths in the file are resolved against the file's directory; relative paths given
//! by flag or environment against the working directory. A leading `~/` means the home
//! directory.
//!
//! - [`DaemonConfig`]: the resolved settings, every field concrete.
//! - [`ServeArgs`]: `trtfarmd serve` flags and their `TRTFARMD_*` environment variables.
//! - [`ConfigError`]: what went wrong, with file, line and column.

mod args;
mod auth;
mod error;
mod gpu;
mod listen;
mod paths;
mod validate;
mod values;

#[cfg(test)]
mod args_tests;
#[cfg(test)]
mod docs_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use args::ServeArgs;
pub use auth::{AuthConfig, TlsConfig};
pub use error::ConfigError;
pub use gpu::{GpuConfig, MpsMode};
pub use listen::ListenAddr;

use paths::{file_url, resolve_path, resolve_store_url, user_dir};
use trtfarm_proto::local::{default_state_dir, socket_path};

/// Where `trtfarmd serve` looks for its config file when `--config` is not given, below the
/// user's config directory (`$XDG_CONFIG_HOME`, usually `~/.config`).
pub const DEFAULT_CONFIG_FILE: &str = "trtfarm/daemon.toml";

/// Everything `trtfarmd serve` needs to know, resolved: defaults applied, paths absolute.
///
/// Build it with [`DaemonConfig::load`] or [`DaemonConfig::from_toml_str`]: deserializing it
/// directly skips path resolution and validation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the gRPC server listens: a Unix socket `unix:PATH`, or a TCP address.
    ///
    /// Default: none, meaning the Unix socket `unix:<state_dir>/daemon.sock`: only the user
    /// who started the daemon can connect (the socket is mode 0600 in the 0700 `state_dir`, and
    /// each connection's peer uid is checked), so it needs no token. Example:
    /// `listen = "127.0.0.1:50051"`. On a TCP address every local user can connect: without
    /// `auth.token_file` the daemon says so when it starts. A non-loopback address needs
    /// `auth.token_file` (the daemon refuses to start without one), and should have `[tls]`, or
    /// tokens and engines cross the network in clear text. A socket path may be at most 107
    /// bytes long. Flag `--listen`, env `TRTFARMD_LISTEN`.
    #[serde(deserialize_with = "listen::de_opt_listen")]
    pub listen: Option<ListenAddr>,

    /// Address of the Prometheus endpoint (`GET /metrics`, `GET /healthz`), if any.
    ///
    /// Default: none (no metrics server). Example: `metrics_listen = "127.0.0.1:9464"`. Must
    /// differ from `listen`. Flag `--metrics-listen`, env `TRTFARMD_METRICS_LISTEN`.
    #[serde(deserialize_with = "values::de_opt_socket_addr")]
    pub metrics_listen: Option<SocketAddr>,

    /// Directory for the jobs database, upload staging and per-build scratch directories.
    ///
    /// Default: `$XDG_STATE_HOME/trtfarm/daemon` (usually `~/.local/state/trtfarm/daemon`);
    /// where the platform has no state directory, `<cache dir>/trtfarm/daemon`. Example:
    /// `state_dir = "/var/lib/trtfarm"`. Flag `--state-dir`, env `TRTFARMD_STATE_DIR`.
    pub state_dir: PathBuf,

    /// Text mixed into every action key, so results built before a change of salt are never
    /// served again (to disown poisoned or suspect results without deleting the store).
    ///
    /// Default: none. Example: `action_key_salt = "2026-11-incident-42"`. Must not be empty.
    /// Flag `--action-key-salt`, env `TRTFARMD_ACTION_KEY_SALT`.
    pub action_key_salt: Option<String>,

    /// How long shutdown waits for running builds to finish before killing their workers.
    /// Queued jobs stay in the database and resume on the next start.
    ///
    /// Default: `"30s"`. Example: `drain_timeout = "5m"`. `"0s"` kills at once.
    /// Flag `--drain-timeout`, env `TRTFARMD_DRAIN_TIMEOUT`.
    #[serde(deserialize_with = "values::de_duration")]
    pub drain_timeout: Duration,

    /// `[store]`: where blobs and action results live.
    pub store: StoreConfig,

    /// `[slots]`: how many builds run at once.
    pub slots: SlotsConfig,

    /// `[limits]`: what one client or one build may use.
    pub limits: LimitsConfig,

    /// `[toolchains]`: where the TensorRT libraries are.
    pub toolchains: ToolchainsConfig,

    /// `[gpu]`: GPUs for TensorRT Enterprise builds, and MPS.
    pub gpu: GpuConfig,

    /// `[auth]`: bearer tokens callers must send.
    pub auth: AuthConfig,

    /// `[tls]`: the certificate and key for serving over TLS.
    pub tls: TlsConfig,

    /// `[queue]`: where jobs wait: this daemon's own database, or a farm's PostgreSQL.
    pub queue: QueueConfig,

    /// The file these settings were read from, if any. Not a setting; for logs and messages.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// `[store]`: the content-addressed store and action cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Store URL; the scheme picks the backend: `file://`, `s3://`, `az://`, `gs://`,
    /// `memory://`. A plain path (no `scheme://`) means a local directory.
    ///
    /// Default: `file://<cache dir>/trtfarm/store` (usually `~/.cache/trtfarm/store`). Example:
    /// `url = "s3://ml-engines/trtfarm"`. Always a URL once resolved.
    /// Flag `--store`, env `TRTFARMD_STORE`.
    pub url: String,

    /// Backend options as string key/values, passed to the backend unchanged (object_store
    /// configuration keys such as `aws_endpoint`, `aws_region`, `aws_allow_http`). Prefer the
    /// backend's own environment variables for credentials.
    ///
    /// Default: empty. Example: `options = { aws_endpoint = "http://minio:9000" }`.
    /// Booleans and numbers are taken as their text (`aws_allow_http = true` means `"true"`).
    /// Flag `--store-option KEY=VALUE` (repeatable), env `TRTFARMD_STORE_OPTION`
    /// (comma-separated `KEY=VALUE` pairs); these add to the file's options, replacing equal keys.
    #[serde(deserialize_with = "values::de_store_options")]
    pub options: BTreeMap<String, String>,
}

/// `[queue]`: the job queue. Without `url`, jobs live in an embedded database in `state_dir`
/// and this daemon builds them alone. With it, every daemon pointing at the same PostgreSQL
/// database forms one farm: any of them accepts a submission, the one that can build it claims
/// it, and clients follow a job through whichever daemon they reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// PostgreSQL connection URL of the farm's database. Settings it leaves out come from the
    /// usual `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD` variables; the password
    /// from the URL, `password_file`, `PGPASSWORD` or `PGPASSFILE`/`~/.pgpass`, in that order. It
    /// is never logged. The daemon creates and migrates its tables on start.
    ///
    /// Default: none (the embedded queue). Example:
    /// `url = "postgres://trtfarm@db.internal/trtfarm"`. Flag `--queue`, env `TRTFARMD_QUEUE`.
    pub url: Option<String>,

    /// A file whose first line is the database password (keep it mode 0600).
    ///
    /// Default: none. Example: `password_file = "/etc/trtfarm/pg-password"`.
    /// Flag `--queue-password-file`, env `TRTFARMD_QUEUE_PASSWORD_FILE`.
    pub password_file: Option<PathBuf>,

    /// PEM certificates to trust for the database's TLS certificate, beside the platform's
    /// roots (for a database with a certificate of its own CA). TLS follows the URL's `sslmode`
    /// (`prefer` when it says nothing: TLS whenever the server offers it; `require` to refuse a
    /// server without it; `disable`); a certificate is always verified, name included.
    ///
    /// Default: none. Example: `ca_file = "/etc/trtfarm/pg-ca.pem"`.
    /// Flag `--queue-ca-file`, env `TRTFARMD_QUEUE_CA_FILE`.
    pub ca_file: Option<PathBuf>,

    /// How long a daemon's claim on a running build lasts without renewal. The daemon renews
    /// it several times per lease; a daemon that dies or loses the database for longer loses
    /// its builds to others, and its late results are refused. Longer rides out longer database
    /// outages; shorter re-queues a dead daemon's builds sooner. At least 1s.
    ///
    /// Default: `"30s"`. Example: `lease = "2m"`.
    /// Flag `--queue-lease`, env `TRTFARMD_QUEUE_LEASE`.
    #[serde(deserialize_with = "values::de_duration")]
    pub lease: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            url: None,
            password_file: None,
            ca_file: None,
            lease: Duration::from_secs(30),
        }
    }
}

/// `[slots]`: build concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlotsConfig {
    /// Concurrent TensorRT-RTX builds (CPU-only, ahead of time). `0` accepts and queues
    /// submissions but starts no TensorRT-RTX build: for maintenance, or for a daemon that
    /// should only serve the cache. Queued jobs wait until a daemon with slots runs on the same
    /// `state_dir`. Builds are also admitted by memory: one starts only when the memory the
    /// system has available covers what the last build of its model needed (the daemon
    /// measures every build), beside what running builds may still take.
    ///
    /// Default: the available CPUs (a TensorRT-RTX build keeps about one core busy; each
    /// build's job log says how many it used). Example: `cpu = 8`.
    /// Flag `--cpu-slots`, env `TRTFARMD_CPU_SLOTS`.
    pub cpu: usize,

    /// Concurrent TensorRT (Enterprise) builds on one GPU. At least 1.
    ///
    /// Default: `1`: NVIDIA advises against parallel builds on one GPU because they distort
    /// tactic timing, and with it the engine. Example: `gpu_builds_per_gpu = 2`.
    /// Flag `--gpu-builds-per-gpu`, env `TRTFARMD_GPU_BUILDS_PER_GPU`.
    pub gpu_builds_per_gpu: usize,
}

/// `[limits]`: bounds on what clients and builds may use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Jobs waiting for a slot; a submit beyond this is refused (resource exhausted). At least 1.
    ///
    /// Default: `1024`. Example: `max_queued_jobs = 256`.
    /// Flag `--max-queued-jobs`, env `TRTFARMD_MAX_QUEUED_JOBS`.
    pub max_queued_jobs: usize,

    /// Largest blob (model, external data, plugin) a client may upload, in bytes.
    ///
    /// Default: `"64GiB"`. Example: `max_blob_size = "8GiB"`.
    /// Flag `--max-blob-size`, env `TRTFARMD_MAX_BLOB_SIZE`.
    #[serde(deserialize_with = "values::de_size")]
    pub max_blob_size: u64,

    /// Most input files (model, external data, plugins) one build request may name. At least 1.
    ///
    /// Default: `4096`. Example: `max_inputs = 512`.
    /// Flag `--max-inputs`, env `TRTFARMD_MAX_INPUTS`.
    pub max_inputs: usize,

    /// Longest build timeout a manifest may ask for. A manifest whose `build_timeout` exceeds
    /// it is refused at submit with `RESOURCE_EXHAUSTED`, not clamped (see
    /// [`LimitsConfig::build_timeout`]). Every manifest variant has a `build_timeout` (the
    /// manifest format defaults it to 1h), so there is no daemon-side default.
    ///
    /// Default: `"6h"`. Example: `max_build_timeout = "12h"`.
    /// Flag `--max-build-timeout`, env `TRTFARMD_MAX_BUILD_TIMEOUT`.
    #[serde(deserialize_with = "values::de_duration")]
    pub max_build_timeout: Duration,

    /// Address-space limit (`RLIMIT_AS`) of each build worker, in bytes. At least 256MiB.
    /// CUDA reserves large virtual ranges when it starts, so a tight limit breaks Enterprise
    /// (GPU) builds first; it suits CPU-only TensorRT-RTX builds best.
    ///
    /// Default: none (unlimited). Example: `worker_memory = "32GiB"`.
    /// Flag `--worker-memory`, env `TRTFARMD_WORKER_MEMORY`.
    #[serde(deserialize_with = "values::de_opt_size")]
    pub worker_memory: Option<u64>,

    /// Most build log kept per job, in bytes; the rest is cut with a marker saying so.
    ///
    /// Default: `"16MiB"`. Example: `max_log_size = "1MiB"`.
    /// Flag `--max-log-size`, env `TRTFARMD_MAX_LOG_SIZE`.
    #[serde(deserialize_with = "values::de_size")]
    pub max_log_size: u64,

    /// Finished jobs kept in the jobs database (oldest forgotten first); their results stay in
    /// the store. `0` forgets a job as soon as it finishes.
    ///
    /// Default: `10000`. Example: `job_history = 1000`.
    /// Flag `--job-history`, env `TRTFARMD_JOB_HISTORY`.
    pub job_history: u64,
}

/// `[toolchains]`: where to find the TensorRT libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolchainsConfig {
    /// Directory holding `libtensorrt_rtx.so*` and its ONNX parser. When set, only this
    /// directory is searched: it pins the library.
    ///
    /// Default: none, meaning trt-ffi's search (`TRTFARM_RTX_LIB_DIR`, `TENSORRT_RTX_LIB_DIR`,
    /// `$TENSORRT_RTX_ROOT/lib`, `LD_LIBRARY_PATH`, the system library directories, trtfarm's
    /// cache). Example: `tensorrt_rtx_lib_dir = "/opt/tensorrt-rtx/lib"`.
    /// Flag `--tensorrt-rtx-lib-dir`, env `TRTFARMD_TENSORRT_RTX_LIB_DIR`.
    pub tensorrt_rtx_lib_dir: Option<PathBuf>,

    /// Directory holding `libnvinfer.so*` (TensorRT Enterprise) and its ONNX parser. When set,
    /// only this directory is searched.
    ///
    /// Default: none, meaning trt-ffi's search (`TRTFARM_ENTERPRISE_LIB_DIR`, `TENSORRT_LIB_DIR`,
    /// `$TENSORRT_ROOT/lib`, `LD_LIBRARY_PATH`, the system library directories, trtfarm's
    /// cache). Example: `tensorrt_lib_dir = "/opt/tensorrt/lib"`.
    /// Flag `--tensorrt-lib-dir`, env `TRTFARMD_TENSORRT_LIB_DIR`.
    pub tensorrt_lib_dir: Option<PathBuf>,

    /// The builder program, `trtfarm-builder`: the small process that runs TensorRT for each
    /// build. Its digest is part of every action key (the daemon's own is not).
    ///
    /// Default: none, meaning `trtfarm-builder` beside the `trtfarmd` executable. Example:
    /// `builder = "/opt/trtfarm/bin/trtfarm-builder"`.
    /// Flag `--builder`, env `TRTFARMD_BUILDER`.
    pub builder: Option<PathBuf>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: None,
            metrics_listen: None,
            state_dir: default_state_dir(),
            action_key_salt: None,
            drain_timeout: Duration::from_secs(30),
            store: StoreConfig::default(),
            slots: SlotsConfig::default(),
            limits: LimitsConfig::default(),
            toolchains: ToolchainsConfig::default(),
            gpu: GpuConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            queue: QueueConfig::default(),
            config_file: None,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: file_url(&user_dir(dirs::cache_dir()).join("trtfarm").join("store")),
            options: BTreeMap::new(),
        }
    }
}

impl Default for SlotsConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        SlotsConfig {
            cpu: cpus.max(1),
            gpu_builds_per_gpu: 1,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        LimitsConfig {
            max_queued_jobs: 1024,
            max_blob_size: 64 * 1024 * MIB,
            max_inputs: 4096,
            max_build_timeout: Duration::from_secs(6 * 60 * 60),
            worker_memory: None,
            max_log_size: 16 * MIB,
            job_history: 10_000,
        }
    }
}

impl DaemonConfig {
    /// The built-in defaults, for this user and machine.
    pub fn defaults() -> Self {
        Self::default()
    }

    /// Parses and validates the text of a `daemon.toml`; `origin` names the file in errors and
    /// anchors relative paths (relative to the working directory itself if it is relative).
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config = Self::parse_file(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads the configuration for `trtfarmd serve`: the file named by `--config` (or
    /// `$XDG_CONFIG_HOME/trtfarm/daemon.toml` when that exists, else built-in defaults), then
    /// the environment variables and flags in `args` on top. Refuses a non-loopback `listen`
    /// without `auth.token_file`, and a half-configured `[tls]`.
    pub fn load(args: &ServeArgs) -> Result<Self, ConfigError> {
        let default_file = dirs::config_dir().map(|dir| dir.join(DEFAULT_CONFIG_FILE));
        Self::load_with_default_file(args, default_file.as_deref())
    }

    /// [`DaemonConfig::load`] with the fallback config file given, so tests need not touch the
    /// real one.
    pub(crate) fn load_with_default_file(
        args: &ServeArgs,
        default_file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let file = match (&args.config, default_file) {
            (Some(path), _) => Some(path.as_path()),
            (None, Some(path)) if path.is_file() => Some(path),
            (None, _) => None,
        };
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse_file(&text, path)?
            }
            None => Self::defaults(),
        };
        args.apply_to(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// Where the daemon listens: `listen`, else the Unix socket in `state_dir`.
    pub fn listen_addr(&self) -> ListenAddr {
        self.listen
            .clone()
            .unwrap_or_else(|| ListenAddr::Unix(socket_path(&self.state_dir)))
    }

    /// Whether only this machine can reach the daemon: a Unix socket, or a loopback address.
    pub fn is_loopback(&self) -> bool {
        match self.listen_addr() {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }

    /// Parses a file without validating, so flags can still fix what the file got wrong.
    fn parse_file(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let origin = std::path::absolute(origin).unwrap_or_else(|_| origin.to_path_buf());
        let mut config: DaemonConfig = toml::from_str(text)
            .map_err(|error| ConfigError::from_toml(&error, text, origin.clone()))?;
        let base = origin.parent().unwrap_or(Path::new("/"));
        config.resolve_paths(base)?;
        config.config_file = Some(origin);
        Ok(config)
    }

    /// Makes every path (and a plain-path store URL) absolute against `base`.
    fn resolve_paths(&mut self, base: &Path) -> Result<(), ConfigError> {
        self.state_dir = resolve_path("state_dir", &self.state_dir, base)?;
        if let Some(listen) = self.listen.take() {
            self.listen = Some(listen.resolve(base)?);
        }
        if let Some(dir) = &self.toolchains.tensorrt_rtx_lib_dir {
            let dir = resolve_path("toolchains.tensorrt_rtx_lib_dir", dir, base)?;
            self.toolchains.tensorrt_rtx_lib_dir = Some(dir);
        }
        if let Some(program) = &self.toolchains.builder {
            let program = resolve_path("toolchains.builder", program, base)?;
            self.toolchains.builder = Some(program);
        }
        if let Some(dir) = &self.toolchains.tensorrt_lib_dir {
            let dir = resolve_path("toolchains.tensorrt_lib_dir", dir, base)?;
            self.toolchains.tensorrt_lib_dir = Some(dir);
        }
        for (field, path) in [
            ("gpu.mps_pipe_dir", &mut self.gpu.mps_pipe_dir),
            ("gpu.mps_log_dir", &mut self.gpu.mps_log_dir),
            ("gpu.mps_control", &mut self.gpu.mps_control),
            ("auth.token_file", &mut self.auth.token_file),
            ("queue.password_file", &mut self.queue.password_file),
            ("queue.ca_file", &mut self.queue.ca_file),
            ("tls.cert_file", &mut self.tls.cert_file),
            ("tls.key_file", &mut self.tls.key_file),
        ] {
            if let Some(dir) = path.as_deref() {
                *path = Some(resolve_path(field, dir, base)?);
            }
        }
        self.store.url = resolve_store_url(&self.store.url, base)?;
        Ok(())
    }
}
