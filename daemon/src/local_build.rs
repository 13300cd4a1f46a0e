//! `trtfarmd build`: build a manifest's engines in this process, without queue or store.
//!
//! The one-shot path for trying a manifest on a machine with TensorRT, and the core the
//! daemon's build workers run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use manifest_schema::{Flavour, Manifest, Variant};
use trt_ffi::{
    BuildObserver, BuildOutput, BuildRequest, Control, LogMessage, OnnxSource, ProgressEvent,
    Toolchain,
};

use crate::model_prep::prepare_model;
use crate::toolchains;
use crate::variant_config::build_config_for_prepared_model;

/// Options of `trtfarmd build`.
#[derive(Debug, clap::Args)]
pub struct LocalBuildOptions {
    /// The engine.toml to build.
    pub manifest: PathBuf,
    /// Build only this engine variant (repeatable; default: all).
    #[arg(long = "engine", short = 'e')]
    pub engines: Vec<String>,
    /// Write plans to DIR/<engine>.engine instead of each engine's `output` (default:
    /// `build/<engine>.engine` beside the manifest).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Directory holding the TensorRT libraries (default: search the usual places).
    #[arg(long)]
    pub lib_dir: Option<PathBuf>,
    /// Also print TensorRT's informational messages, not only warnings and errors.
    #[arg(long, short)]
    pub verbose: bool,
    /// Write the engine inspector's layer JSON beside each plan (needs a GPU: TensorRT cannot
    /// deserialize a plan without one).
    #[arg(long)]
    pub layer_info: bool,
}

/// Builds the selected variants one after another. Returns whether all succeeded; a failing
/// variant does not stop the others.
pub fn run(options: &LocalBuildOptions) -> anyhow::Result<bool> {
    let manifest = manifest_schema::load(&options.manifest).map_err(anyhow::Error::msg)?;
    let problems = manifest.check_inputs();
    if !problems.is_empty() {
        anyhow::bail!("{}", manifest.errors(problems));
    }
    let variants = select(&manifest, &options.engines)?;
    // dlopen once per flavour, not once per variant; the version check stays per variant.
    let mut loaded: HashMap<Flavour, Toolchain> = HashMap::new();
    let mut all_ok = true;
    for variant in variants {
        let plan_path = plan_path(&manifest, variant, options.out_dir.as_deref());
        let started = Instant::now();
        match build_variant(&manifest, variant, &plan_path, options, &mut loaded) {
            Ok(output) => {
                println!(
                    "built  {}: blake3:{} {} bytes in {:.2} s -> {}",
                    variant.name,
                    output.plan_digest.to_hex(),
                    output.plan_size,
                    started.elapsed().as_secs_f64(),
                    output.plan_path.display()
                );
                if let Some(report) = trt_ffi::builder_layer_listing(&output.log)
                    .and_then(trt_ffi::LayerPrecisionReport::from_layer_listing)
                {
                    println!("       layers: {report}");
                }
                if options.layer_info {
                    write_layer_info(&output)?;
                }
            }
            Err(error) => {
                all_ok = false;
                println!("FAILED {}: {error:#}", variant.name);
            }
        }
    }
    Ok(all_ok)
}

fn select<'m>(manifest: &'m Manifest, names: &[String]) -> anyhow::Result<Vec<&'m Variant>> {
    if names.is_empty() {
        return Ok(manifest.variants().iter().collect());
    }
    names
        .iter()
        .map(|name| {
            manifest.variant(name).ok_or_else(|| {
                let known: Vec<&str> = manifest
                    .variants()
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect();
                anyhow::anyhow!(
                    "{} has no engine `{name}` (it has: {})",
                    manifest.path.display(),
                    known.join(", ")
                )
            })
        })
        .collect()
}

fn plan_path(manifest: &Manifest, variant: &Variant, out_dir: Option<&Path>) -> PathBuf {
    match (out_dir, &variant.output) {
        (Some(dir), _) => dir.join(format!("{}.engine", variant.name)),
        (None, Some(output)) => output.clone(),
        (None, None) => manifest
            .dir()
            .join("build")
            .join(format!("{}.engine", variant.name)),
    }
}

fn build_variant(
    manifest: &Manifest,
    variant: &Variant,
    plan_path: &Path,
    options: &LocalBuildOptions,
    loaded: &mut HashMap<Flavour, Toolchain>,
) -> anyhow::Result<BuildOutput> {
    let mut config = build_config_for_prepared_model(variant)?;
    config.layer_info = options.layer_info;
    let requirement = &variant.settings.toolchain;
    let toolchain = match loaded.entry(requirement.flavour) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => entry.insert(toolchains::load(
            requirement.flavour,
            options.lib_dir.as_deref(),
        )?),
    };
    toolchains::check_version(toolchain, requirement)?;
    if let Some(parent) = plan_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // An fp16/bf16 conversion is kept beside the plan, for inspection, as the daemon keeps it.
    let mut converted = plan_path.as_os_str().to_owned();
    converted.push(".model.onnx");
    let model = prepare_model(
        variant,
        &manifest.model.resolved_path,
        Path::new(&converted),
        &mut |severity, text| eprintln!("{}: {severity}: {text}", variant.name),
    )
    .map_err(anyhow::Error::msg)?;
    if model != manifest.model.resolved_path {
        eprintln!("{}: converted model -> {}", variant.name, model.display());
    }
    let request = BuildRequest {
        onnx: OnnxSource::File(model),
        config,
        plan_path: plan_path.to_path_buf(),
    };
    let mut observer = ConsoleObserver {
        variant: variant.name.clone(),
        verbose: options.verbose,
    };
    Ok(toolchain.build(&request, &mut observer)?)
}

/// Writes the inspector's JSON to `<plan>.layers.json`, or says why there is none.
fn write_layer_info(output: &BuildOutput) -> anyhow::Result<()> {
    match (&output.layer_info_json, &output.layer_info_error) {
        (Some(json), _) => {
            let mut path = output.plan_path.clone().into_os_string();
            path.push(".layers.json");
            std::fs::write(&path, json)?;
            println!("       layer info -> {}", PathBuf::from(path).display());
        }
        (None, error) => println!(
            "       no layer info: {}",
            error.as_deref().unwrap_or("TensorRT gave no reason")
        ),
    }
    Ok(())
}

/// Prints TensorRT's warnings and errors (everything with `verbose`) and the top-level build
/// phases to stderr.
struct ConsoleObserver {
    variant: String,
    verbose: bool,
}

impl BuildObserver for ConsoleObserver {
    fn log(&mut self, message: &LogMessage) {
        let shown = if self.verbose {
            message.severity <= trt_ffi::Severity::Info
        } else {
            message.severity <= trt_ffi::Severity::Warning
        };
        if shown {
            eprintln!("{}: {message}", self.variant);
        }
    }

    fn progress(&mut self, event: &ProgressEvent<'_>) -> Control {
        if let ProgressEvent::PhaseStart {
            phase,
            parent: None,
            ..
        } = event
        {
            eprintln!("{}: {phase}", self.variant);
        }
        Control::Continue
    }
}
