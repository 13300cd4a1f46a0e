//! `watch`'s hold on its daemon. A watch runs for days; its daemon may die or restart between
//! two changes. So before every rebuild the connection is checked: the local daemon is found or
//! started again (and the new connection is the one the rebuild uses), a remote one is asked
//! whether it answers, and when it does not, the rebuild is skipped with one line that says so
//! (the next change tries again) instead of a transport error per variant.
//! Also finding and cancelling this watch's jobs when it is stopped.

use std::collections::HashSet;
use std::time::Duration;

use trtfarm_proto::v1;

use crate::cli::DaemonArgs;
use crate::connect::{FarmConnection, connect_remote, describe_status, humanize, local_dir};
use crate::local_daemon::{self, Probe};

/// How long a remote daemon may take to answer the check before a rebuild.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Recent jobs looked through for this watch's running ones.
const RECENT_JOBS: u32 = 500;

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
                match local_daemon::probe(&dir).await.map_err(cannot)? {
                    Probe::Answering(running) if running.started || is_ours(&running) => {
                        running.client
                    }
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

/// Whether a daemon that answered is one to use as it is (our version, private).
fn is_ours(running: &local_daemon::Running) -> bool {
    let probe = Probe::Answering(Box::new(local_daemon::Running {
        info: running.info.clone(),
        capabilities: running.capabilities.clone(),
        client: running.client.clone(),
        started: false,
    }));
    probe.decision() == local_daemon::Decision::Reuse
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

/// A job this watch submitted that has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The job.
    pub id: u64,
    /// `manifest#variant`.
    pub label: String,
}

/// Of `jobs`, those queued or running that this watch submitted: for one of `manifests` (the
/// labels of builds it is following), from `client` (the name its requests carry), no earlier
/// than `since_ms` (when its oldest running rebuild began).
pub fn unfinished_of_ours(
    jobs: &[v1::Job],
    manifests: &HashSet<String>,
    client: &str,
    since_ms: i64,
) -> Vec<Unfinished> {
    jobs.iter()
        .filter(|job| {
            matches!(
                v1::JobState::try_from(job.state),
                Ok(v1::JobState::Queued | v1::JobState::Running)
            ) && manifests.contains(&job.manifest_path)
                && job.client == client
                && job.submitted_at_ms >= since_ms
        })
        .map(|job| Unfinished {
            id: job.id,
            label: format!("{}#{}", job.manifest_path, job.variant),
        })
        .collect()
}

/// Cancels the unfinished jobs of this watch (see [`unfinished_of_ours`]) and says so, one
/// line each, through `say`.
pub async fn cancel_ours(
    client: &mut FarmConnection,
    manifests: &HashSet<String>,
    client_name: &str,
    since_ms: i64,
    say: impl Fn(&str),
) {
    let jobs = match client
        .list_jobs(v1::ListJobsRequest { limit: RECENT_JOBS })
        .await
    {
        Ok(answer) => answer.into_inner().jobs,
        Err(status) => {
            say(&format!(
                "cannot list the daemon's jobs to cancel this watch's builds: {}",
                describe_status(&status)
            ));
            return;
        }
    };
    let ours = unfinished_of_ours(&jobs, manifests, client_name, since_ms);
    if ours.is_empty() {
        say("no build of this watch was still queued or running");
    }
    for job in ours {
        match client
            .cancel_job(v1::CancelJobRequest { job_id: job.id })
            .await
        {
            Ok(_) => say(&format!("cancelled job {} ({})", job.id, job.label)),
            Err(status) => say(&format!(
                "cannot cancel job {} ({}): {}; cancel it with `trtfarm cancel {}`",
                job.id,
                job.label,
                describe_status(&status),
                job.id
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, state: v1::JobState, manifest: &str, client: &str, at: i64) -> v1::Job {
        v1::Job {
            id,
            state: state as i32,
            manifest_path: manifest.into(),
            variant: "fp16".into(),
            client: client.into(),
            submitted_at_ms: at,
            ..v1::Job::default()
        }
    }

    #[test]
    fn only_this_watchs_unfinished_jobs_are_cancelled() {
        use v1::JobState::{Queued, Running, Succeeded};
        let me = "trtfarm 0.1.0 on host";
        let jobs = [
            job(1, Running, "det/engine.toml", me, 1000),
            job(2, Queued, "det/engine.toml", me, 1500),
            job(3, Succeeded, "det/engine.toml", me, 1500),
            job(4, Running, "other/engine.toml", me, 1500),
            job(5, Running, "det/engine.toml", "a CI runner", 1500),
            job(6, Running, "det/engine.toml", me, 10),
        ];
        let manifests = HashSet::from(["det/engine.toml".to_string()]);
        let ours = unfinished_of_ours(&jobs, &manifests, me, 900);
        assert_eq!(
            ours,
            [
                Unfinished {
                    id: 1,
                    label: "det/engine.toml#fp16".into()
                },
                Unfinished {
                    id: 2,
                    label: "det/engine.toml#fp16".into()
                },
            ]
        );
    }

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
