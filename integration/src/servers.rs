//! The real daemon on a real remote store: `trtfarmd serve` with `--store s3://…` (s3s-fs) or
//! `--store az://…` (Azurite), for tests of several daemons sharing one bucket. The servers
//! themselves come from `trtfarm_store::test_servers` (installed by `scripts/setup`).

use std::path::Path;

pub use trtfarm_store::test_servers::{ServerKind, TestServer};

use crate::daemon::Daemon;

/// Starts a daemon with its state under `root` and its store in `server`'s bucket, and waits
/// until it listens. Several daemons on one server share one store.
pub fn daemon_on(root: &Path, server: &TestServer) -> Daemon {
    Daemon::start_on_store(root, &server.url(), &server.option_args(), &[], &[])
}
