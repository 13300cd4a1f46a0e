//! `trtfarm fetch`: stream one blob out of the daemon's store, verified, written atomically.

use std::path::{Path, PathBuf};

use anyhow::Context;
use trtfarm::transfer::{download_to_file, download_to_writer};
use trtfarm_proto::v1;

use super::engine_ref::{EngineRef, locked_entry, parse_engine_ref};
use crate::cli::{DaemonArgs, FetchArgs};
use crate::connect::{connect, rpc_error};

/// Fetches a blob. A refused download (a corrupt blob: `DATA_LOSS`) is an error and leaves
/// nothing at the output path.
pub async fn run(daemon: &DaemonArgs, args: &FetchArgs) -> anyhow::Result<bool> {
    let (digest, output) = match parse_engine_ref(&args.what)? {
        EngineRef::Digest(digest) => {
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(digest.hex()));
            (digest, output)
        }
        EngineRef::Locked { manifest, engine } => {
            let digest = locked_entry(&manifest, &engine)?.engine;
            let output = match &args.output {
                Some(output) => output.clone(),
                None => engine_output(&manifest, &engine)?,
            };
            (digest, output)
        }
    };
    let mut client = connect(daemon).await?;
    let name = digest.to_string();
    let wanted = v1::Digest::from(digest);
    let fetched = if output == Path::new("-") {
        download_to_writer(&mut client, &wanted, &mut std::io::stdout()).await
    } else {
        download_to_file(&mut client, &wanted, &output).await
    };
    fetched.map_err(|error| rpc_error(format_args!("cannot fetch {name}"), error))?;
    // With the blob on stdout, where it went goes to stderr.
    if output == Path::new("-") {
        if crate::term::get().verbosity > crate::term::Verbosity::Quiet {
            eprintln!("{name} -> stdout");
        }
    } else {
        println!("{name} -> {}", output.display());
    }
    Ok(true)
}

/// Where `engine` goes by default: its file, as `submit` writes it.
fn engine_output(manifest: &Path, engine: &str) -> anyhow::Result<PathBuf> {
    let parsed = manifest_schema::load(manifest).map_err(|errors| {
        anyhow::anyhow!("{errors}\n(give the output file with -o to fetch without the manifest)")
    })?;
    let variant = parsed
        .variant(engine)
        .with_context(|| format!("{} has no engine `{engine}`", manifest.display()))?;
    Ok(parsed.engine_file(variant))
}
