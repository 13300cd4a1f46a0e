//! `trtfarm status|logs|cancel|ls` (being written).
use crate::cli::DaemonArgs;
/// `status`.
pub async fn status(_daemon: &DaemonArgs, _job: u64) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
/// `logs`.
pub async fn logs(_daemon: &DaemonArgs, _job: u64) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
/// `cancel`.
pub async fn cancel(_daemon: &DaemonArgs, _job: u64) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
/// `ls`.
pub async fn list(_daemon: &DaemonArgs, _limit: u32) -> anyhow::Result<bool> {
    anyhow::bail!("not written yet")
}
