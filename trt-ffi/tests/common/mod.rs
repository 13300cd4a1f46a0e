//! Locates what the TensorRT tests need. Anything missing is a test failure with a message
//! saying how to fix it: CI always runs scripts/setup, so a silent skip would hide breakage.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use trt_ffi::{BuildObserver, Control, Flavour, LogMessage, ProgressEvent, Toolchain};

/// The set-up deps directory, found the way every trtfarm crate finds it (`onnx_graph::deps`).
fn deps_dir() -> PathBuf {
    onnx_graph::deps::deps_dir()
        .expect("HOME or XDG_CACHE_HOME must be set to find the trtfarm cache")
}

/// The TensorRT-RTX library directory; panics with instructions if it is missing.
pub fn rtx_lib_dir() -> PathBuf {
    onnx_graph::deps::rtx_lib_dir().unwrap_or_else(|e| panic!("{e}"))
}

/// The TensorRT-RTX toolchain from `rtx_lib_dir`.
pub fn rtx() -> Toolchain {
    let dir = rtx_lib_dir();
    Toolchain::load(Flavour::TensorRtRtx, Some(&dir))
        .unwrap_or_else(|e| panic!("loading TensorRT-RTX from {}: {e}", dir.display()))
}

/// One of the tiny models from the onnx wheel (e.g. "squeezenet").
pub fn light_model(name: &str) -> PathBuf {
    let dir = onnx_graph::deps::onnx_test_models().unwrap_or_else(deps_dir);
    let path = dir.join(format!("light_{name}.onnx"));
    assert!(
        path.is_file(),
        "test model {} missing. Run scripts/setup (or set TRTFARM_ONNX_TEST_MODELS).",
        path.display()
    );
    path
}

/// The Python interpreter of the set-up venv (onnx + tensorrt_rtx bindings).
pub fn python() -> PathBuf {
    let path = onnx_graph::deps::python().unwrap_or_else(deps_dir);
    assert!(
        path.is_file(),
        "Python venv missing at {}. Run scripts/setup (or set TRTFARM_PYTHON).",
        path.display()
    );
    path
}

/// Runs the venv's Python on a script with arguments; panics with its stderr on failure.
pub fn run_python(script: &Path, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn helper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/make_models.py")
}

/// A copy of light model `name` with a symbolic batch dimension "N", written into `dir`.
pub fn dynamic_light_model(name: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(format!("{name}_dynamic.onnx"));
    run_python(
        &helper_script(),
        &[
            "dynamic".as_ref(),
            light_model(name).as_os_str(),
            dst.as_os_str(),
        ],
    );
    dst
}

/// A small generated model: inputs `a`, `b` of shape [N, 3, 32, 32] sharing "N".
pub fn twin_model(dir: &Path) -> PathBuf {
    let dst = dir.join("twin.onnx");
    run_python(&helper_script(), &["twin".as_ref(), dst.as_os_str()]);
    dst
}

/// A well-formed model whose node "mystery" uses an operator TensorRT does not know.
pub fn unknown_op_model(dir: &Path) -> PathBuf {
    let dst = dir.join("unknown_op.onnx");
    run_python(&helper_script(), &["unknown_op".as_ref(), dst.as_os_str()]);
    dst
}

/// Records every callback; can cancel at the first step of a given phase number.
#[derive(Default)]
pub struct Recorder {
    /// Log messages seen.
    pub log: Vec<LogMessage>,
    /// Phase starts seen, with step counts.
    pub phases: Vec<(String, i32)>,
    /// Steps seen.
    pub steps: usize,
    /// Cancel at the first step after this many steps (None: never).
    pub cancel_after_steps: Option<usize>,
    /// Whether a cancel was answered.
    pub cancelled: bool,
}

impl BuildObserver for Recorder {
    fn log(&mut self, message: &LogMessage) {
        self.log.push(message.clone());
    }

    fn progress(&mut self, event: &ProgressEvent<'_>) -> Control {
        match *event {
            ProgressEvent::PhaseStart { phase, steps, .. } => {
                self.phases.push((phase.to_owned(), steps))
            }
            ProgressEvent::Step { .. } => {
                self.steps += 1;
                if self.cancel_after_steps.is_some_and(|n| self.steps > n) {
                    self.cancelled = true;
                    return Control::Cancel;
                }
            }
            ProgressEvent::PhaseFinish { .. } => {}
        }
        Control::Continue
    }
}

/// blake3 of a file.
pub fn file_digest(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).expect("read file"))
}
