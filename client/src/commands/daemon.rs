//! `trtfarm daemon start|stop|status` (being written).
use crate::cli::{DaemonAction, DaemonArgs};
/// Runs a daemon action.
pub async fn run(_daemon: &DaemonArgs, _action: &DaemonAction) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
