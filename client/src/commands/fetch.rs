//! `trtfarm fetch` (being written).
use crate::cli::{DaemonArgs, FetchArgs};
/// Fetches a blob.
pub async fn run(_daemon: &DaemonArgs, _args: &FetchArgs) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
