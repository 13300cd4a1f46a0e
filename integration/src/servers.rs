//! The real daemon on a real remote store: `trtfarmd serve` with `--store s3://…` (s3s-fs) or
//! `--store az://…` (Azurite), for tests of several daemons sharing one bucket. The servers
//! themselves come from `trtfarm_store::test_servers` (installed by `scripts/setup`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trtfarm_store::test_servers::{BUCKET, PREFIX, S3_ACCESS_KEY, S3_SECRET_KEY};
pub use trtfarm_store::test_servers::{ServerKind, TestServer};

use crate::daemon::Daemon;

/// Starts a daemon with its state under `root` and its store in `server`'s bucket, and waits
/// until it listens. Several daemons on one server share one store.
pub fn daemon_on(root: &Path, server: &TestServer) -> Daemon {
    Daemon::start_on_store(root, &server.url(), &server.option_args(), &[], &[])
}

/// s3s-fs on a fixed port and data directory, so it can be killed and started again as the same
/// store. (`TestServer` picks a new port and directory per start and cannot restart.)
pub struct RestartableS3 {
    child: Option<Child>,
    port: u16,
    data: tempfile::TempDir,
}

impl RestartableS3 {
    /// Starts s3s-fs on a free loopback port with an empty bucket.
    pub fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("root").join(BUCKET)).unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut server = RestartableS3 {
            child: None,
            port,
            data,
        };
        server.restart();
        server
    }

    /// Starts the server (again) and waits until it listens.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::File::options()
                .create(true)
                .append(true)
                .open(self.data.path().join("server.log"))
                .unwrap();
            let child = Command::new(ServerKind::S3sFs.launcher())
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(self.data.path().join("root"))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start s3s-fs");
            self.child = Some(child);
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                    break; // The port is not free yet (a socket of the last run): try again.
                }
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not come back on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server (SIGKILL); its data stays for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The store URL for `--store`.
    pub fn url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    /// Its `--store-option` values.
    pub fn option_args(&self) -> Vec<String> {
        [
            format!("aws_endpoint=http://127.0.0.1:{}", self.port),
            "aws_allow_http=true".into(),
            "aws_region=us-east-1".into(),
            format!("aws_access_key_id={S3_ACCESS_KEY}"),
            format!("aws_secret_access_key={S3_SECRET_KEY}"),
            "aws_virtual_hosted_style_request=false".into(),
        ]
        .into()
    }
}

impl Drop for RestartableS3 {
    fn drop(&mut self) {
        self.kill();
    }
}
