//! `trtfarmd`, the build daemon.
//!
//! A thin command-line layer over the `trtfarmd` library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use manifest_schema::Flavour;
use trtfarmd::file_stamp::{FileStamp, ProbedStamps};
use trtfarmd::inventory::ToolchainRow;

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
        /// Load TensorRT-RTX from this directory only.
        #[arg(long)]
        tensorrt_rtx_lib_dir: Option<PathBuf>,
        /// Load TensorRT Enterprise from this directory only.
        #[arg(long)]
        tensorrt_lib_dir: Option<PathBuf>,
    },
    /// Show this host's GPUs, and what a builder's CUDA context gets on one (under MPS).
    ProbeGpu(trtfarmd::cli::probe_gpu::ProbeGpuOptions),
    /// Run the build daemon: gRPC on `listen`, jobs in `state_dir`, results in the store.
    Serve(Box<trtfarmd::config::ServeArgs>),
    /// Build a manifest's engines here and now, without queue or store.
    Build(trtfarmd::build::local::LocalBuildOptions),
    /// Store maintenance: `store gc` deletes what nothing references.
    Store(trtfarmd::cli::store::StoreArgs),
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let result = match command {
        Command::Toolchains {
            json,
            tensorrt_rtx_lib_dir,
            tensorrt_lib_dir,
        } => list_toolchains(
            json,
            tensorrt_rtx_lib_dir.as_deref(),
            tensorrt_lib_dir.as_deref(),
        )
        .map(|()| true),
        Command::Build(options) => trtfarmd::build::local::run(&options),
        Command::ProbeGpu(options) => trtfarmd::cli::probe_gpu::run(&options),
        Command::Serve(args) => serve(&args).map(|()| true),
        Command::Store(args) => trtfarmd::cli::store::store_main(&args),
    };
    trtfarm_types::exit_code(result)
}

fn list_toolchains(
    json: bool,
    rtx_lib_dir: Option<&Path>,
    enterprise_lib_dir: Option<&Path>,
) -> anyhow::Result<()> {
    // Rows name flavours as manifests spell them (`tensorrt-rtx`), the daemon's probe parses them.
    let rows: Vec<ToolchainRow> = [
        (Flavour::TensorRtRtx, rtx_lib_dir),
        (Flavour::TensorRt, enterprise_lib_dir),
    ]
    .into_iter()
    .map(
        |(flavour, lib_dir)| match trtfarmd::toolchains::load(flavour, lib_dir) {
            Ok(toolchain) => {
                // Stamped before hashing: a library that changes while it is hashed then
                // never matches its stamp, and the first build after hashes it again.
                let stamps = ProbedStamps {
                    library: FileStamp::settled(toolchain.library_path()),
                    parser: FileStamp::settled(toolchain.parser_library_path()),
                };
                let digest = toolchain.library_digest();
                let parser_digest = toolchain.parser_library_digest();
                let error = match (&digest, &parser_digest) {
                    (Err(e), _) => Some(format!("cannot hash the library: {e}")),
                    (_, Err(e)) => Some(format!("cannot hash the ONNX parser library: {e}")),
                    _ => None,
                };
                ToolchainRow {
                    flavour,
                    version: Some(toolchain.version()),
                    library: Some(toolchain.library_path().to_path_buf()),
                    library_digest: digest.as_ref().ok().map(|d| (*d).into()),
                    parser_library: Some(toolchain.parser_library_path().to_path_buf()),
                    parser_library_digest: parser_digest.as_ref().ok().map(|d| (*d).into()),
                    stamps,
                    error,
                }
            }
            Err(error) => ToolchainRow {
                flavour,
                version: None,
                library: None,
                library_digest: None,
                parser_library: None,
                parser_library_digest: None,
                stamps: ProbedStamps::default(),
                error: Some(format!("{error:#}")),
            },
        },
    )
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

fn serve(args: &trtfarmd::config::ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRTFARMD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: the local daemon's log is a file, and
        // journald and log collectors store the codes as text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let config = trtfarmd::config::DaemonConfig::load(args)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(trtfarmd::serve::server::serve(config))
}
