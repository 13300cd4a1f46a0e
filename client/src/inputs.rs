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
use manifest_schema::{Diagnostic, Manifest, ManifestErrors, ModelDim, ModelInput, Severity};
use trtfarm_proto::v1;

use crate::digest_cache::DigestCache;
use crate::model_facts::{self, ModelFacts};

/// A manifest that passed validation, with any warnings it produced.
#[derive(Debug)]
pub struct CheckedManifest {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Warnings to show (rendered like `trtfarm check` renders them), if any.
    pub warnings: Option<ManifestErrors>,
    /// What its model is, when the model was checked: read now, or remembered.
    pub model: Option<Learned>,
}

/// What is known of a manifest's model after checking it.
#[derive(Debug, Clone)]
pub struct Learned {
    /// The facts.
    pub facts: ModelFacts,
    /// Whether the cache holds them (they came from it, or were stored in it now); if not,
    /// they can be stored once the model's files have digests.
    pub remembered: bool,
}

/// Loads and validates a manifest as `trtfarm check` does: syntax and values, the files it
/// names (inside the manifest's directory), then its profiles against the model's graph inputs
/// (never its weights), then what a build worker checks before TensorRT sees the model
/// ([`check_model`]). A model whose bytes were checked before is not read again.
pub fn load_checked(path: &Path, cache: &DigestCache) -> Result<CheckedManifest, ManifestErrors> {
    let manifest = manifest_schema::load(path)?;
    let (diagnostics, model) = diagnose(&manifest, cache);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(manifest.errors(diagnostics));
    }
    let warnings = (!diagnostics.is_empty()).then(|| manifest.errors(diagnostics));
    Ok(CheckedManifest {
        manifest,
        warnings,
        model,
    })
}

/// What `trtfarm check` finds in a parsed manifest: the files it names, then its profiles
/// against the model's inputs and [`check_model`] (only once the model is known to be readable),
/// and what it learned of the model. The model is read only if `cache` does not remember the
/// facts of these very bytes ([`model_facts`]).
pub fn diagnose(manifest: &Manifest, cache: &DigestCache) -> (Vec<Diagnostic>, Option<Learned>) {
    let mut diagnostics = manifest.check_inputs();
    if !diagnostics.is_empty() {
        return (diagnostics, None);
    }
    let model = &manifest.model.resolved_path;
    if let Some(facts) = model_facts::recall(cache, model) {
        diagnostics.extend(manifest.check_against_model(&facts.inputs));
        diagnostics.extend(external_data_escapes(manifest, &facts.external_data));
        return (
            diagnostics,
            Some(Learned {
                facts,
                remembered: true,
            }),
        );
    }
    let inputs = match onnx_graph::read_graph_inputs(model) {
        Ok(inputs) => inputs.into_iter().map(to_model_input).collect::<Vec<_>>(),
        Err(error) => {
            diagnostics.push(manifest.model_diagnostic(
                error.to_string(),
                Some("`model.path` must name an ONNX model (a ModelProto file)".to_string()),
            ));
            return (diagnostics, None);
        }
    };
    diagnostics.extend(manifest.check_against_model(&inputs));
    match check_model(manifest) {
        Ok(external_data) => {
            diagnostics.extend(external_data_escapes(manifest, &external_data));
            let facts = ModelFacts {
                inputs,
                external_data,
            };
            let remembered = model_facts::remember(cache, model, &facts);
            (diagnostics, Some(Learned { facts, remembered }))
        }
        Err(diagnostic) => {
            diagnostics.push(*diagnostic);
            (diagnostics, None)
        }
    }
}

/// The model as a build worker checks it before TensorRT sees it ([`onnx_graph::sanity`]: an
/// ONNX graph with outputs, dimensions TensorRT keeps, external data beside the model and within
/// its files), and the external-data files it names. The error is located at `model.path`.
/// `trtfarm submit` runs it (through [`load_checked`]) so a model no build can use fails here,
/// not in the farm.
pub fn check_model(manifest: &Manifest) -> Result<Vec<String>, Box<Diagnostic>> {
    let model = &manifest.model.resolved_path;
    if let Err(error) = onnx_graph::sanity::check_model(model) {
        let hint = match error {
            onnx_graph::OnnxError::NotOnnx { .. } => {
                "`model.path` must name an ONNX model with a graph that has outputs"
            }
            _ => "re-export the model (with its external data beside it) and check it again",
        };
        return Err(Box::new(
            manifest.model_diagnostic(error.to_string(), Some(hint.to_string())),
        ));
    }
    onnx_graph::external_data::read_external_data_locations(model)
        .map_err(|error| Box::new(manifest.model_diagnostic(error.to_string(), None)))
}

/// The model's external-data files that, with symbolic links resolved, lie outside the
/// manifest's project.
fn external_data_escapes(manifest: &Manifest, locations: &[String]) -> Vec<Diagnostic> {
    locations
        .iter()
        .filter_map(|location| match external_data_escape(manifest, location) {
            Ok(None) => None,
            Ok(Some(message)) => {
                Some(manifest.model_diagnostic(message, Some(COPY_DATA_IN_HINT.to_string())))
            }
            Err(error) => Some(manifest.model_diagnostic(format!("{error:#}"), None)),
        })
        .collect()
}

/// The fix for external data linked in from outside the project.
const COPY_DATA_IN_HINT: &str = "every input stays inside the manifest's project (the nearest \
     directory above engine.toml with `.git`, else its own directory): copy the data file in \
     instead of linking to it";

/// Where the external-data file `location` (relative to the model's directory) leads when, with
/// symbolic links resolved, that is outside the project root: the message saying so.
fn external_data_escape(manifest: &Manifest, location: &str) -> anyhow::Result<Option<String>> {
    let model = &manifest.model.resolved_path;
    let local = model.parent().unwrap_or(Path::new(".")).join(location);
    let outside = manifest
        .outside_root(&local)
        .with_context(|| format!("cannot read external-data file {}", local.display()))?;
    Ok(outside.map(|real| {
        format!(
            "{} stores tensors in `{location}`, which resolves through a symbolic link to {}, \
             outside the project",
            model.display(),
            real.display()
        )
    }))
}

/// The ONNX reader's view of an input, in the manifest crate's terms.
pub fn to_model_input(input: onnx_graph::GraphInput) -> ModelInput {
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
/// streaming the model), then plugins. External data must be named relative to the model's
/// directory (where TensorRT's parser looks for it) without `..`, and, with symbolic links
/// resolved, lie inside the manifest's directory like every other input (see
/// [`Manifest::outside_root`]; `check_inputs` checked the model and plugins).
pub fn list_inputs(
    manifest: &Manifest,
    known: Option<&ModelFacts>,
) -> anyhow::Result<Vec<LocalInput>> {
    let model = &manifest.model.resolved_path;
    let mut inputs = vec![LocalInput {
        path: manifest.model.path.clone(),
        local: model.clone(),
        role: v1::InputRole::Model,
    }];
    let model_dir = model.parent().unwrap_or(Path::new("."));
    let locations = match known {
        Some(facts) => facts.external_data.clone(),
        None => onnx_graph::external_data::read_external_data_locations(model)
            .with_context(|| format!("cannot list the external data of {}", model.display()))?,
    };
    for location in locations {
        anyhow::ensure!(
            is_plain_relative(&location),
            "{} stores tensors in `{location}`, which is not a relative path inside the model's \
             directory; move the data file beside the model and re-export it",
            model.display()
        );
        if let Some(message) = external_data_escape(manifest, &location)? {
            anyhow::bail!("{message}; {COPY_DATA_IN_HINT}");
        }
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
        let checked = load_checked(&manifest, &DigestCache::disabled()).unwrap();
        let inputs = list_inputs(&checked.manifest, None).unwrap();
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
        let inputs = list_inputs(
            &load_checked(&manifest, &DigestCache::disabled())
                .unwrap()
                .manifest,
            None,
        )
        .unwrap();
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
        let checked = load_checked(&manifest, &DigestCache::disabled()).unwrap();
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
        let error = list_inputs(&checked.manifest, None).unwrap_err();
        assert!(error.to_string().contains("`../wb`"), "{error}");
    }

    #[test]
    fn external_data_symlinked_from_outside_the_manifests_directory_is_refused() {
        let (dir, manifest) = repo(true);
        let models = dir.path().join("models");
        let elsewhere = tempfile::tempdir().unwrap();
        let moved = elsewhere.path().join("net.weights");
        std::fs::rename(models.join("net.weights"), &moved).unwrap();
        std::os::unix::fs::symlink(&moved, models.join("net.weights")).unwrap();
        let errors = load_checked(&manifest, &DigestCache::disabled())
            .unwrap_err()
            .render_plain();
        assert!(
            errors.contains("engine.toml:3:8")
                && errors.contains(
                    "stores tensors in `net.weights`, which resolves through a symbolic link"
                )
                && errors.contains("copy the data file in"),
            "{errors}"
        );
        let unchecked = manifest_schema::load(&manifest).unwrap();
        let error = list_inputs(&unchecked, None).unwrap_err().to_string();
        assert!(
            error.contains("outside the project") && error.contains("copy the data file in"),
            "{error}"
        );
        // A link that stays inside the manifest's directory is fine.
        std::fs::rename(&moved, dir.path().join("shared.weights")).unwrap();
        std::fs::remove_file(models.join("net.weights")).unwrap();
        std::os::unix::fs::symlink("../shared.weights", models.join("net.weights")).unwrap();
        let inputs = list_inputs(
            &load_checked(&manifest, &DigestCache::disabled())
                .unwrap()
                .manifest,
            None,
        )
        .unwrap();
        assert_eq!(inputs[1].path, "net.weights");
    }

    #[test]
    fn a_model_no_build_can_use_is_refused_before_submitting() {
        let (dir, manifest) = repo(false);
        let mut broken = model(3);
        broken.graph.as_mut().unwrap().output.clear();
        onnx_graph::write_model(&broken, &dir.path().join("models/net.onnx")).unwrap();
        let errors = load_checked(&manifest, &DigestCache::disabled())
            .unwrap_err()
            .render_plain();
        assert!(
            errors.contains("engine.toml:3:8") && errors.contains("its graph declares no outputs"),
            "{errors}"
        );
        // External data cut short is caught here too, not in the farm.
        let (dir, manifest) = repo(true);
        let weights = dir.path().join("models/net.weights");
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let errors = load_checked(&manifest, &DigestCache::disabled())
            .unwrap_err()
            .render_plain();
        assert!(
            errors.contains("the model cannot be built") && errors.contains("of `net.weights`"),
            "{errors}"
        );
    }

    #[test]
    fn an_invalid_manifest_is_reported_like_check_does() {
        let (_dir, manifest) = repo(false);
        std::fs::write(&manifest, MANIFEST.replace("inputs.x", "inputs.images")).unwrap();
        let errors = load_checked(&manifest, &DigestCache::disabled()).unwrap_err();
        assert!(
            errors.render_plain().contains("images"),
            "{}",
            errors.render_plain()
        );
    }

    /// Sets a file's modification time back a minute, out of the digest cache's racy window.
    fn settle(path: &Path) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        file.set_modified(past).unwrap();
    }

    #[test]
    fn a_model_is_read_once_per_content_and_again_when_it_or_its_data_changes() {
        let (dir, manifest) = repo(true);
        let model = dir.path().join("models/net.onnx");
        let weights = dir.path().join("models/net.weights");
        settle(&model);
        settle(&weights);
        let cache = DigestCache::open(&dir.path().join("cache.redb")).unwrap();

        // Nothing is remembered before the files have digests (a submit makes them).
        let first = load_checked(&manifest, &cache).unwrap().model.unwrap();
        assert!(!first.remembered);
        assert_eq!(first.facts.external_data, vec!["net.weights".to_string()]);
        assert!(
            !load_checked(&manifest, &cache)
                .unwrap()
                .model
                .unwrap()
                .remembered
        );
        cache.digest_all(&[model.clone(), weights.clone()]).unwrap();
        assert!(model_facts::remember(&cache, &model, &first.facts));
        let again = load_checked(&manifest, &cache).unwrap().model.unwrap();
        assert!(again.remembered, "same bytes: not read again");
        assert_eq!(again.facts, first.facts);

        // Different weights in the external data: the model is read again (and found short).
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        settle(&weights);
        cache.digest_all(std::slice::from_ref(&weights)).unwrap();
        let errors = load_checked(&manifest, &cache).unwrap_err().render_plain();
        assert!(errors.contains("of `net.weights`"), "{errors}");

        // A model modified just now is read, whatever the cache says (racy-clean rule).
        std::fs::write(&weights, &bytes).unwrap();
        settle(&weights);
        cache.digest_all(std::slice::from_ref(&weights)).unwrap();
        assert!(
            load_checked(&manifest, &cache)
                .unwrap()
                .model
                .unwrap()
                .remembered
        );
        let text = std::fs::read(&model).unwrap();
        std::fs::write(&model, &text).unwrap();
        assert!(
            !load_checked(&manifest, &cache)
                .unwrap()
                .model
                .unwrap()
                .remembered
        );
    }
}
