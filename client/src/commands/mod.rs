//! The subcommands that talk to a daemon.

pub mod daemon;
pub mod docs;
mod engine_ref;
pub mod export;
pub mod farm;
pub mod fetch;
pub mod init;
pub mod inputs;
pub mod inspect;
pub mod jobs;
pub mod submit;
pub mod timing_cache;
pub mod verify;
pub mod watch;

use crate::cli::{Command, DaemonArgs, TimingCacheAction};

/// Loads and validates the manifest at `path` for a command that reads it without checking its
/// model (`export`, `inputs`); the error renders every problem like `trtfarm check`.
pub fn load_manifest(path: &std::path::Path) -> anyhow::Result<manifest_schema::Manifest> {
    manifest_schema::load(path).map_err(|errors| {
        anyhow::anyhow!(
            "{}(`trtfarm check {}` shows every problem)",
            errors.render_plain(),
            path.display()
        )
    })
}

/// Runs a daemon-facing command. `Ok(false)` means "ran, but the answer is no" (exit 1).
pub async fn run(daemon: &DaemonArgs, command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Submit(args) => submit::run(daemon, &args).await,
        Command::Fetch(args) => fetch::run(daemon, &args).await,
        Command::Inspect(args) => inspect::run(daemon, &args).await,
        Command::Export(args) => export::run(daemon, &args).await,
        // No daemon: a listing of local files, run here because it needs no runtime either way.
        Command::Inputs { paths, json } => inputs::run(&paths, json),
        Command::Watch(args) => watch::run(daemon, &args).await,
        Command::Verify { paths, json } => verify::run(daemon, &paths, json).await,
        Command::Status { job, json } => jobs::status(daemon, job, json).await,
        Command::Logs { job } => jobs::logs(daemon, job).await,
        Command::Cancel { job } => jobs::cancel(daemon, job).await,
        Command::Ls { limit, json } => jobs::list(daemon, limit, json).await,
        Command::Daemon { action } => daemon::run(daemon, &action).await,
        Command::Farm { json } => farm::run(daemon, json).await,
        Command::TimingCache { action } => match action {
            TimingCacheAction::Ls { paths, json } => timing_cache::list(daemon, &paths, json).await,
            TimingCacheAction::Show { digest, json } => {
                timing_cache::show(daemon, &digest, json).await
            }
        },
        Command::Check { .. }
        | Command::Init(_)
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("handled without a runtime in main")
        }
    }
}
