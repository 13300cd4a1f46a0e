//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// trtfarm: declarative, cached, reproducible TensorRT engine builds.
#[derive(Debug, Parser)]
#[command(name = "trtfarm", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate engine.toml manifests without building anything.
    ///
    /// Each PATH is a manifest file or a directory searched recursively for `engine.toml`
    /// (hidden directories and `target/` are skipped). Exits non-zero if any manifest has an
    /// error.
    Check {
        /// Manifests or directories to check (default: the current directory).
        paths: Vec<PathBuf>,
        /// Print one JSON document on stdout instead of human-readable reports.
        #[arg(long)]
        json: bool,
    },
}
