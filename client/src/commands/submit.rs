//! `trtfarm submit` (being written).
use crate::cli::{DaemonArgs, SubmitArgs};
/// Submits manifests.
pub async fn run(_daemon: &DaemonArgs, _args: &SubmitArgs) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
