//! `trtfarm-builder`: builds the one engine its `task.json` describes and reports on stdout, one
//! JSON line per message (`trtfarm_build_protocol`).
//!
//! The daemon starts one per build with a fixed argv, environment, stack limit and cwd length,
//! and with address-space randomisation off: TensorRT-RTX numbers its objects in heap order,
//! so a plan is byte-identical only when the process's allocations are. That is why this
//! program is separate from the daemon and does so little: it gets a model already converted
//! and a typed configuration, loads TensorRT, builds and writes the plan. Its allocator is
//! mimalloc for the whole process (TensorRT's own allocations included), which keeps plans
//! identical even when other processes load the CPUs. Its digest is part of every action key,
//! so it should change only when what it does changes.
//!
//! `trtfarm-builder build` builds the task in the working directory; `trtfarm-builder
//! install-shims DIR` writes trt-ffi's shims under DIR (the daemon runs it
//! once at start-up, so no build ever writes a file before TensorRT runs).

mod gpu_context;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use trt_ffi::{BuildRequest, Flavour, OnnxSource, Toolchain};
use trtfarm_build_protocol::stamp::LoadedLibrary;
use trtfarm_build_protocol::{
    BuilderDone, BuilderMessage, BuilderTask, LAYER_LISTING_FILE, LAYERS_FILE, MODEL_FILE,
    PLAN_FILE, TASK_FILE, TIMING_CACHE_FILE, TIMING_CACHE_INPUT_FILE,
};

use report::Reporter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [command] if command == "build" => build_task(),
        [command, dir] if command == "install-shims" => install_shims(Path::new(dir)),
        [flag] if flag == "--version" => {
            println!("trtfarm-builder {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: trtfarm-builder build (in a scratch directory holding task.json; started \
                 by trtfarmd) | trtfarm-builder install-shims DIR"
            );
            ExitCode::from(2)
        }
    }
}

fn install_shims(dir: &Path) -> ExitCode {
    match trt_ffi::install_shims(dir) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: cannot install the TensorRT shims in {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs the build described by `./task.json`, streaming log and progress as JSON lines on
/// stdout and ending with `Done` (exit 0) or `Failed` (exit 1).
fn build_task() -> ExitCode {
    let mut reporter = Reporter::new(report::protocol_stdout());
    let message = match build(&mut reporter) {
        Ok(done) => BuilderMessage::Done(done),
        Err(message) => BuilderMessage::Failed { message },
    };
    let succeeded = matches!(message, BuilderMessage::Done(_));
    // A result nobody received is no success: the daemon would see no `Done` either.
    if reporter.send(&message) && succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Everything between reading the task and the final message.
fn build(reporter: &mut Reporter) -> Result<BuilderDone, String> {
    let text =
        std::fs::read_to_string(TASK_FILE).map_err(|e| format!("cannot read {TASK_FILE}: {e}"))?;
    let task: BuilderTask =
        serde_json::from_str(&text).map_err(|e| format!("{TASK_FILE} is malformed: {e}"))?;
    let mut config = task.config;
    if task.timing_cache_input {
        let cache = std::fs::read(TIMING_CACHE_INPUT_FILE)
            .map_err(|e| format!("cannot read {TIMING_CACHE_INPUT_FILE}: {e}"))?;
        config
            .timing_cache
            .get_or_insert_with(Default::default)
            .input = Some(cache);
    }
    let toolchain =
        Toolchain::load(task.flavour, task.library_dir.as_deref()).map_err(|e| e.to_string())?;
    // Enterprise builds time tactics on this GPU: check what the context gets before building.
    let gpu_context = match task.flavour {
        Flavour::TensorRt => Some(Box::new(gpu_context::check_build_gpu(
            task.mps_percentage,
            &mut |text| reporter.log("info", text),
        )?)),
        Flavour::TensorRtRtx => None,
    };

    let request = BuildRequest {
        onnx: OnnxSource::File(PathBuf::from(MODEL_FILE)),
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
    Ok(BuilderDone {
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
        gpu_context,
    })
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
    match report {
        Ok((report, source)) => {
            reporter.log("info", format!("layers by precision ({source}): {report}"));
            report.by_precision
        }
        Err(e) => {
            reporter.log("warning", format!("no layer precision report: {e}"));
            BTreeMap::new()
        }
    }
}

fn write(path: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}"))
}
