//! A real `trtfarmd serve` process on a loopback port, with its state and a `file://` store in
//! a directory the test owns, and a gRPC client for it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tonic::transport::Channel;
use trtfarm_proto::v1::farm_client::FarmClient;

use crate::binary;

/// A running daemon. Killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The whole `trtfarmd listening on …` line, with who can reach the daemon.
    pub startup_line: String,
    /// `http://127.0.0.1:<port>` of `/metrics`.
    pub metrics: String,
    /// The daemon's state directory (jobs database, scratch, uploads).
    pub state_dir: PathBuf,
    /// The `file://` store's directory (unused with another store).
    pub store_dir: PathBuf,
}

impl Daemon {
    /// Starts `trtfarmd serve` with state and store under `root` and `extra` flags, and waits
    /// until it listens. The same `root` again is the same daemon after a restart.
    pub fn start(root: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(root, extra, &[])
    }

    /// [`start`](Self::start) with `env` added to the daemon's environment (which is otherwise
    /// the test's own), to show that a daemon's environment does not reach its builds.
    pub fn start_with_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let store = format!("file://{}", root.join("store").display());
        Daemon::start_on_store(root, &store, &[], extra, env)
    }

    /// [`start_with_env`](Self::start_with_env) with the store at `store_url` (its backend
    /// options as `KEY=VALUE` in `store_options`) instead of a `file://` store under `root`.
    pub fn start_on_store(
        root: &Path,
        store_url: &str,
        store_options: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_program(
            &binary("trtfarmd"),
            root,
            store_url,
            store_options,
            extra,
            env,
        )
    }

    /// [`start_on_store`](Self::start_on_store) running `program` as the daemon (a copy of
    /// `trtfarmd`, to show what an upgrade keeps).
    pub fn start_program(
        program: &Path,
        root: &Path,
        store_url: &str,
        store_options: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let state_dir = root.join("state");
        let store_dir = root.join("store");
        let mut command = Command::new(program);
        command
            .arg("serve")
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--store", store_url])
            .args(
                store_options
                    .iter()
                    .flat_map(|option| ["--store-option", option.as_str()]),
            )
            .args(extra)
            .env_remove("TRTFARMD_CONFIG")
            .env_remove("TRTFARMD_STORE_OPTION")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // The set-up's TensorRT-RTX, unless the test names its own.
        if let Some(dir) = std::env::var_os("TRTFARM_RTX_LIB_DIR")
            && !extra.contains(&"--tensorrt-rtx-lib-dir")
        {
            command.arg("--tensorrt-rtx-lib-dir").arg(dir);
        }
        // A loopback port unless the test names where to listen (a Unix socket).
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command.spawn().expect("start trtfarmd");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics = String::new();
        let (endpoint, startup_line) = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().expect("wait for trtfarmd");
                panic!("trtfarmd exited before listening: {status}");
            };
            if let Some(address) = line.strip_prefix("trtfarmd metrics on ") {
                metrics = address.trim().to_string();
            }
            // The endpoint is the first word; who can reach the daemon follows.
            if let Some(rest) = line.strip_prefix("trtfarmd listening on ") {
                let endpoint = rest.split_whitespace().next().unwrap_or_default();
                break (endpoint.to_string(), line.clone());
            }
        };
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            endpoint,
            startup_line,
            metrics,
            state_dir,
            store_dir,
        }
    }

    /// A connected client.
    pub async fn client(&self) -> FarmClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint.clone())
            .expect("a daemon URL")
            // Fixed windows, as the CLI's (`trtfarm::connect`): an adaptive one drops the
            // connection when small frames wait unread under CPU load.
            .initial_connection_window_size(8 << 20)
            .initial_stream_window_size(8 << 20)
            .connect()
            .await
            .expect("connect to trtfarmd");
        FarmClient::new(channel).max_decoding_message_size(16 << 20)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for a clean exit (draining).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait for trtfarmd")
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        use std::io::{Read, Write};
        let address = self
            .metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        text
    }

    /// The value of one sample (`name` exactly as it appears before the value) in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// Child processes of the daemon running `trtfarm-builder build`.
    pub fn builders(&self) -> Vec<u32> {
        builders_of(self.child.id())
    }

    /// The first builder process to appear, waiting up to `timeout` for one.
    pub fn wait_for_builder(&self, timeout: std::time::Duration) -> u32 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(pid) = self.builders().first() {
                return *pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no builder appeared in {timeout:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// What the standard gRPC health service answers for `trtfarm.v1.Farm`.
    pub async fn health(&self) -> tonic_health::pb::health_check_response::ServingStatus {
        let channel = Channel::from_shared(self.endpoint.clone())
            .expect("a daemon URL")
            .connect()
            .await
            .expect("connect to trtfarmd");
        let answer = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "trtfarm.v1.Farm".into(),
            })
            .await
            .expect("a health answer")
            .into_inner();
        tonic_health::pb::health_check_response::ServingStatus::try_from(answer.status)
            .expect("a known serving status")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Child processes of process `daemon` running `trtfarm-builder build`.
pub fn builders_of(daemon: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Field 4 of /proc/<pid>/stat (after the parenthesised name) is the parent pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(daemon) && cmdline.ends_with(b"trtfarm-builder\0build\0") {
            out.push(pid);
        }
    }
    out
}
