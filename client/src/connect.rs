//! Reaching a daemon: a remote one by URL, or the local one through its info file.

use std::path::PathBuf;

use anyhow::Context;
use tonic::transport::Channel;
use trtfarm_proto::local::{DaemonInfo, default_state_dir};
use trtfarm_proto::v1::farm_client::FarmClient;

use crate::cli::DaemonArgs;

/// Largest message accepted from the daemon (job lists, results).
const MAX_MESSAGE: usize = 16 << 20;

/// The local daemon's state directory.
pub fn local_dir(args: &DaemonArgs) -> PathBuf {
    args.daemon_dir.clone().unwrap_or_else(default_state_dir)
}

/// A client for the daemon `args` name: `--daemon URL`, else the local daemon.
pub async fn connect(args: &DaemonArgs) -> anyhow::Result<FarmClient<Channel>> {
    let endpoint = match &args.daemon {
        Some(url) => url.clone(),
        None => {
            let dir = local_dir(args);
            let info = DaemonInfo::read(&dir)
                .with_context(|| format!("cannot read the local daemon's info in {}", dir.display()))?
                .with_context(|| {
                    format!(
                        "no local daemon is running (no info file in {}); start one with `trtfarm daemon start`",
                        dir.display()
                    )
                })?;
            info.endpoint
        }
    };
    let channel = Channel::from_shared(endpoint.clone())
        .with_context(|| format!("`{endpoint}` is not a daemon URL"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the daemon at {endpoint}"))?;
    Ok(FarmClient::new(channel).max_decoding_message_size(MAX_MESSAGE))
}
