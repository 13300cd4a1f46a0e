//! `trtfarm fetch`: stream one blob out of the daemon's store, verified, written atomically.

use std::path::{Path, PathBuf};

use anyhow::Context;
use trtfarm::lock::{lock_path, read_lock};
use trtfarm::transfer::{download_to_file, download_to_writer};
use trtfarm_proto::v1;
use trtfarm_types::BlobDigest;

use crate::cli::{DaemonArgs, FetchArgs};
use crate::connect::{connect, rpc_error};

/// What `fetch` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    /// A blob by digest.
    Digest(BlobDigest),
    /// An engine variant, resolved through the `engine.lock` beside the manifest.
    Locked { manifest: PathBuf, engine: String },
}

/// Fetches a blob. A refused download (a corrupt blob: `DATA_LOSS`) is an error and leaves
/// nothing at the output path.
pub async fn run(daemon: &DaemonArgs, args: &FetchArgs) -> anyhow::Result<bool> {
    let (digest, output) = match parse_wanted(&args.what)? {
        Wanted::Digest(digest) => {
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(digest.hex()));
            (digest, output)
        }
        Wanted::Locked { manifest, engine } => {
            let digest = locked_digest(&manifest, &engine)?;
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

/// Reads `blake3:<64 lowercase hex>/<size>`, saying what is wrong and what was expected when
/// it is not that (the argument may also have been meant as MANIFEST#ENGINE).
fn parse_digest(text: &str) -> anyhow::Result<BlobDigest> {
    text.parse::<BlobDigest>().map_err(|error| {
        anyhow::anyhow!(
            "`{text}` is not a digest ({}): expected blake3:<64 hex digits>/<size in bytes> \
             (lowercase hex), or MANIFEST#ENGINE",
            error.problem
        )
    })
}

fn parse_wanted(text: &str) -> anyhow::Result<Wanted> {
    if text.starts_with("blake3:") {
        return parse_digest(text).map(Wanted::Digest);
    }
    match text.rsplit_once('#') {
        Some((manifest, engine)) if !manifest.is_empty() && !engine.is_empty() => {
            Ok(Wanted::Locked {
                manifest: PathBuf::from(manifest),
                engine: engine.to_string(),
            })
        }
        _ => parse_digest(text).map(Wanted::Digest),
    }
}

/// The engine digest `engine.lock` beside `manifest` records for `engine`.
fn locked_digest(manifest: &Path, engine: &str) -> anyhow::Result<BlobDigest> {
    let lock_file = lock_path(manifest);
    let lock = read_lock(manifest)?.with_context(|| {
        format!(
            "there is no {} to resolve {}#{engine}: build it first with `trtfarm submit {}`",
            lock_file.display(),
            manifest.display(),
            manifest.display()
        )
    })?;
    let Some(entry) = lock.engine(engine) else {
        let names: Vec<&str> = lock.engines.iter().map(|e| e.name.as_str()).collect();
        let names = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        anyhow::bail!(
            "{} has no engine `{engine}` (it has: {names})",
            lock_file.display()
        );
    };
    Ok(entry.engine)
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn digests_round_trip_through_their_text() {
        let digest = parse_digest(&format!("blake3:{HEX}/1234")).unwrap();
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.size, 1234);
        assert_eq!(digest.to_string(), format!("blake3:{HEX}/1234"));
        let error = parse_digest(&format!("blake3:{}/0", HEX.to_uppercase())).unwrap_err();
        assert!(error.to_string().contains("lower case"), "{error}");
    }

    #[test]
    fn malformed_digests_are_refused_with_the_expected_form() {
        for bad in [
            format!("blake3:{HEX}"),
            format!("blake3:{HEX}/-1"),
            format!("blake3:{HEX}/12x"),
            format!("sha256:{HEX}/12"),
            format!("blake3:{}/12", &HEX[..63]),
            format!("blake3:{}g/12", &HEX[..63]),
            "engine.toml".to_string(),
            "#fp16".to_string(),
        ] {
            let error = parse_wanted(&bad).expect_err(&bad).to_string();
            assert!(
                error.contains("blake3:<64 hex digits>/<size"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn manifest_and_engine_split_at_the_last_hash() {
        assert_eq!(
            parse_wanted("models/a#b/engine.toml#fp16").unwrap(),
            Wanted::Locked {
                manifest: PathBuf::from("models/a#b/engine.toml"),
                engine: "fp16".into()
            }
        );
    }
}
