//! `trtfarm export --triton DIR`: a Triton model repository from the engines each manifest's
//! `engine.lock` pins. Each engine becomes `DIR/<model>/<version>/model.plan` with a
//! `config.pbtxt` whose inputs and outputs come from the ONNX model and the manifest's
//! profiles; with `--model-name`, several engines of one manifest become one model with a plan
//! per compute capability (`cc_model_filenames`). Plans are fetched by digest, verified before
//! they are renamed into place, and not fetched again when the file there already has the
//! digest.

mod triton_config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use manifest_schema::{Manifest, Variant};
use trtfarm::lock::{LockedEngine, lock_path, read_lock};
use trtfarm::transfer::{digest_file, download_to_file};
use trtfarm_proto::v1;

use crate::cli::{DaemonArgs, ExportArgs};
use crate::connect::{FarmConnection, connect, rpc_error};
use crate::discover::find_manifests;
use triton_config::TritonConfig;

/// The plan file of a model with one engine (Triton's default name).
const DEFAULT_PLAN: &str = "model.plan";

/// One Triton model to write: its configuration and its plan files.
#[derive(Debug)]
struct ExportedModel {
    /// `manifest#engine` of its engines, for messages.
    source: String,
    config: TritonConfig,
    /// (file name in the version directory, the locked engine).
    plans: Vec<(String, LockedEngine)>,
}

/// A manifest with the locked engines chosen from it.
struct Chosen {
    manifest: Manifest,
    label: String,
    engines: Vec<(Variant, LockedEngine)>,
    /// The model's declared inputs and outputs, read once for all its engines.
    io: (Vec<onnx_graph::GraphInput>, Vec<onnx_graph::GraphInput>),
}

/// Runs `trtfarm export --triton`.
pub async fn run(daemon: &DaemonArgs, args: &ExportArgs) -> anyhow::Result<bool> {
    let chosen = choose(&find_manifests(&args.paths)?, &args.engines)?;
    let models = match &args.model_name {
        Some(name) => vec![one_model(name, chosen)?],
        None => model_per_engine(chosen)?,
    };
    let mut client = connect(daemon).await?;
    for model in &models {
        write_model(&mut client, &args.triton, args.model_version, model).await?;
    }
    Ok(true)
}

/// Every manifest's locked engines (those `--engine` names, or all), each checked to be in
/// its lock.
fn choose(paths: &[PathBuf], engines: &[String]) -> anyhow::Result<Vec<Chosen>> {
    let mut chosen = Vec::new();
    for path in paths {
        let manifest = super::load_manifest(path)?;
        let label = crate::commands::submit::label(path);
        let lock = read_lock(path)?.with_context(|| {
            format!(
                "there is no {}: build the engines and lock them first with `trtfarm submit {label}`",
                lock_path(Path::new(&label)).display()
            )
        })?;
        let mut picked = Vec::new();
        for variant in manifest.variants() {
            if !engines.is_empty() && !engines.contains(&variant.name) {
                continue;
            }
            let locked = lock.engine(&variant.name).with_context(|| {
                format!(
                    "engine `{}` of {label} is not in {}: run `trtfarm submit {label}` to build \
                     and lock it",
                    variant.name,
                    lock_path(Path::new(&label)).display()
                )
            })?;
            picked.push((variant.clone(), locked.clone()));
        }
        if !picked.is_empty() {
            let model = &manifest.model.resolved_path;
            let io = onnx_graph::read_graph_io(model).map_err(|error| {
                anyhow::anyhow!(
                    "cannot read the inputs and outputs of {}: {error}",
                    model.display()
                )
            })?;
            chosen.push(Chosen {
                manifest,
                label,
                engines: picked,
                io,
            });
        }
    }
    for name in engines {
        anyhow::ensure!(
            chosen
                .iter()
                .any(|c| c.engines.iter().any(|(v, _)| &v.name == name)),
            "no manifest has an engine `{name}`"
        );
    }
    anyhow::ensure!(!chosen.is_empty(), "no engine to export");
    Ok(chosen)
}

/// One model per engine, named `<manifest directory>-<engine>`.
fn model_per_engine(chosen: Vec<Chosen>) -> anyhow::Result<Vec<ExportedModel>> {
    let mut models: Vec<ExportedModel> = Vec::new();
    for c in &chosen {
        let dir = manifest_dir_name(&c.manifest);
        for (variant, locked) in &c.engines {
            let name = model_name(&format!("{dir}-{}", variant.name));
            if let Some(other) = models.iter().find(|m| m.config.name == name) {
                anyhow::bail!(
                    "two engines would both be the Triton model `{name}` ({} and {}#{}): export \
                     them separately with --model-name",
                    other.source,
                    c.label,
                    variant.name
                );
            }
            let mut config = config_for(&name, c, variant)?;
            config.header.push(engine_line(variant, locked));
            models.push(ExportedModel {
                source: format!("{}#{}", c.label, variant.name),
                config,
                plans: vec![(DEFAULT_PLAN.to_string(), locked.clone())],
            });
        }
    }
    Ok(models)
}

/// Every chosen engine (of one manifest) as one model: one engine is `model.plan`; several are
/// one plan each, chosen by Triton through `cc_model_filenames` by the GPU's compute
/// capability, so no two may claim the same capability and all must take the same inputs and
/// give the same outputs.
fn one_model(name: &str, mut chosen: Vec<Chosen>) -> anyhow::Result<ExportedModel> {
    let labels: Vec<&str> = chosen.iter().map(|c| c.label.as_str()).collect();
    anyhow::ensure!(
        chosen.len() == 1,
        "--model-name makes one model from the engines of one manifest, but these are chosen \
         from {}: name one manifest (and its engines with --engine)",
        labels.join(", ")
    );
    let c = chosen.remove(0);
    let name = model_name(name);
    let (first, first_locked) = &c.engines[0];
    let mut config = config_for(&name, &c, first)?;
    if c.engines.len() == 1 {
        config.header.push(engine_line(first, first_locked));
        let plans = vec![(DEFAULT_PLAN.to_string(), first_locked.clone())];
        let source = format!("{}#{}", c.label, first.name);
        return Ok(ExportedModel {
            source,
            config,
            plans,
        });
    }
    let mut plans = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for (variant, locked) in &c.engines {
        let other = config_for(&name, &c, variant)?;
        anyhow::ensure!(
            (&other.inputs, &other.outputs) == (&config.inputs, &config.outputs),
            "engines `{}` and `{}` of {} differ in their inputs or outputs (precision, profiles), \
             so they cannot be one Triton model: export them without --model-name",
            first.name,
            variant.name,
            c.label
        );
        let capabilities = &variant.settings.compatibility.compute_capabilities;
        anyhow::ensure!(
            !capabilities.is_empty(),
            "engine `{}` of {} names no compute capabilities, so Triton cannot choose its plan by \
             GPU: set compatibility.compute_capabilities, or export it alone",
            variant.name,
            c.label
        );
        let file = format!("{}.plan", model_name(&variant.name));
        for cc in capabilities {
            if let Some(previous) = claimed.insert(cc.to_string(), variant.name.clone()) {
                anyhow::bail!(
                    "engines `{previous}` and `{}` of {} both run on compute capability {cc}; one \
                     Triton model takes one plan per capability: choose one with --engine",
                    variant.name,
                    c.label
                );
            }
            config
                .cc_model_filenames
                .insert(cc.to_string(), file.clone());
        }
        config.header.push(engine_line(variant, locked));
        plans.push((file, locked.clone()));
    }
    Ok(ExportedModel {
        source: c.label.clone(),
        config,
        plans,
    })
}

/// The configuration of `variant`'s engine under `name`, from its model's declared I/O.
fn config_for(name: &str, c: &Chosen, variant: &Variant) -> anyhow::Result<TritonConfig> {
    let (inputs, outputs) = TritonConfig::io(variant, &c.io.0, &c.io.1)
        .with_context(|| format!("{}#{}", c.label, variant.name))?;
    Ok(TritonConfig {
        name: name.to_string(),
        inputs,
        outputs,
        profiles: TritonConfig::describe_profiles(&variant.profiles),
        cc_model_filenames: BTreeMap::new(),
        header: vec![
            format!(
                "{}: written by `trtfarm export --triton` from its engine.lock",
                c.label
            ),
            "regenerate it rather than edit it".to_string(),
        ],
    })
}

fn engine_line(variant: &Variant, locked: &LockedEngine) -> String {
    format!(
        "engine {}: {} ({} {}, {}, {})",
        variant.name,
        locked.engine,
        locked.toolchain.flavour,
        locked.toolchain.version,
        locked.target,
        variant.settings.precision.as_str()
    )
}

/// The name of the directory holding the manifest (`models/resnet50/engine.toml`: `resnet50`).
fn manifest_dir_name(manifest: &Manifest) -> String {
    let dir = std::fs::canonicalize(manifest.dir()).unwrap_or_else(|_| manifest.dir().into());
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string())
}

/// A Triton model name, which is a directory name: letters, digits, `-`, `_`, `.`; anything
/// else becomes `_`.
fn model_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    match name.trim_matches('.') {
        "" => "model".to_string(),
        _ => name,
    }
}

/// Writes one model: its plans (fetched and verified unless already there) and its
/// `config.pbtxt` (replaced atomically, and only when it changes).
async fn write_model(
    client: &mut FarmConnection,
    root: &Path,
    version: u64,
    model: &ExportedModel,
) -> anyhow::Result<()> {
    let dir = root.join(&model.config.name);
    let version_dir = dir.join(version.to_string());
    for (file, locked) in &model.plans {
        let dest = version_dir.join(file);
        let wanted = v1::Digest::from(locked.engine);
        let present = dest.is_file() && digest_file(&dest).is_ok_and(|d| d == wanted);
        if !present {
            download_to_file(client, &wanted, &dest)
                .await
                .map_err(|error| {
                    rpc_error(
                        format_args!("cannot fetch engine `{}` ({})", locked.name, locked.engine),
                        error,
                    )
                })?;
        }
        let how = if present { "unchanged" } else { "fetched" };
        println!("{}  {}  {how}", dest.display(), locked.engine);
    }
    let config = dir.join("config.pbtxt");
    let text = model.config.render();
    if std::fs::read_to_string(&config).ok().as_deref() != Some(text.as_str()) {
        write_atomically(&config, text.as_bytes())?;
    }
    println!("{}", config.display());
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".config.pbtxt.{}.partial", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_directory_names() {
        assert_eq!(
            model_name("cnn-dynamic-batch-fp32"),
            "cnn-dynamic-batch-fp32"
        );
        assert_eq!(model_name("a b/c"), "a_b_c");
        assert_eq!(model_name(".."), "model");
    }
}
