//! The worker side: `trtfarmd worker` builds the one engine its `task.json` describes and
//! reports on stdout, one JSON line per message.
//!
//! It runs with a fixed argv, environment and cwd length (see `spawn`), reads everything else
//! relative to its working directory, and never touches the manifest's own model path.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use manifest_schema::Flavour;
use trt_ffi::{BuildObserver, BuildRequest, Control, LogMessage, OnnxSource, ProgressEvent};

use super::protocol::{
    self, LAYER_LISTING_FILE, LAYERS_FILE, MODEL_FILE, PLAN_FILE, ProgressKind, TASK_FILE,
    TIMING_CACHE_FILE, TRANSFORMED_MODEL_FILE, WorkerDone, WorkerMessage, WorkerTask,
};
use crate::file_stamp::LoadedLibrary;
use crate::model_prep::prepare_model;
use crate::toolchains;
use crate::variant_config::build_config_for_prepared_model;

/// Runs the build described by `./task.json`, streaming log and progress as JSON lines on
/// stdout and ending with `Done` (exit 0) or `Failed` (exit 1).
pub fn worker_main() -> ExitCode {
    let mut reporter = Reporter::new(protocol_stdout());
    let message = match build(&mut reporter) {
        Ok(done) => WorkerMessage::Done(done),
        Err(message) => WorkerMessage::Failed { message },
    };
    let succeeded = matches!(message, WorkerMessage::Done(_));
    // A result nobody received is no success: the daemon would see no `Done` either.
    if reporter.send(&message) && succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Takes fd 1 for the protocol and points fd 1 at stderr, so that anything a library prints on
/// stdout lands in the daemon's log instead of corrupting the JSON stream.
fn protocol_stdout() -> File {
    // SAFETY: plain fd calls on the process's own standard descriptors; on failure we keep
    // writing to fd 1 directly, which still works, only without the protection.
    unsafe {
        let protocol = libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        if protocol < 0 {
            return File::from_raw_fd(libc::STDOUT_FILENO);
        }
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
        File::from_raw_fd(protocol)
    }
}

/// Everything between reading the task and the final message.
fn build(reporter: &mut Reporter) -> Result<WorkerDone, String> {
    let text =
        std::fs::read_to_string(TASK_FILE).map_err(|e| format!("cannot read {TASK_FILE}: {e}"))?;
    let task: WorkerTask =
        serde_json::from_str(&text).map_err(|e| format!("{TASK_FILE} is malformed: {e}"))?;
    let manifest = manifest_schema::parse(&task.manifest_toml, Path::new(&task.manifest_path))
        .map_err(|errors| errors.render_plain())?;
    let variant = manifest.variant(&task.variant).ok_or_else(|| {
        let known: Vec<&str> = manifest
            .variants()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        format!(
            "{} has no engine `{}` (it has: {})",
            task.manifest_path,
            task.variant,
            known.join(", ")
        )
    })?;
    let requirement = &variant.settings.toolchain;
    if requirement.flavour != task.flavour {
        return Err(format!(
            "engine `{}` asks for `{requirement}`, but this worker was started for {}",
            variant.name, task.flavour
        ));
    }
    let mut config = build_config_for_prepared_model(variant).map_err(|e| e.to_string())?;
    config.layer_info = task.layer_info;
    let toolchain = toolchains::load(requirement.flavour, task.library_dir.as_deref())
        .map_err(|e| format!("{e:#}"))?;
    toolchains::check_version(&toolchain, requirement).map_err(|e| format!("{e:#}"))?;
    // Enterprise builds time tactics on this GPU: check what the context gets before building.
    let gpu_context = match requirement.flavour {
        Flavour::TensorRt => Some(Box::new(super::gpu_context::check_build_gpu(
            variant.settings.mps_percentage,
            &mut |text| {
                reporter.send(&WorkerMessage::Log {
                    severity: "info".into(),
                    text,
                });
            },
        )?)),
        Flavour::TensorRtRtx => None,
    };

    let model = prepare(variant, reporter)?;
    let transformed_model = model == Path::new(TRANSFORMED_MODEL_FILE);
    let request = BuildRequest {
        onnx: OnnxSource::File(model),
        config,
        plan_path: PathBuf::from(PLAN_FILE),
    };
    let output = toolchain
        .build(&request, reporter)
        .map_err(|e| e.to_string())?;

    if let Some(json) = &output.layer_info_json {
        write(LAYERS_FILE, json.as_bytes())?;
    }
    let listing = trt_ffi::builder_layer_listing(&output.log);
    if let Some(text) = listing {
        write(LAYER_LISTING_FILE, text.as_bytes())?;
    }
    let layers_by_precision =
        layer_precisions(output.layer_info_json.as_deref(), listing, reporter);
    let timing_cache = match &output.timing_cache_out {
        Some(bytes) => {
            write(TIMING_CACHE_FILE, bytes)?;
            true
        }
        None => false,
    };
    // Stamped (and their paths resolved) after the build, so the build itself runs in the same
    // state whatever the libraries and wherever they live. One `stat` each: the daemon hashes a
    // library only when its stamp moved since the probe.
    let stamp = |what: &str, path: &Path| {
        LoadedLibrary::at(path)
            .map_err(|e| format!("cannot stat the {what} {}: {e}", path.display()))
    };
    let library = stamp("TensorRT library", toolchain.library_path())?;
    let parser_library = stamp("ONNX parser library", toolchain.parser_library_path())?;
    Ok(WorkerDone {
        plan_size: output.plan_size,
        plan_blake3: output.plan_digest.to_hex().to_string(),
        toolchain_version: toolchain.version().to_string(),
        library,
        parser_library,
        layer_info: output.layer_info_json.is_some(),
        layer_info_error: output.layer_info_error,
        timing_cache,
        layer_listing: listing.is_some(),
        layers_by_precision,
        transformed_model,
        gpu_context,
    })
}

/// Checks, and for fp16/bf16 converts, the model as the variant's precision needs
/// ([`prepare_model`]), saying what it did in the build log; returns the file to build.
fn prepare(variant: &manifest_schema::Variant, reporter: &mut Reporter) -> Result<PathBuf, String> {
    prepare_model(
        variant,
        Path::new(MODEL_FILE),
        Path::new(TRANSFORMED_MODEL_FILE),
        &mut |severity, text| {
            reporter.send(&WorkerMessage::Log {
                severity: severity.into(),
                text,
            });
        },
    )
}

/// Counts the engine's layers by precision, from the inspector's JSON where there is one, else
/// from the builder's listing, and says the result in the build log: the line that shows an
/// fp16 request really gave fp16 layers.
fn layer_precisions(
    json: Option<&str>,
    listing: Option<&str>,
    reporter: &mut Reporter,
) -> BTreeMap<String, u64> {
    let report = match (json, listing) {
        (Some(json), _) => trt_ffi::LayerPrecisionReport::from_inspector_json(json)
            .map(|r| (r, "the engine inspector"))
            .map_err(|e| e.to_string()),
        (None, Some(listing)) => trt_ffi::LayerPrecisionReport::from_layer_listing(listing)
            .map(|r| (r, "the builder's layer listing"))
            .ok_or_else(|| "the builder's layer listing is unreadable".to_string()),
        (None, None) => return BTreeMap::new(),
    };
    let (severity, text, counts) = match report {
        Ok((report, source)) => (
            "info",
            format!("layers by precision ({source}): {report}"),
            report.by_precision,
        ),
        Err(e) => (
            "warning",
            format!("no layer precision report: {e}"),
            BTreeMap::new(),
        ),
    };
    reporter.send(&WorkerMessage::Log {
        severity: severity.into(),
        text,
    });
    counts
}

fn write(path: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}"))
}

/// Streams TensorRT's log (Info and above) and progress to the daemon, one flushed line each.
struct Reporter {
    out: File,
    /// Steps each running phase announced, so step events can carry the total. (A BTreeMap:
    /// nothing in a worker depends on a random seed.)
    steps: BTreeMap<String, i32>,
    /// Set once a write failed: nobody is listening, so the build is cancelled.
    broken: bool,
}

impl Reporter {
    fn new(out: File) -> Reporter {
        Reporter {
            out,
            steps: BTreeMap::new(),
            broken: false,
        }
    }

    /// Writes one message line; false if the daemon can no longer be reached.
    fn send(&mut self, message: &WorkerMessage) -> bool {
        if self.broken {
            return false;
        }
        let mut line = protocol::encode(message);
        line.push('\n');
        // One write per line (the File is unbuffered), so lines from TensorRT's threads never
        // interleave.
        if self.out.write_all(line.as_bytes()).is_err() {
            self.broken = true;
        }
        !self.broken
    }
}

impl BuildObserver for Reporter {
    fn log(&mut self, message: &LogMessage) {
        // Verbose output is huge and only useful when debugging TensorRT itself.
        if message.severity <= trt_ffi::Severity::Info {
            self.send(&WorkerMessage::Log {
                severity: message.severity.to_string(),
                text: message.text.clone(),
            });
        }
    }

    fn progress(&mut self, event: &ProgressEvent<'_>) -> Control {
        let message = match *event {
            ProgressEvent::PhaseStart {
                phase,
                parent,
                steps,
            } => {
                self.steps.insert(phase.to_owned(), steps);
                WorkerMessage::Progress {
                    kind: ProgressKind::PhaseStart,
                    phase: phase.to_owned(),
                    parent: parent.map(str::to_owned),
                    step: 0,
                    steps,
                }
            }
            ProgressEvent::Step { phase, step } => WorkerMessage::Progress {
                kind: ProgressKind::Step,
                phase: phase.to_owned(),
                parent: None,
                step,
                steps: self.steps.get(phase).copied().unwrap_or(0),
            },
            ProgressEvent::PhaseFinish { phase } => {
                let steps = self.steps.remove(phase).unwrap_or(0);
                WorkerMessage::Progress {
                    kind: ProgressKind::PhaseFinish,
                    phase: phase.to_owned(),
                    parent: None,
                    step: steps,
                    steps,
                }
            }
        };
        if self.send(&message) {
            Control::Continue
        } else {
            Control::Cancel
        }
    }
}
