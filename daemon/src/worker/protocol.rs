//! The contract between the daemon and a build worker: the scratch-directory layout, the task
//! file, and the JSON lines the worker prints on stdout.
//!
//! Everything the worker needs comes through `task.json` in its working directory, because
//! argv, environment and cwd length must not vary between builds (plans are byte-identical only
//! when the process layout is, see RESEARCH.md "Determinism of TensorRT-RTX builds").

use std::collections::BTreeMap;
use std::path::PathBuf;

use manifest_schema::Flavour;
use serde::{Deserialize, Serialize};

use crate::file_stamp::LoadedLibrary;

/// The task file, relative to the worker's working directory.
pub const TASK_FILE: &str = "task.json";
/// The model, under this fixed name whatever the user called it.
pub const MODEL_FILE: &str = "inputs/model.onnx";
/// The directory holding the model and its external-data files.
pub const INPUTS_DIR: &str = "inputs";
/// The directory the worker writes its outputs to (created, empty, by the daemon).
pub const OUT_DIR: &str = "out";
/// The engine plan.
pub const PLAN_FILE: &str = "out/engine.plan";
/// The engine inspector's layer JSON, when asked for and TensorRT could produce it.
pub const LAYERS_FILE: &str = "out/layers.json";
/// The layer listing the builder printed while building, when it printed one.
pub const LAYER_LISTING_FILE: &str = "out/layers.txt";
/// The timing cache after the build, when the variant records one.
pub const TIMING_CACHE_FILE: &str = "out/timing-cache.bin";
/// Where the worker writes the model after an fp16/bf16 conversion, and builds from it (in
/// `out/`, so the daemon publishes it for inspection).
pub const TRANSFORMED_MODEL_FILE: &str = "out/model.transformed.onnx";

/// Longest stdout/stderr line the daemon keeps, in bytes (without the newline); the rest of a
/// longer line is dropped so a buggy worker cannot exhaust the daemon's memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Severity the daemon gives to worker stderr lines and to stdout lines that are not protocol
/// messages.
pub const WORKER_SEVERITY: &str = "worker";

/// What one worker process builds, written by the daemon as `task.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerTask {
    /// The toolchain flavour the daemon scheduled this build for; must be the variant's.
    pub flavour: Flavour,
    /// Directory holding the TensorRT libraries (None: the usual search path). The daemon
    /// passes its build root's fixed-length symlink, never the real install directory.
    pub library_dir: Option<PathBuf>,
    /// The manifest's name in diagnostics. Its model path is ignored: the worker reads
    /// `inputs/model.onnx`.
    pub manifest_path: String,
    /// The manifest text. The daemon sends the canonical single-engine rendering of the
    /// variant (`task_manifest`), never the user's text: equal action keys, equal task bytes.
    pub manifest_toml: String,
    /// Name of the engine variant to build.
    pub variant: String,
    /// Whether to run the engine inspector and write `out/layers.json`.
    pub layer_info: bool,
}

/// One line of JSON on the worker's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// A TensorRT log message (Info and above).
    Log {
        /// TensorRT's severity ("internal error", "error", "warning", "info").
        severity: String,
        /// The message text.
        text: String,
    },
    /// An event of TensorRT's progress monitor.
    Progress {
        /// Which kind of event.
        kind: ProgressKind,
        /// The phase it concerns.
        phase: String,
        /// The enclosing phase, for a nested phase start.
        parent: Option<String>,
        /// Steps completed so far (0 at the start, `steps` at the finish).
        step: i32,
        /// Steps the phase announced (0 when unknown).
        steps: i32,
    },
    /// The build succeeded; always the last line.
    Done(WorkerDone),
    /// The build failed; always the last line.
    Failed {
        /// What went wrong, for a person: manifest diagnostics or TensorRT's message.
        message: String,
    },
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

/// What a successful worker reports about its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDone {
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
    /// Whether the model was converted (fp16/bf16) into `out/model.transformed.onnx`.
    #[serde(default)]
    pub transformed_model: bool,
    /// What the worker's CUDA context got on the build GPU (Enterprise builds only).
    #[serde(default)]
    pub gpu_context: Option<Box<trtfarm_gpu::context::ContextReport>>,
}

/// Marks text cut short to fit a line.
const TRUNCATED: &str = " [truncated]";

/// Serialises `message` as one JSON line (without the newline) of at most [`MAX_LINE`] bytes,
/// shortening its text if needed, so the daemon always receives a parseable message.
pub fn encode(message: &WorkerMessage) -> String {
    let mut message = message.clone();
    loop {
        let line = serde_json::to_string(&message).expect("worker messages always serialise");
        // Escaping can make text up to six times longer; halving converges within a few rounds.
        // Once nothing is left to shorten the line goes out as it is: the daemon then truncates
        // it and keeps it as a log line.
        if line.len() <= MAX_LINE || !halve_texts(&mut message) {
            return line;
        }
    }
}

/// Halves every free-text field of `message`; false when none has anything left to cut.
fn halve_texts(message: &mut WorkerMessage) -> bool {
    let texts: Vec<&mut String> = match message {
        WorkerMessage::Log { severity, text } => vec![severity, text],
        WorkerMessage::Failed { message } => vec![message],
        WorkerMessage::Progress { phase, parent, .. } => {
            let mut texts = vec![phase];
            texts.extend(parent.as_mut());
            texts
        }
        WorkerMessage::Done(done) => {
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

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let done = WorkerMessage::Done(WorkerDone {
            plan_size: 3,
            plan_blake3: "ab".into(),
            toolchain_version: "1.7.1.116".into(),
            library: crate::file_stamp::fake_library("libtensorrt_rtx.so.1"),
            parser_library: crate::file_stamp::fake_library("libtensorrt_onnxparser_rtx.so.1"),
            layer_info: false,
            layer_info_error: Some("no GPU".into()),
            timing_cache: false,
            layer_listing: false,
            layers_by_precision: Default::default(),
            transformed_model: true,
            gpu_context: None,
        });
        let line = encode(&done);
        assert!(
            line.starts_with(r#"{"type":"done","plan_size":3"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<WorkerMessage>(&line).unwrap(), done);

        let progress = WorkerMessage::Progress {
            kind: ProgressKind::PhaseStart,
            phase: "Building engine".into(),
            parent: None,
            step: 0,
            steps: 4,
        };
        let line = encode(&progress);
        assert!(line.contains(r#""kind":"phase_start""#), "{line}");
        assert_eq!(
            serde_json::from_str::<WorkerMessage>(&line).unwrap(),
            progress
        );
    }

    #[test]
    fn long_text_is_shortened_to_fit_one_line() {
        // Control characters escape to six bytes each: the worst case for the line length.
        let message = WorkerMessage::Failed {
            message: "\u{1}é".repeat(MAX_LINE),
        };
        let line = encode(&message);
        assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
        match serde_json::from_str::<WorkerMessage>(&line).unwrap() {
            WorkerMessage::Failed { message } => {
                assert!(message.ends_with(TRUNCATED));
                assert!(message.starts_with("\u{1}é\u{1}é"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn short_text_is_untouched() {
        let message = WorkerMessage::Log {
            severity: "warning".into(),
            text: "x".repeat(1000),
        };
        let line = encode(&message);
        assert_eq!(
            serde_json::from_str::<WorkerMessage>(&line).unwrap(),
            message
        );
    }

    #[test]
    fn task_rejects_unknown_fields() {
        let json = r#"{"flavour":"tensorrt-rtx","library_dir":null,"manifest_path":"a/engine.toml",
            "manifest_toml":"","variant":"fp32","layer_info":false,"extra":1}"#;
        let error = serde_json::from_str::<WorkerTask>(json).unwrap_err();
        assert!(error.to_string().contains("extra"), "{error}");
    }
}
