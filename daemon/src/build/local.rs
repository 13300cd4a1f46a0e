//! `trtfarmd build`: build a manifest's engines here and now, without queue or store.
//!
//! The same two steps as the daemon, in the same places: the prepare step in this process, the
//! build in a `trtfarm-builder` process started in a build root with the daemon's fixed argv,
//! environment and task, so a plan built here has the bytes the daemon gives for that engine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use manifest_schema::{Flavour, Manifest, Variant};
use tokio::sync::{mpsc, watch};
use trtfarm_build_protocol::{
    BuilderDone, BuilderTask, INPUTS_DIR, LAYERS_FILE, OUT_DIR, PLAN_FILE, Progress, ProgressKind,
    TASK_FILE,
};

use super::builder_process::{
    BuildRoot, BuilderCommand, BuilderEvent, BuilderOutcome, run_builder,
};
use super::failure_hint::build_failure_message;
use super::prepare::{ModelToBuild, Preparation, prepare_model};
use crate::ingest::request::MODEL_NAME;
use crate::ingest::variant_config::build_config_for_prepared_model;
use crate::toolchains;

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
    /// The builder program (default: trtfarm-builder beside trtfarmd).
    #[arg(long, env = "TRTFARMD_BUILDER")]
    pub builder: Option<PathBuf>,
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
    let builder = super::builder_program(options.builder.as_deref())?;
    // A private state dir for this run: its build root gives the builder the daemon's view.
    let state = tempfile::Builder::new()
        .prefix("trtfarmd-build-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let libraries = library_dirs(&variants, options.lib_dir.as_deref())?;
    let root = BuildRoot::prepare(state.path(), &builder, &libraries)
        .context("cannot prepare the build root")?;
    let _remove_root = RemoveRoot(state.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut all_ok = true;
    for (index, variant) in variants.into_iter().enumerate() {
        let plan_path = plan_path(&manifest, variant, options.out_dir.as_deref());
        let started = Instant::now();
        let scratch = state.path().join(format!("scratch-{index}"));
        let build = LocalBuild {
            manifest: &manifest,
            variant,
            options,
            root: &root,
            slot: index as u64,
            scratch: &scratch,
            has_library_dir: libraries
                .iter()
                .any(|(f, _)| *f == variant.settings.toolchain.flavour),
        };
        match runtime.block_on(build.run(&plan_path)) {
            Ok(done) => print_built(variant, &done, &plan_path, started.elapsed(), options)?,
            Err(error) => {
                all_ok = false;
                println!("FAILED {}: {error:#}", variant.name);
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(all_ok)
}

/// One variant's build.
struct LocalBuild<'a> {
    manifest: &'a Manifest,
    variant: &'a Variant,
    options: &'a LocalBuildOptions,
    root: &'a BuildRoot,
    slot: u64,
    scratch: &'a Path,
    has_library_dir: bool,
}

impl LocalBuild<'_> {
    async fn run(&self, plan_path: &Path) -> anyhow::Result<BuilderDone> {
        let name = &self.variant.name;
        let inputs = self.scratch.join(INPUTS_DIR);
        std::fs::create_dir_all(&inputs)?;
        std::fs::create_dir_all(self.scratch.join(OUT_DIR))?;
        let mut config = build_config_for_prepared_model(self.variant)?;
        config.layer_info = self.options.layer_info;
        anyhow::ensure!(
            self.variant.settings.timing_cache != manifest_schema::TimingCachePolicy::Locked,
            "engine `{name}`: timing_cache.policy = \"locked\" loads the cache engine.lock pins \
             from a daemon's timing-cache registry, which `trtfarmd build` does not have; \
             submit it to a daemon with `trtfarm submit`"
        );

        // Prepare: a conversion reads the original where it is; a check reads the copy.
        let preparation = Preparation::for_variant(self.variant);
        let original = &self.manifest.model.resolved_path;
        let model = inputs.join(MODEL_NAME);
        let converts = matches!(preparation, Preparation::Autocast(_));
        let source = if converts {
            original.clone()
        } else {
            copy_model_inputs(original, &inputs)?;
            model.clone()
        };
        let mut log = Vec::new();
        let prepared = prepare_model(&preparation, &source, &model, &mut log);
        for line in &log {
            eprintln!("{name}: {}: {}", line.severity, line.text);
        }
        let prepared = prepared?;
        if converts {
            keep_converted_model(&prepared, plan_path, name)?;
        }

        let slot = self.root.prepare_slot(self.slot, self.scratch)?;
        let flavour = self.variant.settings.toolchain.flavour;
        let task = BuilderTask {
            flavour,
            library_dir: self.has_library_dir.then(|| self.root.library_dir(flavour)),
            config,
            timing_cache_input: false,
            mps_percentage: self.variant.settings.mps_percentage,
        };
        std::fs::write(slot.join(TASK_FILE), serde_json::to_vec(&task)?)?;
        let command = BuilderCommand {
            program: self.root.program(),
            scratch: slot.clone(),
            memory_limit: None,
            deadline: self.variant.settings.build_timeout,
            extra_env: vec![(
                "TRTFARM_CACHE_DIR".to_owned(),
                self.root.cache_dir().display().to_string(),
            )],
        };
        let (events, mut received) = mpsc::unbounded_channel();
        let (_cancel, cancel) = watch::channel(false);
        let verbose = self.options.verbose;
        let printer = async {
            while let Some(event) = received.recv().await {
                print_event(name, &event, verbose);
            }
        };
        let (report, ()) = tokio::join!(run_builder(&command, events, cancel), printer);
        let report = report.context("cannot start the builder")?;
        let _ = std::fs::remove_dir_all(&slot);
        match report.outcome {
            BuilderOutcome::Succeeded(done) => {
                self.keep_outputs(plan_path, &done)?;
                Ok(*done)
            }
            BuilderOutcome::BuildFailed { message } => {
                let converted = matches!(preparation, Preparation::Autocast(_));
                anyhow::bail!(
                    "{}",
                    build_failure_message(&message, self.variant, &model, converted)
                )
            }
            BuilderOutcome::Crashed { description } => {
                anyhow::bail!("the builder crashed: {description}")
            }
            BuilderOutcome::DeadlineExceeded => anyhow::bail!(
                "the build ran past build_timeout = \"{}\" and was stopped",
                humantime::format_duration(self.variant.settings.build_timeout)
            ),
            BuilderOutcome::Cancelled => anyhow::bail!("cancelled"),
        }
    }

    /// Moves the plan to `plan_path` and the layer JSON beside it.
    fn keep_outputs(&self, plan_path: &Path, done: &BuilderDone) -> anyhow::Result<()> {
        if let Some(parent) = plan_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        move_file(&self.scratch.join(PLAN_FILE), plan_path)?;
        if done.layer_info {
            move_file(
                &self.scratch.join(LAYERS_FILE),
                &with_suffix(plan_path, ".layers.json"),
            )?;
        }
        Ok(())
    }
}

/// The library directory of each flavour the variants use, as the daemon's probe finds it (the
/// builder gets the build root's link to it).
fn library_dirs(
    variants: &[&Variant],
    lib_dir: Option<&Path>,
) -> anyhow::Result<Vec<(Flavour, PathBuf)>> {
    let mut dirs = Vec::new();
    for variant in variants {
        let requirement = &variant.settings.toolchain;
        if dirs.iter().any(|(f, _)| *f == requirement.flavour) {
            continue;
        }
        // Loading here finds the library and checks its version before any build starts.
        let toolchain = toolchains::load(requirement.flavour, lib_dir)?;
        toolchains::check_version(&toolchain, requirement)?;
        if let Some(dir) = toolchain.library_path().parent() {
            dirs.push((requirement.flavour, dir.to_path_buf()));
        }
    }
    Ok(dirs)
}

/// Places the model and its external-data files in `inputs`, the model as `model.onnx`:
/// hard links where the file system allows, else copies.
fn copy_model_inputs(model: &Path, inputs: &Path) -> anyhow::Result<()> {
    place(model, &inputs.join(MODEL_NAME))?;
    let locations = onnx_graph::external_data::read_external_data_locations(model)
        .with_context(|| format!("cannot read {}", model.display()))?;
    let dir = model.parent().unwrap_or(Path::new("."));
    for location in locations {
        place(&dir.join(&location), &inputs.join(&location))?;
    }
    Ok(())
}

fn place(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Keeps the converted model for inspection, as the daemon keeps it in the store:
/// `<plan>.model.onnx`, or `<plan>.model/` when its weights are a separate file (which the model
/// names, so the two stay side by side under their own names).
fn keep_converted_model(
    converted: &ModelToBuild,
    plan_path: &Path,
    name: &str,
) -> anyhow::Result<()> {
    if let Some(parent) = plan_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let kept = match &converted.converted_weights {
        Some(weights) => {
            let dir = with_suffix(plan_path, ".model");
            std::fs::create_dir_all(&dir)?;
            for file in [&converted.model, weights] {
                let file_name = file
                    .file_name()
                    .context("a converted file without a name")?;
                place_fresh(file, &dir.join(file_name))?;
            }
            dir
        }
        None => {
            let file = with_suffix(plan_path, ".model.onnx");
            place_fresh(&converted.model, &file)?;
            file
        }
    };
    eprintln!("{name}: converted model -> {}", kept.display());
    Ok(())
}

/// `place`, replacing what is there.
fn place_fresh(from: &Path, to: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(to);
    place(from, to)
}

/// Renames `from` to `to`, or copies it where they are on different file systems.
fn move_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::rename(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("cannot write {}", to.display()))?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

fn print_built(
    variant: &Variant,
    done: &BuilderDone,
    plan_path: &Path,
    elapsed: Duration,
    options: &LocalBuildOptions,
) -> anyhow::Result<()> {
    println!(
        "built  {}: blake3:{} {} bytes in {:.2} s -> {}",
        variant.name,
        done.plan_blake3,
        done.plan_size,
        elapsed.as_secs_f64(),
        plan_path.display()
    );
    if !done.layers_by_precision.is_empty() {
        let counts: Vec<String> = done
            .layers_by_precision
            .iter()
            .map(|(precision, n)| format!("{precision} {n}"))
            .collect();
        println!("       layers: {}", counts.join(", "));
    }
    if options.layer_info {
        match (done.layer_info, &done.layer_info_error) {
            (true, _) => println!(
                "       layer info -> {}",
                with_suffix(plan_path, ".layers.json").display()
            ),
            (false, error) => println!(
                "       no layer info: {}",
                (error.as_deref())
                    .map(super::failure_message::layer_info_unavailable)
                    .unwrap_or_else(|| "TensorRT gave no reason".into())
            ),
        }
    }
    Ok(())
}

/// Prints TensorRT's warnings and errors (everything with `verbose`) and the top-level build
/// phases to stderr.
fn print_event(variant: &str, event: &BuilderEvent, verbose: bool) {
    match event {
        BuilderEvent::Log { severity, text } => {
            let quiet = matches!(severity.as_str(), "info" | "verbose");
            if verbose || !quiet {
                eprintln!("{variant}: {severity}: {text}");
            }
        }
        BuilderEvent::Progress(Progress {
            kind: ProgressKind::PhaseStart,
            phase,
            parent: None,
            ..
        }) => eprintln!("{variant}: {phase}"),
        BuilderEvent::Progress(_) | BuilderEvent::Spawned { .. } => {}
    }
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
    match out_dir {
        Some(dir) => dir.join(format!("{}.engine", variant.name)),
        None => manifest.engine_file(variant),
    }
}

/// Removes this run's build root when the run ends.
struct RemoveRoot(PathBuf);

impl Drop for RemoveRoot {
    fn drop(&mut self) {
        let _ = BuildRoot::remove(&self.0);
    }
}
