//! `watch`'s hold on its daemon. A watch runs for days; its daemon may die or restart between
//! two changes. So before every rebuild the connection is checked: the local daemon is found or
//! started again (and the new connection is the one the rebuild uses), a remote one is asked
//! whether it answers, and when it does not, the rebuild is skipped with one line that says so
//! (the next change tries again) instead of a transport error per variant.
//! Also finding and cancelling this watch's jobs when it is stopped.

use std::time::Duration;

use trtfarm_proto::v1;

use crate::cli::DaemonArgs;
use crate::connect::{FarmConnection, connect_remote, humanize, local_dir};
use crate::local_daemon::{self, Probe};

/// How long a remote daemon may take to answer the check before a rebuild.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon of this watch and the connection to it.
pub struct Link {
    args: DaemonArgs,
    client: Option<FarmConnection>,
    /// Whether the hint that comes with an unreachable daemon was shown already.
    hinted: bool,
}

impl Link {
    /// For the daemon `args` name; connects at the first [`Link::ready`].
    pub fn new(args: &DaemonArgs) -> Link {
        Link {
            args: args.clone(),
            client: None,
            hinted: false,
        }
    }

    /// A connection that answers now: the local daemon found, or started again if it went
    /// away; a remote one pinged, and dialled again if the ping fails. The error is one line
    /// saying what could not be reached and why.
    pub async fn ready(&mut self, say: impl Fn(&str)) -> Result<FarmConnection, String> {
        let client = match &self.args.daemon {
            None => {
                let dir = local_dir(&self.args);
                let cannot = |error: anyhow::Error| {
                    format!("cannot start the local daemon: {:#}", humanize(error))
                };
                let found = local_daemon::probe(&dir).await.map_err(cannot)?;
                let reuse = found.decision() == local_daemon::Decision::Reuse;
                match found {
                    Probe::Answering(running) if reuse => running.client,
                    _ => {
                        if self.client.is_some() {
                            say("the local daemon went away; starting it again");
                        }
                        local_daemon::ensure(&dir).await.map_err(cannot)?.client
                    }
                }
            }
            Some(url) => {
                if let Some(client) = &self.client
                    && answers(client.clone()).await
                {
                    return Ok(client.clone());
                }
                match connect_remote(url, &self.args).await {
                    Ok(client) => client,
                    Err(error) => return Err(self.unreachable(&format!("{:#}", humanize(error)))),
                }
            }
        };
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Why the remote daemon cannot be reached, on one line; its hint (what to check) only
    /// the first time, since the same line comes back at every change until it is reachable.
    fn unreachable(&mut self, text: &str) -> String {
        let (first, hint) = text.split_once('\n').unwrap_or((text, ""));
        let mut line = one_line(first);
        if !self.hinted && !hint.trim().is_empty() {
            self.hinted = true;
            line.push_str(&format!(" ({})", hint.trim().replace('\n', " ")));
        }
        line
    }

    /// The connection last found ready, if any (to cancel jobs on the way out without
    /// starting a daemon for it).
    pub fn current(&self) -> Option<FarmConnection> {
        self.client.clone()
    }
}

/// Whether the daemon behind `client` answers a capabilities call in time.
async fn answers(mut client: FarmConnection) -> bool {
    let call = client.get_capabilities(v1::GetCapabilitiesRequest {});
    matches!(tokio::time::timeout(PING_TIMEOUT, call).await, Ok(Ok(_)))
}

/// An error chain on one line, each cause once (the transport repeats the system's message).
fn one_line(chain: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in chain.split(": ") {
        if parts.last() != Some(&part) && !parts.iter().any(|p| p.ends_with(part)) {
            parts.push(part);
        }
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_read_as_one_line_with_each_cause_once() {
        assert_eq!(
            one_line(
                "cannot reach the daemon at http://127.0.0.1:9: transport error: tcp connect \
                 error: Connection refused (os error 111): Connection refused (os error 111)"
            ),
            "cannot reach the daemon at http://127.0.0.1:9: transport error: tcp connect error: \
             Connection refused (os error 111)"
        );
    }
}
