//! From a manifest on disk to what its builds read, named the way the daemon wants: the model
//! (its path exactly as `[model] path` writes it), the model's external-data files (relative to
//! the model's directory, as its `external_data` entries name them) and plugin libraries, each
//! with its blake3 digest from the [`DigestCache`].
//!
//! Plugins are sent with role `PLUGIN` like any other input. Today's daemon refuses manifests
//! with plugins and says why; a daemon that takes them needs no client change.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use manifest_schema::{Manifest, ManifestErrors, ModelDim, ModelInput, Severity};
use trtfarm_proto::v1;

use crate::digest_cache::DigestCache;

/// A manifest that passed validation, with any warnings it produced.
#[derive(Debug)]
pub struct CheckedManifest {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Warnings to show (rendered like `trtfarm check` renders them), if any.
    pub warnings: Option<ManifestErrors>,
}

/// Loads and validates a manifest as `trtfarm check` does: syntax and values, the files it
/// names, then its profiles against the model's graph inputs (never its weights).
pub fn load_checked(path: &Path) -> Result<CheckedManifest, ManifestErrors> {
    let manifest = manifest_schema::load(path)?;
    let mut diagnostics = manifest.check_inputs();
    if diagnostics.is_empty() {
        match onnx_graph::read_graph_inputs(&manifest.model.resolved_path) {
            Ok(inputs) => {
                let inputs: Vec<ModelInput> = inputs.into_iter().map(to_model_input).collect();
                diagnostics.extend(manifest.check_against_model(&inputs));
            }
            Err(error) => diagnostics.push(manifest.model_diagnostic(
                error.to_string(),
                Some("`model.path` must name an ONNX model (a ModelProto file)".to_string()),
            )),
        }
    }
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(manifest.errors(diagnostics));
    }
    let warnings = (!diagnostics.is_empty()).then(|| manifest.errors(diagnostics));
    Ok(CheckedManifest { manifest, warnings })
}

/// The ONNX reader's view of an input, in the manifest crate's terms.
fn to_model_input(input: onnx_graph::GraphInput) -> ModelInput {
    ModelInput {
        name: input.name,
        dims: input.dims.map(|dims| {
            dims.into_iter()
                .map(|dim| match dim {
                    onnx_graph::Dim::Fixed(size) => ModelDim::Fixed(size),
                    onnx_graph::Dim::Symbolic(name) => ModelDim::Symbolic(name),
                    onnx_graph::Dim::Unknown => ModelDim::Unknown,
                })
                .collect()
        }),
    }
}

/// One file a build reads: where it is here, and how the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInput {
    /// The path the request carries (see the module documentation).
    pub path: String,
    /// The file on this machine.
    pub local: PathBuf,
    /// Model, external data or plugin.
    pub role: v1::InputRole,
}

/// Lists every file a manifest's builds read: the model, its external-data files (found by
/// streaming the model), then plugins. External data must lie in or below the model's
/// directory, which is where TensorRT's parser looks for it.
pub fn list_inputs(manifest: &Manifest) -> anyhow::Result<Vec<LocalInput>> {
    let model = &manifest.model.resolved_path;
    let mut inputs = vec![LocalInput {
        path: manifest.model.path.clone(),
        local: model.clone(),
        role: v1::InputRole::Model,
    }];
    let model_dir = model.parent().unwrap_or(Path::new("."));
    let locations = onnx_graph::external_data::read_external_data_locations(model)
        .with_context(|| format!("cannot list the external data of {}", model.display()))?;
    for location in locations {
        anyhow::ensure!(
            is_plain_relative(&location),
            "{} stores tensors in `{location}`, which is not a relative path inside the model's \
             directory; move the data file beside the model and re-export it",
            model.display()
        );
        inputs.push(LocalInput {
            local: model_dir.join(&location),
            path: location,
            role: v1::InputRole::ExternalData,
        });
    }
    for plugin in &manifest.model.plugins {
        inputs.push(LocalInput {
            path: plugin.path.clone(),
            local: plugin.resolved_path.clone(),
            role: v1::InputRole::Plugin,
        });
    }
    Ok(inputs)
}

/// A relative path with no `..`, root or prefix: it cannot leave the directory it is joined to.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Digests every input of every list through the cache, hashing each distinct file once even
/// when many manifests share it, and returns the request's input files, list by list.
pub fn digest_inputs(
    cache: &DigestCache,
    lists: &[&[LocalInput]],
) -> anyhow::Result<Vec<Vec<v1::InputFile>>> {
    let mut distinct: Vec<PathBuf> = Vec::new();
    let mut index_of: HashMap<PathBuf, usize> = HashMap::new();
    let mut slots: Vec<Vec<usize>> = Vec::with_capacity(lists.len());
    for list in lists {
        let mut list_slots = Vec::with_capacity(list.len());
        for input in *list {
            let canonical = std::fs::canonicalize(&input.local).with_context(|| {
                format!("cannot read {} (`{}`)", input.local.display(), input.path)
            })?;
            let next = distinct.len();
            let index = *index_of.entry(canonical.clone()).or_insert(next);
            if index == next {
                distinct.push(canonical);
            }
            list_slots.push(index);
        }
        slots.push(list_slots);
    }
    let digests = cache.digest_all(&distinct)?;
    Ok(lists
        .iter()
        .zip(slots)
        .map(|(list, list_slots)| {
            list.iter()
                .zip(list_slots)
                .map(|(input, index)| v1::InputFile {
                    path: input.path.clone(),
                    digest: Some(digests[index].0.clone()),
                    role: input.role as i32,
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_graph::{DataType, GraphBuilder, ModelBuilder, dims};

    const MANIFEST: &str = r#"schema_version = 1
[model]
path = "models/net.onnx"
[defaults]
toolchain = "tensorrt-rtx 1.7"
compatibility.compute_capabilities = ["8.9"]
[[profile]]
inputs.x = { min = [1, 16], opt = [4, 16], max = [8, 16] }
"#;

    fn model(seed: u64) -> onnx_graph::proto::ModelProto {
        let mut g = GraphBuilder::new("net", seed);
        let x = g.input("x", DataType::Float, dims!["N", 16]);
        let y = g.linear(&x, 16, 4);
        g.output("y", &y, DataType::Float, dims!["N", 4]);
        ModelBuilder::new(g).build()
    }

    fn repo(external: bool) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        let model_path = dir.path().join("models/net.onnx");
        if external {
            onnx_graph::external_data::write_with_external_data(
                &model(1),
                &model_path,
                "net.weights",
            )
            .unwrap();
        } else {
            onnx_graph::write_model(&model(1), &model_path).unwrap();
        }
        let manifest = dir.path().join("engine.toml");
        std::fs::write(&manifest, MANIFEST).unwrap();
        (dir, manifest)
    }

    #[test]
    fn lists_the_model_as_written_and_its_external_data_relative_to_the_model() {
        let (dir, manifest) = repo(true);
        let checked = load_checked(&manifest).unwrap();
        let inputs = list_inputs(&checked.manifest).unwrap();
        assert_eq!(
            inputs,
            vec![
                LocalInput {
                    path: "models/net.onnx".into(),
                    local: dir.path().join("models/net.onnx"),
                    role: v1::InputRole::Model,
                },
                LocalInput {
                    path: "net.weights".into(),
                    local: dir.path().join("models/net.weights"),
                    role: v1::InputRole::ExternalData,
                },
            ]
        );
    }

    #[test]
    fn shared_files_are_hashed_once_and_digests_match_the_bytes() {
        let (dir, manifest) = repo(true);
        let inputs = list_inputs(&load_checked(&manifest).unwrap().manifest).unwrap();
        let cache = DigestCache::disabled();
        let lists = digest_inputs(&cache, &[&inputs, &inputs]).unwrap();
        assert_eq!(lists[0], lists[1]);
        let weights = std::fs::read(dir.path().join("models/net.weights")).unwrap();
        let digest = lists[0][1].digest.as_ref().unwrap();
        assert_eq!(digest.blake3, blake3::hash(&weights).to_hex().as_str());
        assert_eq!(digest.size_bytes, weights.len() as u64);
        assert_eq!(lists[0][1].role, v1::InputRole::ExternalData as i32);
    }

    #[test]
    fn external_data_outside_the_model_directory_is_refused() {
        let (_dir, manifest) = repo(false);
        let checked = load_checked(&manifest).unwrap();
        let model_path = checked.manifest.model.resolved_path.clone();
        onnx_graph::external_data::write_with_external_data(&model(2), &model_path, "w.bin")
            .unwrap();
        // Point the tensors one directory up (same length keeps the protobuf valid).
        let mut bytes = std::fs::read(&model_path).unwrap();
        let mut patched = 0;
        for start in 0..bytes.len() - 5 {
            if &bytes[start..start + 5] == b"w.bin" {
                bytes[start..start + 5].copy_from_slice(b"../wb");
                patched += 1;
            }
        }
        assert!(patched > 0);
        std::fs::write(&model_path, bytes).unwrap();
        let error = list_inputs(&checked.manifest).unwrap_err();
        assert!(error.to_string().contains("`../wb`"), "{error}");
    }

    #[test]
    fn an_invalid_manifest_is_reported_like_check_does() {
        let (_dir, manifest) = repo(false);
        std::fs::write(&manifest, MANIFEST.replace("inputs.x", "inputs.images")).unwrap();
        let errors = load_checked(&manifest).unwrap_err();
        assert!(
            errors.render_plain().contains("images"),
            "{}",
            errors.render_plain()
        );
    }
}
