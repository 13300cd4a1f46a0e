//! `trtfarm watch` (being written).
use crate::cli::{DaemonArgs, WatchArgs};
/// Watches manifests.
pub async fn run(_daemon: &DaemonArgs, _args: &WatchArgs) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
