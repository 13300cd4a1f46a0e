//! Reaching the daemon again after it went away in the middle of a job: jobs outlive every
//! process (the daemon persists them), so a client restarts its local daemon, or waits for a
//! remote one to come back, and follows its jobs by id to their end.

use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::{FarmConnection, connect_remote, local_dir};
use crate::cli::DaemonArgs;
use crate::local_daemon;

/// How long a client keeps trying to reach a remote daemon that went away.
const REMOTE_PATIENCE: Duration = Duration::from_secs(300);

/// Local daemon restarts one job may cause before the client gives up (a daemon that dies
/// every time it builds this job would otherwise be restarted forever).
const LOCAL_RESTARTS: u32 = 3;

/// How to reach the daemon of this command again.
#[derive(Debug, Clone)]
pub struct Reconnect {
    args: DaemonArgs,
}

/// Where a job's connection stands after a loss.
#[derive(Debug, Default)]
pub struct Losses {
    count: u32,
    since: Option<Instant>,
}

impl Reconnect {
    /// For the daemon `args` name.
    pub fn new(args: &DaemonArgs) -> Reconnect {
        Reconnect { args: args.clone() }
    }

    /// A new connection after the one in use broke (`losses` counts this job's breaks):
    /// the local daemon found or restarted; a remote one retried with backoff. `say` tells
    /// the user what happens. An error once the patience for this job is spent.
    pub async fn again(
        &self,
        losses: &mut Losses,
        say: impl Fn(&str),
    ) -> anyhow::Result<FarmConnection> {
        losses.count += 1;
        let since = *losses.since.get_or_insert_with(Instant::now);
        match &self.args.daemon {
            None => {
                if losses.count > LOCAL_RESTARTS {
                    anyhow::bail!(
                        "the local daemon went away {LOCAL_RESTARTS} times during this job; see \
                         its log with `trtfarm daemon status` and the system log (out of memory?)"
                    );
                }
                say("the local daemon went away; starting it again and re-attaching");
                Ok(local_daemon::ensure(&local_dir(&self.args)).await?.client)
            }
            Some(url) => {
                let mut pause = Duration::from_secs(1);
                loop {
                    match connect_remote(url, &self.args).await {
                        Ok(client) => return Ok(client),
                        Err(error) if since.elapsed() < REMOTE_PATIENCE => {
                            say(&format!(
                                "cannot reach {url} ({}); trying again in {} s",
                                super::distinct_causes(&error),
                                pause.as_secs()
                            ));
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(15));
                        }
                        Err(error) => {
                            return Err(error.context(format!(
                                "gave up after {} s",
                                REMOTE_PATIENCE.as_secs()
                            )));
                        }
                    }
                }
            }
        }
    }
}

/// Whether a failed call may succeed once the daemon is back: the connection broke, or the
/// daemon was shutting down or briefly unable to serve. Answers about the request itself
/// (not found, refused, unauthenticated) are final.
pub fn is_connection_loss(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::Internal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_connection_is_worth_another_try() {
        for code in [Code::Unavailable, Code::Unknown, Code::Cancelled] {
            assert!(is_connection_loss(&Status::new(code, "transport error")));
        }
        for code in [
            Code::NotFound,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
        ] {
            assert!(!is_connection_loss(&Status::new(code, "no")));
        }
    }
}
