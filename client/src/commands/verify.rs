//! `trtfarm verify` (being written).
use crate::cli::DaemonArgs;
use std::path::PathBuf;
/// Verifies locked variants.
pub async fn run(_daemon: &DaemonArgs, _paths: &[PathBuf], _json: bool) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
