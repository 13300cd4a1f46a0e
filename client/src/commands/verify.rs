//! `trtfarm verify` (being written).
use std::path::PathBuf;
use crate::cli::DaemonArgs;
/// Verifies locked variants.
pub async fn run(_daemon: &DaemonArgs, _paths: &[PathBuf], _json: bool) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
