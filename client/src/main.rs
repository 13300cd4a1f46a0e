//! `trtfarm`, the command-line client.

mod check;
mod cli;
mod commands;
mod connect;
mod discover;
mod local_daemon;
mod progress;
mod term;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // Like every Unix filter: `trtfarm ls | head` ends quietly when the reader goes away,
    // instead of panicking on a failed print.
    // SAFETY: restoring the default disposition of one signal, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    term::init(&cli.output);
    let result = match cli.command {
        Command::Check { paths, json } => check::run(&paths, json, &cli.daemon),
        Command::Init(args) => commands::init::run(&args),
        Command::Completions { shell } => commands::docs::completions(shell).map(|()| true),
        Command::Man { dir } => commands::docs::man(&dir).map(|()| true),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_start(block_sigpipe)
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(commands::run(&cli.daemon, command))),
    };
    trtfarm_types::exit_code(result.map_err(connect::humanize))
}

/// Blocks SIGPIPE in the calling thread. The runtime's threads do the network I/O, and hyper's
/// vectored writes (`writev`, which has no `MSG_NOSIGNAL`) raise SIGPIPE when the daemon drops
/// the connection: with the signal blocked, the write fails with `EPIPE` and the command says
/// what happened, while the main thread keeps the default action for `trtfarm ls | head`.
fn block_sigpipe() {
    // SAFETY: plain libc calls on a local, zero-initialised signal set; pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
