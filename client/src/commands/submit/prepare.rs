//! Before anything is submitted: find and validate manifests (diagnostics as `trtfarm check`
//! prints them), list and digest their inputs, pick the variants, upload what the daemon lacks,
//! and write the requests.

use std::path::{Path, PathBuf};

use manifest_schema::Manifest;
use trtfarm::digest_cache::DigestCache;
use trtfarm::inputs::{Learned, LocalInput, digest_inputs, list_inputs, load_checked};
use trtfarm::model_facts;
use trtfarm::transfer::upload_file;
use trtfarm_proto::v1;

use super::Options;
use crate::connect::{FarmConnection, rpc_error};

/// A validated manifest with its inputs hashed.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The manifest file, as found.
    pub path: PathBuf,
    /// Its path relative to the current directory, for people and requests.
    pub label: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Every file its builds read, here.
    pub local: Vec<LocalInput>,
    /// The same files as the request names them, with digests.
    pub inputs: Vec<v1::InputFile>,
}

/// Loads and validates each manifest and hashes its inputs, printing diagnostics like `trtfarm
/// check`. `None` when any manifest has an error.
pub fn prepare_all(paths: &[PathBuf], cache: &DigestCache) -> Option<Vec<Prepared>> {
    let mut ok = true;
    let mut loaded = Vec::new();
    for path in paths {
        match load_and_list(path, cache) {
            Ok((manifest, local, learned)) => loaded.push((path.clone(), manifest, local, learned)),
            Err(message) => {
                eprint!("{message}");
                ok = false;
            }
        }
    }
    let lists: Vec<&[LocalInput]> = loaded.iter().map(|(_, _, local, _)| &local[..]).collect();
    let digested = match digest_inputs(cache, &lists) {
        Ok(digested) => digested,
        Err(error) => {
            eprintln!("error: {error:#}");
            return None;
        }
    };
    // The inputs have digests now: what was read of each model is remembered for next time.
    for (_, manifest, _, learned) in &loaded {
        if let Some(learned) = learned.as_ref().filter(|l| !l.remembered) {
            model_facts::remember(cache, &manifest.model.resolved_path, &learned.facts);
        }
    }
    let prepared = loaded
        .into_iter()
        .zip(digested)
        .map(|((path, manifest, local, _), inputs)| Prepared {
            label: label(&path),
            path,
            manifest,
            local,
            inputs,
        })
        .collect();
    ok.then_some(prepared)
}

/// One manifest, validated, with its input files listed; or the rendered reason it is not.
/// The model is read only if `cache` does not remember these very bytes; what was read is
/// returned for [`model_facts::remember`] once the inputs have digests.
pub fn load_and_list(
    path: &Path,
    cache: &DigestCache,
) -> Result<(Manifest, Vec<LocalInput>, Option<Learned>), String> {
    let fancy = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let render = |errors: &manifest_schema::ManifestErrors| match fancy {
        true => errors.render_fancy(std::env::var_os("NO_COLOR").is_none()),
        false => errors.render_plain(),
    };
    let checked = load_checked(path, cache).map_err(|errors| render(&errors))?;
    if let Some(warnings) = &checked.warnings {
        eprint!("{}", render(warnings));
    }
    let local = list_inputs(&checked.manifest, checked.model.as_ref().map(|m| &m.facts))
        .map_err(|error| format!("{}: error: {error:#}\n", path.display()))?;
    Ok((checked.manifest, local, checked.model))
}

/// A path as the user knows it: relative to the current directory when it is under it.
pub fn label(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf());
    let relative = relative.strip_prefix(".").unwrap_or(&relative);
    relative.to_string_lossy().into_owned()
}

/// (manifest index, variant name) of every variant to build: all, or those `--engine` names.
pub fn select(prepared: &[Prepared], engines: &[String]) -> anyhow::Result<Vec<(usize, String)>> {
    for name in engines {
        anyhow::ensure!(
            prepared.iter().any(|p| p.manifest.variant(name).is_some()),
            "no manifest has an engine `{name}`"
        );
    }
    Ok(prepared
        .iter()
        .enumerate()
        .flat_map(|(index, p)| p.manifest.variants().iter().map(move |v| (index, v)))
        .filter(|(_, v)| engines.is_empty() || engines.contains(&v.name))
        .map(|(index, v)| (index, v.name.clone()))
        .collect())
}

/// Uploads the inputs the daemon's store lacks (each distinct blob once, resumably).
pub async fn upload_missing(
    client: &mut FarmConnection,
    prepared: &[Prepared],
) -> anyhow::Result<()> {
    let mut files: Vec<(&v1::Digest, &Path)> = Vec::new();
    for p in prepared {
        for (input, local) in p.inputs.iter().zip(&p.local) {
            if let Some(digest) = &input.digest
                && !files.iter().any(|(d, _)| d.blake3 == digest.blake3)
            {
                files.push((digest, &local.local));
            }
        }
    }
    let digests = files.iter().map(|(d, _)| (*d).clone()).collect();
    let missing = client
        .find_missing_blobs(v1::FindMissingBlobsRequest { digests })
        .await
        .map_err(|status| rpc_error("cannot ask the daemon which inputs it lacks", status.into()))?
        .into_inner()
        .missing;
    for (digest, path) in files {
        if missing.iter().any(|m| m.blake3 == digest.blake3) {
            upload_file(client, path, digest)
                .await
                .map_err(|e| anyhow::anyhow!("cannot upload {}: {e:#}", path.display()))?;
        }
    }
    Ok(())
}

/// The request for one variant.
pub fn request(prepared: &Prepared, variant: &str, options: &Options) -> v1::SubmitRequest {
    v1::SubmitRequest {
        timing_cache: pinned_timing_cache(&prepared.path, variant).map(|d| (&d).into()),
        manifest: Some(v1::Manifest {
            path: prepared.label.clone(),
            toml: prepared.manifest.source_text().to_string(),
        }),
        variant: variant.to_string(),
        inputs: prepared.inputs.clone(),
        priority: options.priority,
        skip_cache: options.skip_cache,
        client: client_name(),
        ..v1::SubmitRequest::default()
    }
}

/// The timing cache `variant`'s entry in the manifest's engine.lock pins, read when the
/// request is made: a `record` build moves the pin, and `watch` submits again after it. An
/// unreadable lock pins nothing here; recording the lock reports it.
fn pinned_timing_cache(manifest: &Path, variant: &str) -> Option<trtfarm_types::BlobDigest> {
    let lock = trtfarm::lock::read_lock(manifest).ok()??;
    lock.engine(variant)?.timing_cache
}

fn client_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "an unknown host".into());
    format!("trtfarm {} on {host}", env!("CARGO_PKG_VERSION"))
}
