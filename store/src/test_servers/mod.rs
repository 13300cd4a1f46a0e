//! Real object-storage servers for tests: [`TestServer`] starts `s3s-fs` (S3) or Azurite (Azure
//! Blob) on a free loopback port with its data in a temporary directory, creates the bucket or
//! container, and hands out the store URL and options [`crate::open`] needs. Dropping it kills
//! the server.
//!
//! The servers are installed by `scripts/setup` and found through `TRTFARM_S3S_FS` and
//! `TRTFARM_AZURITE` (`eval "$(scripts/setup --print-env)"`). A missing server is a test failure,
//! never a silent skip: a suite that quietly tests nothing is worse than none.

mod azure_shared_key;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{ContentStore, StoreError, open};

/// Access key s3s-fs is started with (any value works; it only has to match).
pub const S3_ACCESS_KEY: &str = "trtfarm-test";
/// Secret key s3s-fs is started with.
pub const S3_SECRET_KEY: &str = "trtfarm-test-secret";
/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Bucket (S3) or container (Azure) every test server starts with.
pub const BUCKET: &str = "trtfarm-test";
/// Path inside the bucket that the store URL names, so the store's prefix handling is exercised.
pub const PREFIX: &str = "cache";

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to tell a person whose environment lacks the servers.
const SETUP_HINT: &str = "run scripts/setup, then eval \"$(scripts/setup --print-env)\"";

/// Which server a [`TestServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `s3s-fs`, an S3 server over a local directory (`s3://` stores).
    S3sFs,
    /// Azurite, Microsoft's Azure Storage emulator, blob service only (`az://` stores).
    Azurite,
}

impl ServerKind {
    /// The environment variable naming the server's launcher.
    pub fn env_var(self) -> &'static str {
        match self {
            ServerKind::S3sFs => "TRTFARM_S3S_FS",
            ServerKind::Azurite => "TRTFARM_AZURITE",
        }
    }

    /// The launcher from [`Self::env_var`]; panics with set-up instructions when it is unset or
    /// names no file.
    pub fn launcher(self) -> PathBuf {
        launcher_from(self.env_var(), std::env::var_os(self.env_var()))
    }
}

/// The launcher `value` (the content of `var`) names; panics with set-up instructions.
fn launcher_from(var: &str, value: Option<std::ffi::OsString>) -> PathBuf {
    let path = value
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: {SETUP_HINT}"));
    assert!(
        path.is_file(),
        "{var}={} does not exist: {SETUP_HINT}",
        path.display()
    );
    path
}

/// A running object-storage server with one empty bucket; killed when dropped.
pub struct TestServer {
    kind: ServerKind,
    child: Child,
    endpoint: String,
    data: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server of `kind` on a free loopback port and creates [`BUCKET`] in it; panics
    /// (with the server's log) if it does not come up.
    pub fn start(kind: ServerKind) -> TestServer {
        let launcher = kind.launcher();
        let mut data = tempfile::Builder::new()
            .prefix("trtfarm-test-server.")
            .tempdir()
            .expect("create a temporary directory for the test server");
        // A port picked this way can be taken by someone else before the server binds it; the
        // server then exits at once, and another port is tried.
        for _attempt in 0..5 {
            let port = free_port();
            let endpoint = format!("http://127.0.0.1:{port}");
            let child = spawn(kind, &launcher, data.path(), port);
            let mut server = TestServer {
                kind,
                child,
                endpoint,
                data,
            };
            if server.wait_until_listening(port) {
                server.create_bucket();
                return server;
            }
            data = server.into_data();
        }
        let log = std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default();
        panic!("{kind:?} exited at start on 5 free ports in turn; its last log:\n{log}");
    }

    /// The store URL: `s3://trtfarm-test/cache` or `az://trtfarm-test/cache`.
    pub fn url(&self) -> String {
        match self.kind {
            ServerKind::S3sFs => format!("s3://{BUCKET}/{PREFIX}"),
            ServerKind::Azurite => format!("az://{BUCKET}/{PREFIX}"),
        }
    }

    /// The backend options [`crate::open`] needs to reach this server (endpoint, credentials,
    /// plain HTTP), as `object_store` configuration keys.
    pub fn options(&self) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.kind {
            ServerKind::S3sFs => vec![
                ("aws_endpoint", self.endpoint.clone()),
                ("aws_allow_http", "true".into()),
                ("aws_region", "us-east-1".into()),
                ("aws_access_key_id", S3_ACCESS_KEY.into()),
                ("aws_secret_access_key", S3_SECRET_KEY.into()),
                ("aws_virtual_hosted_style_request", "false".into()),
            ],
            // Not `use_emulator`: object_store reads the emulator's address only from the
            // process environment. An explicit account endpoint is the same thing, per server.
            ServerKind::Azurite => vec![
                (
                    "azure_storage_endpoint",
                    format!("{}/{AZURITE_ACCOUNT}", self.endpoint),
                ),
                ("azure_allow_http", "true".into()),
                ("azure_storage_account_name", AZURITE_ACCOUNT.into()),
                ("azure_storage_account_key", AZURITE_KEY.into()),
            ],
        };
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }

    /// The same options as `KEY=VALUE` texts, for `trtfarmd --store-option`.
    pub fn option_args(&self) -> Vec<String> {
        self.options()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect()
    }

    /// Opens the store at [`Self::url`] with [`Self::options`].
    pub fn open(&self) -> Result<Arc<dyn ContentStore>, StoreError> {
        open(&self.url(), &self.options())
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The directory holding the server's data and its log (`server.log`).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    /// Polls until the port accepts connections; false if the server exited first.
    fn wait_until_listening(&mut self, port: u16) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_status)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not listen on {address} within {START_TIMEOUT:?}; its log:\n{}",
                self.kind,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates [`BUCKET`]: a directory for s3s-fs (which maps buckets to directories), a signed
    /// `Create Container` request for Azurite (object_store cannot create containers).
    fn create_bucket(&self) {
        match self.kind {
            ServerKind::S3sFs => {
                std::fs::create_dir_all(self.data.path().join("root").join(BUCKET))
                    .expect("create the s3s-fs bucket directory");
            }
            ServerKind::Azurite => {
                let address = self.endpoint.trim_start_matches("http://");
                if let Err(error) = azure_shared_key::create_container(
                    address,
                    AZURITE_ACCOUNT,
                    AZURITE_KEY,
                    BUCKET,
                ) {
                    panic!(
                        "creating container {BUCKET} in Azurite at {address}: {error}; its log:\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    /// Stops the server and gives back its data directory (for another attempt).
    fn into_data(mut self) -> tempfile::TempDir {
        self.stop();
        let placeholder = tempfile::tempdir().expect("create a temporary directory");
        let data = std::mem::replace(&mut self.data, placeholder);
        drop(self);
        data
    }

    /// SIGKILL, and reap.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("data", &self.data.path())
            .finish()
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Starts the server process, its output going to `<data>/server.log`.
fn spawn(kind: ServerKind, launcher: &Path, data: &Path, port: u16) -> Child {
    let log = std::fs::File::create(data.join("server.log")).expect("create the server log");
    let log_err = log.try_clone().expect("duplicate the server log handle");
    let mut command = Command::new(launcher);
    match kind {
        ServerKind::S3sFs => {
            let root = data.join("root");
            std::fs::create_dir_all(&root).expect("create the s3s-fs root");
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(root)
                .env("RUST_LOG", "warn");
        }
        ServerKind::Azurite => {
            command
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(data.join("azurite"))
                // Accept whatever service version object_store speaks; keep the log quiet.
                .args(["--skipApiVersionCheck", "--silent", "--loose"])
                // Azurite reports usage to Azure Monitor unless told not to; tests must send
                // nothing off this machine.
                .arg("--disableTelemetry");
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}; {SETUP_HINT}", launcher.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "TRTFARM_S3S_FS is not set: run scripts/setup, then eval")]
    fn a_missing_server_fails_with_instructions() {
        launcher_from("TRTFARM_S3S_FS", None);
    }

    #[test]
    #[should_panic(expected = "does not exist: run scripts/setup")]
    fn a_launcher_that_is_gone_fails_with_instructions() {
        launcher_from("TRTFARM_AZURITE", Some("/nonexistent/azurite-blob".into()));
    }
}
