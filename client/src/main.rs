//! `trtfarm`, the command-line client.

mod check;
mod cli;
mod commands;
mod connect;
mod discover;
mod local_daemon;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // Like every Unix filter: `trtfarm ls | head` ends quietly when the reader goes away,
    // instead of panicking on a failed print.
    // SAFETY: restoring the default disposition of one signal, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { paths, json } => check::run(&paths, json),
        Command::Completions { shell } => commands::docs::completions(shell).map(|()| true),
        Command::Man { dir } => commands::docs::man(&dir).map(|()| true),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(commands::run(&cli.daemon, command))),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
