//! Checks that a combined configuration can work, naming the setting that cannot.

use trtfarm_proto::local::MAX_SOCKET_PATH;

use super::{ConfigError, DaemonConfig, ListenAddr};

/// Smallest accepted `limits.worker_memory`: below this TensorRT cannot even load.
const MIN_WORKER_MEMORY: u64 = 256 * 1024 * 1024;

impl DaemonConfig {
    /// Checks the settings can work together; the message says what would be valid.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        let limits = &self.limits;
        let listen = self.listen_addr();
        if let Some(tcp) = listen.tcp()
            && self.metrics_listen == Some(tcp)
            && tcp.port() != 0
        {
            return invalid(
                "metrics_listen",
                format!("is the same address as `listen` ({tcp}); pick another port"),
            );
        }
        if let ListenAddr::Unix(socket) = &listen {
            let length = socket.as_os_str().len();
            if length > MAX_SOCKET_PATH {
                return invalid(
                    "listen",
                    format!(
                        "({listen}) is a socket path of {length} bytes, but a Unix socket path \
                         may have at most {MAX_SOCKET_PATH}: give a shorter `state_dir` \
                         (`--state-dir`; trtfarm: `--daemon-dir`), or a shorter socket path with \
                         `listen = \"unix:/run/user/<uid>/trtfarm.sock\"`"
                    ),
                );
            }
        }
        if self.action_key_salt.as_deref() == Some("") {
            return invalid(
                "action_key_salt",
                "is empty; leave it out for no salt".into(),
            );
        }
        if !self.store.url.contains("://") {
            return invalid(
                "store.url",
                format!(
                    "{:?} has no scheme; expected file://, s3://, az://, gs:// or memory://",
                    self.store.url
                ),
            );
        }
        // `slots.cpu` may be 0: submissions are queued but no TensorRT-RTX build starts.
        for (field, value) in [
            ("slots.gpu_builds_per_gpu", self.slots.gpu_builds_per_gpu),
            ("limits.max_queued_jobs", limits.max_queued_jobs),
            ("limits.max_inputs", limits.max_inputs),
        ] {
            if value == 0 {
                return invalid(field, "is 0; it must be at least 1".into());
            }
        }
        for (field, value) in [
            ("limits.max_blob_size", limits.max_blob_size),
            ("limits.max_log_size", limits.max_log_size),
        ] {
            if value == 0 {
                return invalid(field, "is 0 bytes; give a size like \"16MiB\"".into());
            }
        }
        if limits.max_build_timeout.is_zero() {
            return invalid(
                "limits.max_build_timeout",
                "is 0; give a duration like \"6h\"".into(),
            );
        }
        if let Some(devices) = &self.gpu.devices {
            if devices.is_empty() {
                return invalid(
                    "gpu.devices",
                    "is empty; leave it out to use every GPU, or set slots for TensorRT-RTX only"
                        .into(),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(twice) = devices.iter().find(|d| !seen.insert(**d)) {
                return invalid("gpu.devices", format!("names GPU {twice} twice"));
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => {
                return invalid(
                    "tls.key_file",
                    "is not set, but `tls.cert_file` is: give both (the PEM certificate chain \
                     and its private key) or neither"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "tls.cert_file",
                    "is not set, but `tls.key_file` is: give both (the PEM certificate chain \
                     and its private key) or neither"
                        .into(),
                );
            }
            _ => {}
        }
        if matches!(listen, ListenAddr::Unix(_))
            && (self.tls.cert_file.is_some() || self.tls.key_file.is_some())
        {
            return invalid(
                "tls.cert_file",
                format!(
                    "is set, but `listen` ({listen}) is a Unix socket, which never leaves \
                     this machine and is served without TLS: remove [tls], or listen on a \
                     TCP address (`listen = \"0.0.0.0:50051\"`)"
                ),
            );
        }
        if !self.is_loopback() && self.auth.token_file.is_none() {
            return invalid(
                "auth.token_file",
                format!(
                    "is not set, but `listen` ({listen}) is not a loopback address: anyone who \
                     can reach the port could submit builds and read every result. Give a token \
                     file (`--token-file PATH` or `[auth] token_file`) holding a token of at \
                     least 32 bytes, mode 0600, e.g. `(umask 077; openssl rand -hex 32 > \
                     tokens)`; or listen on 127.0.0.1"
                ),
            );
        }
        if let Some(url) = &self.queue.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return invalid(
                "queue.url",
                "is not a PostgreSQL URL; expected postgres://[user@]host[:port]/database, or \
                 leave it out for this daemon's own queue"
                    .into(),
            );
        }
        if self.queue.lease < std::time::Duration::from_secs(1) {
            return invalid(
                "queue.lease",
                "is shorter than 1s; give a duration like \"30s\"".into(),
            );
        }
        if let Some(bytes) = limits.worker_memory
            && bytes < MIN_WORKER_MEMORY
        {
            return invalid(
                "limits.worker_memory",
                format!(
                    "({}) is below the minimum of 256MiB; TensorRT needs gigabytes, e.g. \"16GiB\"",
                    bytesize::ByteSize(bytes).display().iec()
                ),
            );
        }
        Ok(())
    }
}
