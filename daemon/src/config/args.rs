//! `trtfarmd serve` flags: one per `daemon.toml` setting, each with a `TRTFARMD_*` environment
//! variable named after the flag. clap gives a flag precedence over its variable; both override
//! the file in [`ServeArgs::apply_to`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::listen::parse_listen;
use super::values::{parse_duration, parse_size, parse_socket_addr, parse_store_option};
use super::{ConfigError, DaemonConfig, ListenAddr, resolve_path, resolve_store_url};

/// Flags and environment variables of `trtfarmd serve`. Every field is optional: what is not
/// given comes from the config file, else the built-in default (see `docs/daemon-config.md`).
///
/// Derives [`clap::Parser`] (which includes [`clap::Args`]), so it can be flattened into the
/// binary's subcommand and parsed on its own in tests with `ServeArgs::try_parse_from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
pub struct ServeArgs {
    /// Config file [default: $XDG_CONFIG_HOME/trtfarm/daemon.toml if it exists, else built-in
    /// defaults].
    #[arg(long, env = "TRTFARMD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// gRPC listen address, `unix:PATH` or IP:PORT (`listen`) [default:
    /// unix:<state_dir>/daemon.sock, private to you].
    #[arg(long, env = "TRTFARMD_LISTEN", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<ListenAddr>,

    /// Prometheus /metrics listen address (`metrics_listen`) [default: none, off].
    #[arg(long, env = "TRTFARMD_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_socket_addr)]
    pub metrics_listen: Option<SocketAddr>,

    /// Jobs database, staging and scratch directory (`state_dir`) [default:
    /// $XDG_STATE_HOME/trtfarm/daemon].
    #[arg(long, env = "TRTFARMD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Text mixed into every action key (`action_key_salt`) [default: none].
    #[arg(long, env = "TRTFARMD_ACTION_KEY_SALT", value_name = "TEXT")]
    pub action_key_salt: Option<String>,

    /// How long shutdown waits for running builds (`drain_timeout`) [default: 30s].
    #[arg(long, env = "TRTFARMD_DRAIN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,

    /// Store URL or local directory (`store.url`) [default: file://$XDG_CACHE_HOME/trtfarm/store].
    #[arg(long, env = "TRTFARMD_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Store backend option, repeatable; env: comma-separated (`store.options`).
    #[arg(
        long = "store-option",
        env = "TRTFARMD_STORE_OPTION",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_store_option
    )]
    pub store_options: Vec<(String, String)>,

    /// Concurrent TensorRT-RTX (CPU) builds (`slots.cpu`); 0 queues jobs but builds none
    /// [default: half the CPUs, at least 1].
    #[arg(long, env = "TRTFARMD_CPU_SLOTS", value_name = "N")]
    pub cpu_slots: Option<usize>,

    /// Concurrent TensorRT builds per GPU (`slots.gpu_builds_per_gpu`) [default: 1].
    #[arg(long, env = "TRTFARMD_GPU_BUILDS_PER_GPU", value_name = "N")]
    pub gpu_builds_per_gpu: Option<usize>,

    /// Most jobs waiting for a slot (`limits.max_queued_jobs`) [default: 1024].
    #[arg(long, env = "TRTFARMD_MAX_QUEUED_JOBS", value_name = "N")]
    pub max_queued_jobs: Option<usize>,

    /// Largest uploaded blob (`limits.max_blob_size`) [default: 64GiB].
    #[arg(long, env = "TRTFARMD_MAX_BLOB_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_blob_size: Option<u64>,

    /// Most input files per build (`limits.max_inputs`) [default: 4096].
    #[arg(long, env = "TRTFARMD_MAX_INPUTS", value_name = "N")]
    pub max_inputs: Option<usize>,

    /// Longest build timeout a manifest may ask for (`limits.max_build_timeout`) [default: 6h].
    #[arg(long, env = "TRTFARMD_MAX_BUILD_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub max_build_timeout: Option<Duration>,

    /// RLIMIT_AS per build worker (`limits.worker_memory`) [default: none, unlimited].
    #[arg(long, env = "TRTFARMD_WORKER_MEMORY", value_name = "SIZE", value_parser = parse_size)]
    pub worker_memory: Option<u64>,

    /// Most build log kept per job (`limits.max_log_size`) [default: 16MiB].
    #[arg(long, env = "TRTFARMD_MAX_LOG_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_log_size: Option<u64>,

    /// Finished jobs kept in the database (`limits.job_history`) [default: 10000].
    #[arg(long, env = "TRTFARMD_JOB_HISTORY", value_name = "N")]
    pub job_history: Option<u64>,

    /// GPUs builds may use, by CUDA ordinal (`gpu.devices`) [default: all].
    #[arg(
        long,
        env = "TRTFARMD_GPU_DEVICES",
        value_name = "N,N",
        value_delimiter = ','
    )]
    pub gpu_devices: Vec<u32>,

    /// CUDA MPS for per-build compute limits (`gpu.mps`) [default: off].
    #[arg(long, env = "TRTFARMD_MPS", value_name = "MODE", value_enum)]
    pub mps: Option<super::MpsMode>,

    /// MPS pipe directory (`gpu.mps_pipe_dir`) [default: /tmp/trtfarm-mps-<hash> for own,
    /// $CUDA_MPS_PIPE_DIRECTORY or /tmp/nvidia-mps for existing].
    #[arg(long, env = "TRTFARMD_MPS_PIPE_DIR", value_name = "DIR")]
    pub mps_pipe_dir: Option<PathBuf>,

    /// MPS log directory of an owned control daemon (`gpu.mps_log_dir`) [default:
    /// <state_dir>/mps-log].
    #[arg(long, env = "TRTFARMD_MPS_LOG_DIR", value_name = "DIR")]
    pub mps_log_dir: Option<PathBuf>,

    /// The nvidia-cuda-mps-control program (`gpu.mps_control`) [default: PATH, then
    /// /usr/local/nvidia/bin, /usr/bin].
    #[arg(long, env = "TRTFARMD_MPS_CONTROL", value_name = "PATH")]
    pub mps_control: Option<PathBuf>,

    /// Directory of libtensorrt_rtx.so (`toolchains.tensorrt_rtx_lib_dir`) [default: search].
    #[arg(long, env = "TRTFARMD_TENSORRT_RTX_LIB_DIR", value_name = "DIR")]
    pub tensorrt_rtx_lib_dir: Option<PathBuf>,

    /// Directory of libnvinfer.so (`toolchains.tensorrt_lib_dir`) [default: search].
    #[arg(long, env = "TRTFARMD_TENSORRT_LIB_DIR", value_name = "DIR")]
    pub tensorrt_lib_dir: Option<PathBuf>,

    /// The builder program (`toolchains.builder`) [default: trtfarm-builder beside trtfarmd].
    #[arg(long, env = "TRTFARMD_BUILDER", value_name = "PATH")]
    pub builder: Option<PathBuf>,

    /// Bearer tokens, one per line, mode 0600 (`auth.token_file`) [default: none; required
    /// when --listen is not loopback].
    #[arg(long, env = "TRTFARMD_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// TLS certificate chain, PEM (`tls.cert_file`) [default: none, plain HTTP/2].
    #[arg(long, env = "TRTFARMD_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (`tls.key_file`) [default: none].
    #[arg(long, env = "TRTFARMD_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// The farm's PostgreSQL URL (`queue.url`) [default: none, the embedded queue].
    #[arg(long, env = "TRTFARMD_QUEUE", value_name = "URL")]
    pub queue: Option<String>,

    /// File holding the database password (`queue.password_file`) [default: none].
    #[arg(long, env = "TRTFARMD_QUEUE_PASSWORD_FILE", value_name = "PATH")]
    pub queue_password_file: Option<PathBuf>,

    /// CA certificates (PEM) for the database's TLS (`queue.ca_file`) [default: none].
    #[arg(long, env = "TRTFARMD_QUEUE_CA_FILE", value_name = "PATH")]
    pub queue_ca_file: Option<PathBuf>,

    /// How long a claim on a running build lasts unrenewed (`queue.lease`) [default: 30s].
    #[arg(long, env = "TRTFARMD_QUEUE_LEASE", value_name = "DURATION", value_parser = parse_duration)]
    pub queue_lease: Option<Duration>,
}

impl ServeArgs {
    /// Overrides `config` with every setting given here; relative paths are resolved against
    /// the working directory. Does not validate the result.
    pub fn apply_to(&self, config: &mut DaemonConfig) -> Result<(), ConfigError> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        self.apply_to_with_base(config, &cwd)
    }

    /// [`ServeArgs::apply_to`] with relative paths resolved against `base`.
    pub(crate) fn apply_to_with_base(
        &self,
        config: &mut DaemonConfig,
        base: &Path,
    ) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            config.listen = Some(listen.clone().resolve(base)?);
        }
        overlay(&mut config.drain_timeout, self.drain_timeout);
        overlay(&mut config.slots.cpu, self.cpu_slots);
        overlay(
            &mut config.slots.gpu_builds_per_gpu,
            self.gpu_builds_per_gpu,
        );
        let limits = &mut config.limits;
        overlay(&mut limits.max_queued_jobs, self.max_queued_jobs);
        overlay(&mut limits.max_blob_size, self.max_blob_size);
        overlay(&mut limits.max_inputs, self.max_inputs);
        overlay(&mut limits.max_build_timeout, self.max_build_timeout);
        overlay(&mut limits.max_log_size, self.max_log_size);
        overlay(&mut limits.job_history, self.job_history);
        overlay(&mut config.queue.lease, self.queue_lease);
        if self.queue.is_some() {
            config.queue.url.clone_from(&self.queue);
        }
        // Settings whose default is "none": a flag can set them, not unset them.
        if self.metrics_listen.is_some() {
            config.metrics_listen = self.metrics_listen;
        }
        if self.action_key_salt.is_some() {
            config.action_key_salt.clone_from(&self.action_key_salt);
        }
        if self.worker_memory.is_some() {
            config.limits.worker_memory = self.worker_memory;
        }
        if let Some(dir) = &self.state_dir {
            config.state_dir = resolve_path("state_dir", dir, base)?;
        }
        if let Some(dir) = &self.tensorrt_rtx_lib_dir {
            let dir = resolve_path("toolchains.tensorrt_rtx_lib_dir", dir, base)?;
            config.toolchains.tensorrt_rtx_lib_dir = Some(dir);
        }
        if let Some(dir) = &self.tensorrt_lib_dir {
            let dir = resolve_path("toolchains.tensorrt_lib_dir", dir, base)?;
            config.toolchains.tensorrt_lib_dir = Some(dir);
        }
        if let Some(program) = &self.builder {
            let program = resolve_path("toolchains.builder", program, base)?;
            config.toolchains.builder = Some(program);
        }
        if !self.gpu_devices.is_empty() {
            config.gpu.devices = Some(self.gpu_devices.clone());
        }
        overlay(&mut config.gpu.mps, self.mps);
        for (field, flag, setting) in [
            (
                "gpu.mps_pipe_dir",
                &self.mps_pipe_dir,
                &mut config.gpu.mps_pipe_dir,
            ),
            (
                "gpu.mps_log_dir",
                &self.mps_log_dir,
                &mut config.gpu.mps_log_dir,
            ),
            (
                "gpu.mps_control",
                &self.mps_control,
                &mut config.gpu.mps_control,
            ),
            (
                "auth.token_file",
                &self.token_file,
                &mut config.auth.token_file,
            ),
            ("tls.cert_file", &self.tls_cert, &mut config.tls.cert_file),
            ("tls.key_file", &self.tls_key, &mut config.tls.key_file),
            (
                "queue.password_file",
                &self.queue_password_file,
                &mut config.queue.password_file,
            ),
            (
                "queue.ca_file",
                &self.queue_ca_file,
                &mut config.queue.ca_file,
            ),
        ] {
            if let Some(path) = flag {
                *setting = Some(resolve_path(field, path, base)?);
            }
        }
        if let Some(url) = &self.store {
            config.store.url = resolve_store_url(url, base)?;
        }
        for (key, value) in &self.store_options {
            config.store.options.insert(key.clone(), value.clone());
        }
        Ok(())
    }
}

/// Replaces `field` with the flag's value when the flag was given.
fn overlay<T>(field: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *field = value;
    }
}
