//! The contract between the daemon and `trtfarm-builder`, the program that runs TensorRT: the
//! scratch-directory layout, the task file, and the JSON lines the builder prints on stdout.
//!
//! Everything the builder needs comes through `task.json` in its working directory, because
//! argv, environment and cwd length must not vary between builds: TensorRT-RTX plans follow the
//! build process's heap layout (docs/architecture.md, "Reproducible plans"). The task carries a
//! ready model (already converted for fp16/bf16) and a typed build configuration, so the
//! builder parses no manifest and transforms no model: it loads TensorRT, builds and reports.

pub mod stamp;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::stamp::LoadedLibrary;

/// The task file, relative to the builder's working directory.
pub const TASK_FILE: &str = "task.json";
/// The model to build, under this fixed name whatever the user called it.
pub const MODEL_FILE: &str = "inputs/model.onnx";
/// The directory holding the model and its external-data files.
pub const INPUTS_DIR: &str = "inputs";
/// A timing cache to start from, when the task says so.
pub const TIMING_CACHE_INPUT_FILE: &str = "inputs/timing-cache.bin";
/// The directory the builder writes its outputs to (created, empty, by the daemon).
pub const OUT_DIR: &str = "out";
/// The engine plan.
pub const PLAN_FILE: &str = "out/engine.plan";
/// The engine inspector's layer JSON, when asked for and TensorRT could produce it.
pub const LAYERS_FILE: &str = "out/layers.json";
/// The layer listing the builder printed while building, when it printed one.
pub const LAYER_LISTING_FILE: &str = "out/layers.txt";
/// The timing cache after the build, when the variant records one.
pub const TIMING_CACHE_FILE: &str = "out/timing-cache.bin";

/// What one builder process builds, written by the daemon as `task.json`: the same bytes for
/// every build of one action key on any daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderTask {
    /// The toolchain flavour to load.
    pub flavour: trt_ffi::Flavour,
    /// Directory holding the TensorRT libraries (None: the usual search path). The daemon
    /// passes its build root's fixed-length symlink, never the real install directory.
    pub library_dir: Option<PathBuf>,
    /// The exact builder configuration.
    pub config: trt_ffi::BuildConfig,
    /// Whether to start from `inputs/timing-cache.bin` (Enterprise only).
    pub timing_cache_input: bool,
    /// The MPS share an Enterprise build must run under (checked in the CUDA context before
    /// building); `None` for the whole GPU or an RTX build.
    pub mps_percentage: Option<u8>,
}

/// Longest stdout/stderr line the daemon keeps, in bytes (without the newline); the rest of a
/// longer line is dropped so a buggy builder cannot exhaust the daemon's memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Severity the daemon gives to builder stderr lines and to stdout lines that are not protocol
/// messages.
pub const BUILDER_SEVERITY: &str = "builder";

/// One line of JSON on the builder's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuilderMessage {
    /// A TensorRT log message (Info and above).
    Log {
        /// TensorRT's severity ("internal error", "error", "warning", "info").
        severity: String,
        /// The message text.
        text: String,
    },
    /// An event of TensorRT's progress monitor.
    Progress(Progress),
    /// The build succeeded; always the last line.
    Done(BuilderDone),
    /// The build failed; always the last line.
    Failed {
        /// What went wrong, for a person: manifest diagnostics or TensorRT's message.
        message: String,
    },
}

/// An event of TensorRT's progress monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Which kind of event.
    pub kind: ProgressKind,
    /// The phase it concerns.
    pub phase: String,
    /// The enclosing phase, for a nested phase start.
    pub parent: Option<String>,
    /// Steps completed so far (0 at the start, `steps` at the finish).
    pub step: i32,
    /// Steps the phase announced (0 when unknown).
    pub steps: i32,
}

/// Which progress-monitor callback an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressKind {
    /// A phase began.
    PhaseStart,
    /// A step of a phase completed.
    Step,
    /// A phase ended.
    PhaseFinish,
}

/// What a successful build reports about its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuilderDone {
    /// Size of `out/engine.plan` in bytes.
    pub plan_size: u64,
    /// blake3 of `out/engine.plan`, 64 lowercase hex digits.
    pub plan_blake3: String,
    /// Full version of the toolchain that built it ("1.7.1.116").
    pub toolchain_version: String,
    /// The builder library it loaded, stamped after the build (the daemon compares the stamp
    /// with its probe's, and hashes the file only when they differ).
    pub library: LoadedLibrary,
    /// The ONNX parser library it loaded.
    pub parser_library: LoadedLibrary,
    /// Whether `out/layers.json` was written.
    pub layer_info: bool,
    /// Why there is no layer JSON although it was asked for.
    pub layer_info_error: Option<String>,
    /// Whether `out/timing-cache.bin` was written.
    pub timing_cache: bool,
    /// Whether `out/layers.txt` (the builder's layer listing) was written.
    #[serde(default)]
    pub layer_listing: bool,
    /// Layers per precision, from the layer JSON or else the listing; empty without either.
    #[serde(default)]
    pub layers_by_precision: BTreeMap<String, u64>,
    /// What the builder's CUDA context got on the build GPU (Enterprise builds only).
    #[serde(default)]
    pub gpu_context: Option<Box<trtfarm_gpu::context::ContextReport>>,
}

/// Marks text cut short to fit a line.
const TRUNCATED: &str = " [truncated]";

/// Serialises `message` as one JSON line (without the newline) of at most [`MAX_LINE`] bytes,
/// shortening its text if needed, so the daemon always receives a parseable message.
pub fn encode(message: &BuilderMessage) -> String {
    let mut message = message.clone();
    loop {
        let line = serde_json::to_string(&message).expect("builder messages always serialise");
        // Escaping can make text up to six times longer; halving converges within a few rounds.
        // Once nothing is left to shorten the line goes out as it is: the daemon then truncates
        // it and keeps it as a log line.
        if line.len() <= MAX_LINE || !halve_texts(&mut message) {
            return line;
        }
    }
}

/// Halves every free-text field of `message`; false when none has anything left to cut.
fn halve_texts(message: &mut BuilderMessage) -> bool {
    let texts: Vec<&mut String> = match message {
        BuilderMessage::Log { severity, text } => vec![severity, text],
        BuilderMessage::Failed { message } => vec![message],
        BuilderMessage::Progress(Progress { phase, parent, .. }) => {
            let mut texts = vec![phase];
            texts.extend(parent.as_mut());
            texts
        }
        BuilderMessage::Done(done) => {
            let mut texts = vec![&mut done.toolchain_version];
            texts.extend(done.layer_info_error.as_mut());
            texts
        }
    };
    let mut cut = false;
    for text in texts {
        if text.len() > 2 * TRUNCATED.len() {
            let keep = floor_char_boundary(text, text.len().min(MAX_LINE) / 2);
            text.truncate(keep);
            text.push_str(TRUNCATED);
            cut = true;
        }
    }
    cut
}

/// The largest index ≤ `index` that starts a character of `text`.
pub(crate) fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library stamp for tests that only pass stamps along (no such file exists).
    fn fake_library(name: &str) -> LoadedLibrary {
        LoadedLibrary {
            path: PathBuf::from("/opt/trt/lib").join(name),
            stamp: crate::stamp::FileStamp {
                device: 1,
                inode: 2,
                size: 3,
                mtime_ns: 4,
                ctime_ns: 5,
            },
        }
    }

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let done = BuilderMessage::Done(BuilderDone {
            plan_size: 3,
            plan_blake3: "ab".into(),
            toolchain_version: "1.7.1.116".into(),
            library: fake_library("libtensorrt_rtx.so.1"),
            parser_library: fake_library("libtensorrt_onnxparser_rtx.so.1"),
            layer_info: false,
            layer_info_error: Some("no GPU".into()),
            timing_cache: false,
            layer_listing: false,
            layers_by_precision: Default::default(),
            gpu_context: None,
        });
        let line = encode(&done);
        assert!(
            line.starts_with(r#"{"type":"done","plan_size":3"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<BuilderMessage>(&line).unwrap(), done);

        let progress = BuilderMessage::Progress(Progress {
            kind: ProgressKind::PhaseStart,
            phase: "Building engine".into(),
            parent: None,
            step: 0,
            steps: 4,
        });
        let line = encode(&progress);
        assert!(line.contains(r#""kind":"phase_start""#), "{line}");
        assert_eq!(
            serde_json::from_str::<BuilderMessage>(&line).unwrap(),
            progress
        );
    }

    #[test]
    fn long_text_is_shortened_to_fit_one_line() {
        // Control characters escape to six bytes each: the worst case for the line length.
        let message = BuilderMessage::Failed {
            message: "\u{1}é".repeat(MAX_LINE),
        };
        let line = encode(&message);
        assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
        match serde_json::from_str::<BuilderMessage>(&line).unwrap() {
            BuilderMessage::Failed { message } => {
                assert!(message.ends_with(TRUNCATED));
                assert!(message.starts_with("\u{1}é\u{1}é"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn short_text_is_untouched() {
        let message = BuilderMessage::Log {
            severity: "warning".into(),
            text: "x".repeat(1000),
        };
        let line = encode(&message);
        assert_eq!(
            serde_json::from_str::<BuilderMessage>(&line).unwrap(),
            message
        );
    }

    #[test]
    fn task_round_trips_and_rejects_unknown_fields() {
        let task = BuilderTask {
            flavour: trt_ffi::Flavour::TensorRtRtx,
            library_dir: Some(PathBuf::from(
                "/tmp/trtfarm-0123456789abcdef/lib-tensorrt-rtx",
            )),
            config: trt_ffi::BuildConfig {
                compute_capabilities: vec![trt_ffi::ComputeCapability::new(8, 6)],
                builder_optimization_level: Some(3),
                ..trt_ffi::BuildConfig::default()
            },
            timing_cache_input: false,
            mps_percentage: None,
        };
        let json = serde_json::to_string(&task).unwrap();
        assert!(json.contains(r#""flavour":"tensorrt-rtx""#), "{json}");
        assert_eq!(serde_json::from_str::<BuilderTask>(&json).unwrap(), task);

        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["extra"] = 1.into();
        let error = serde_json::from_value::<BuilderTask>(value).unwrap_err();
        assert!(error.to_string().contains("extra"), "{error}");
    }
}
