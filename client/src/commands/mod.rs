//! The subcommands that talk to a daemon.

pub mod daemon;
pub mod docs;
pub mod farm;
pub mod fetch;
pub mod jobs;
pub mod submit;
pub mod verify;
pub mod watch;

use crate::cli::{Command, DaemonArgs};

/// Runs a daemon-facing command. `Ok(false)` means "ran, but the answer is no" (exit 1).
pub async fn run(daemon: &DaemonArgs, command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Submit(args) => submit::run(daemon, &args).await,
        Command::Fetch(args) => fetch::run(daemon, &args).await,
        Command::Watch(args) => watch::run(daemon, &args).await,
        Command::Verify { paths, json } => verify::run(daemon, &paths, json).await,
        Command::Status { job } => jobs::status(daemon, job).await,
        Command::Logs { job } => jobs::logs(daemon, job).await,
        Command::Cancel { job } => jobs::cancel(daemon, job).await,
        Command::Ls { limit } => jobs::list(daemon, limit).await,
        Command::Daemon { action } => daemon::run(daemon, &action).await,
        Command::Farm { json } => farm::run(daemon, json).await,
        Command::Check { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled without a runtime in main")
        }
    }
}
