//! `trtfarmd`, the build daemon.
//!
//! This release has the build path (toolchain discovery and local builds); the gRPC server,
//! queue and store follow.

mod local_build;
mod toolchains;
mod variant_config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

/// trtfarmd: the trtfarm build daemon.
#[derive(Debug, Parser)]
#[command(name = "trtfarmd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the TensorRT toolchains this machine can load: flavour, version, library, digest.
    Toolchains {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Build a manifest's engines here and now, without queue or store.
    Build(local_build::LocalBuildOptions),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Toolchains { json } => list_toolchains(json).map(|()| true),
        Command::Build(options) => local_build::run(&options),
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

/// One row of `trtfarmd toolchains`.
#[derive(Debug, Serialize)]
struct ToolchainRow {
    flavour: String,
    version: Option<String>,
    library: Option<PathBuf>,
    library_digest: Option<String>,
    error: Option<String>,
}

fn list_toolchains(json: bool) -> anyhow::Result<()> {
    let rows: Vec<ToolchainRow> = [trt_ffi::Flavour::TensorRtRtx, trt_ffi::Flavour::TensorRt]
        .into_iter()
        .map(|flavour| match trt_ffi::Toolchain::load(flavour, None) {
            Ok(toolchain) => {
                let digest = toolchain.library_digest();
                ToolchainRow {
                    flavour: flavour.to_string(),
                    version: Some(toolchain.version().to_string()),
                    library: Some(toolchain.library_path().to_path_buf()),
                    library_digest: digest
                        .as_ref()
                        .ok()
                        .map(|d| format!("blake3:{}", d.to_hex())),
                    error: digest
                        .err()
                        .map(|e| format!("cannot hash the library: {e}")),
                }
            }
            Err(error) => ToolchainRow {
                flavour: flavour.to_string(),
                version: None,
                library: None,
                library_digest: None,
                error: Some(error.to_string()),
            },
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for row in rows {
        match (&row.version, &row.library, &row.library_digest) {
            (Some(version), Some(library), Some(digest)) => println!(
                "{} {version}\n  library {}\n  digest  {digest}",
                row.flavour,
                library.display()
            ),
            _ => println!(
                "{}: not available: {}",
                row.flavour,
                row.error.as_deref().unwrap_or("unknown error")
            ),
        }
    }
    Ok(())
}
