//! What reading a model teaches `check` and `submit` (its graph inputs, that it passes the model
//! check, the external-data files it names), remembered by the digests of the model and of
//! those files: a model whose bytes did not change is not read again. The digests come from the
//! [`DigestCache`], which never hashes here and keeps its racy-clean rule, so a model modified
//! within the last second is read again.

use std::path::{Path, PathBuf};

use manifest_schema::{ModelDim, ModelInput, ModelNode};
use serde::{Deserialize, Serialize};

use crate::digest_cache::DigestCache;

/// What one read of a model found, all of it good (a model that fails a check is read again
/// every time, to report what is wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    /// Its graph inputs (weights with defaults left out).
    pub inputs: Vec<ModelInput>,
    /// Its external-data files, relative to the model's directory, as the model names them.
    pub external_data: Vec<String>,
}

/// The facts as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    inputs: Vec<(String, Option<Vec<StoredDim>>)>,
    external_data: Vec<String>,
    /// blake3 of each external-data file, in order: the facts hold for these bytes only.
    external_digests: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum StoredDim {
    Fixed(u64),
    Symbolic(String),
    Unknown,
}

/// The remembered facts of `model`, if the model and its external data are unchanged since.
pub fn recall(cache: &DigestCache, model: &Path) -> Option<ModelFacts> {
    let model_digest = cache.known(&[model.to_path_buf()])?.pop()?;
    let stored: Stored = serde_json::from_slice(&cache.fact(&key(&model_digest))?).ok()?;
    let external = cache.known(&external_paths(model, &stored.external_data))?;
    if external != stored.external_digests {
        return None;
    }
    Some(ModelFacts {
        inputs: stored
            .inputs
            .into_iter()
            .map(|(name, dims)| ModelInput {
                name,
                dims: dims.map(|dims| {
                    dims.into_iter()
                        .map(|dim| match dim {
                            StoredDim::Fixed(size) => ModelDim::Fixed(size),
                            StoredDim::Symbolic(name) => ModelDim::Symbolic(name),
                            StoredDim::Unknown => ModelDim::Unknown,
                        })
                        .collect()
                }),
            })
            .collect(),
        external_data: stored.external_data,
    })
}

/// Remembers what a read of `model` found, if the digest cache knows the model and its external
/// data (after a `submit` has digested them; before that, nothing is remembered). Returns
/// whether it did.
pub fn remember(cache: &DigestCache, model: &Path, facts: &ModelFacts) -> bool {
    let Some(model_digest) = cache
        .known(&[model.to_path_buf()])
        .and_then(|mut d| d.pop())
    else {
        return false;
    };
    let Some(external_digests) = cache.known(&external_paths(model, &facts.external_data)) else {
        return false;
    };
    let stored = Stored {
        inputs: facts
            .inputs
            .iter()
            .map(|input| {
                let dims = input.dims.as_ref().map(|dims| {
                    dims.iter()
                        .map(|dim| match dim {
                            ModelDim::Fixed(size) => StoredDim::Fixed(*size),
                            ModelDim::Symbolic(name) => StoredDim::Symbolic(name.clone()),
                            ModelDim::Unknown => StoredDim::Unknown,
                        })
                        .collect()
                });
                (input.name.clone(), dims)
            })
            .collect(),
        external_data: facts.external_data.clone(),
        external_digests,
    };
    match serde_json::to_vec(&stored) {
        Ok(bytes) => cache.put_fact(&key(&model_digest), &bytes),
        Err(_) => false,
    }
}

/// Every node of `model` (subgraphs included) with its operator type, for the checks of
/// `autocast.keep_fp32`. Read only when a manifest lists operators to keep, and not remembered:
/// tensor data is skipped, so this costs one pass over the graph's structure.
pub fn model_nodes(model: &Path) -> Result<Vec<ModelNode>, onnx_graph::OnnxError> {
    Ok(onnx_graph::read_node_names(model)?
        .into_iter()
        .map(|node| ModelNode {
            name: node.name,
            op_type: node.op_type,
        })
        .collect())
}

/// The key of a model's facts. trtfarm's version is in it: a release that checks models
/// differently reads every model again.
fn key(model_digest: &str) -> String {
    format!("model-facts/{}/{model_digest}", env!("CARGO_PKG_VERSION"))
}

fn external_paths(model: &Path, locations: &[String]) -> Vec<PathBuf> {
    let dir = model.parent().unwrap_or(Path::new("."));
    locations
        .iter()
        .map(|location| dir.join(location))
        .collect()
}
