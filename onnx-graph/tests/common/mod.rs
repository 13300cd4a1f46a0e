//! Helpers shared by the integration tests: the set-up Python with the `onnx` package.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python that has `onnx`; a missing one fails the test (CI installs it), never skips it.
pub fn python() -> PathBuf {
    let python = onnx_graph::deps::python();
    match python {
        Some(python) if python.is_file() => python,
        other => panic!(
            "no Python with the `onnx` package at {}: run scripts/setup or set {}",
            other.map_or_else(
                || "(no location: $HOME is not set)".into(),
                |p| p.display().to_string()
            ),
            onnx_graph::deps::PYTHON_ENV
        ),
    }
}

/// Runs `script` with `args` under [`python()`] and returns its standard output, panicking with
/// its standard error when it fails.
pub fn run_python(script: &str, args: &[&Path]) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("cannot start the set-up Python");
    assert!(
        output.status.success(),
        "python failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python printed non-UTF-8")
}
