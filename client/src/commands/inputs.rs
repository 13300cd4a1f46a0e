//! `trtfarm inputs`: the files each manifest's builds read (the manifest, the model, its
//! external data, its plugins), where its `engine.lock` sits and which engines it declares, for
//! build systems that must know when to run trtfarm again (`trtfarm-build` for Cargo).
//!
//! Nothing is built and no daemon is reached; a model read before (same bytes, per the digest
//! cache) is not read again.

use std::path::{Path, PathBuf};

use serde::Serialize;
use trtfarm::digest_cache::DigestCache;
use trtfarm::inputs::list_inputs;
use trtfarm::lock::lock_path;
use trtfarm::model_facts;
use trtfarm_proto::v1;

use crate::discover::find_manifests;

/// One manifest in the `--json` document.
#[derive(Debug, Serialize)]
struct ManifestInputs {
    /// The manifest, as found.
    manifest: PathBuf,
    /// Its `engine.lock` (which may not exist yet).
    lock: PathBuf,
    /// Every file a build of it reads, the manifest first.
    inputs: Vec<InputJson>,
    /// Its engine variants.
    engines: Vec<EngineJson>,
}

/// One file a build reads.
#[derive(Debug, Serialize)]
struct InputJson {
    /// The file here.
    path: PathBuf,
    /// `manifest`, `model`, `external-data` or `plugin`.
    role: &'static str,
}

/// One engine variant.
#[derive(Debug, Serialize)]
struct EngineJson {
    /// Its `[[engine]] name`.
    name: String,
    /// Its engine file (its `output`, else `build/<name>.engine` beside the manifest).
    output: PathBuf,
}

/// The whole `--json` document.
#[derive(Debug, Serialize)]
struct Document {
    manifests: Vec<ManifestInputs>,
}

/// Runs `trtfarm inputs`: one JSON document (`--json`) or one input path per line. A manifest
/// that does not load, or a model whose external data cannot be listed, is an error.
pub fn run(paths: &[PathBuf], json: bool) -> anyhow::Result<bool> {
    let cache = DigestCache::open_default();
    let manifests = find_manifests(paths)?
        .iter()
        .map(|path| manifest_inputs(path, &cache))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if json {
        let document = Document { manifests };
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        for input in manifests.iter().flat_map(|m| &m.inputs) {
            println!("{}", input.path.display());
        }
    }
    Ok(true)
}

fn manifest_inputs(path: &Path, cache: &DigestCache) -> anyhow::Result<ManifestInputs> {
    let manifest = super::load_manifest(path)?;
    // What an earlier `check` or `submit` learned of these very model bytes, if anything: the
    // external-data files without streaming the model again.
    let known = model_facts::recall(cache, &manifest.model.resolved_path);
    let mut inputs = vec![InputJson {
        path: path.to_path_buf(),
        role: "manifest",
    }];
    inputs.extend(
        list_inputs(&manifest, known.as_ref())?
            .into_iter()
            .map(|input| InputJson {
                path: input.local,
                role: role_name(input.role),
            }),
    );
    Ok(ManifestInputs {
        manifest: path.to_path_buf(),
        lock: lock_path(path),
        inputs,
        engines: manifest
            .variants()
            .iter()
            .map(|v| EngineJson {
                name: v.name.clone(),
                output: manifest.engine_file(v),
            })
            .collect(),
    })
}

fn role_name(role: v1::InputRole) -> &'static str {
    match role {
        v1::InputRole::Model => "model",
        v1::InputRole::ExternalData => "external-data",
        v1::InputRole::Plugin => "plugin",
        _ => "other",
    }
}
