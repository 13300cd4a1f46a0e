//! Where `scripts/setup` put the third-party ONNX files: `onnx.proto`, the ONNX test models and
//! the Python environment with the `onnx` package.
//!
//! Every location can be overridden by its own environment variable (what
//! `scripts/setup --print-env` exports); otherwise it is found under the deps directory,
//! `$TRTFARM_DEPS_DIR`, else `$TRTFARM_CACHE_DIR/deps`, else
//! `${XDG_CACHE_HOME:-$HOME/.cache}/trtfarm/deps`, the same order `scripts/setup` uses.
//!
//! This file is also compiled into `build.rs`, so it uses `std` only.

use std::env;
use std::path::PathBuf;

/// Names the deps directory directly.
pub const DEPS_DIR_ENV: &str = "TRTFARM_DEPS_DIR";
/// Names trtfarm's cache directory; the deps directory is its `deps/`.
pub const CACHE_DIR_ENV: &str = "TRTFARM_CACHE_DIR";
/// Names the `onnx.proto` file the protobuf types are generated from.
pub const ONNX_PROTO_ENV: &str = "TRTFARM_ONNX_PROTO";
/// Names the directory of small real ONNX models (`onnx/backend/test/data/light`).
pub const ONNX_TEST_MODELS_ENV: &str = "TRTFARM_ONNX_TEST_MODELS";
/// Names the Python interpreter that has the `onnx` package.
pub const PYTHON_ENV: &str = "TRTFARM_PYTHON";

/// Every environment variable that can change a location returned here.
pub const ENV_VARS: [&str; 7] = [
    DEPS_DIR_ENV,
    CACHE_DIR_ENV,
    ONNX_PROTO_ENV,
    ONNX_TEST_MODELS_ENV,
    PYTHON_ENV,
    "XDG_CACHE_HOME",
    "HOME",
];

/// The value of an environment variable, treating an empty value as unset.
fn env_path(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The deps directory `scripts/setup` fills, or `None` when not even `$HOME` is known.
pub fn deps_dir() -> Option<PathBuf> {
    if let Some(dir) = env_path(DEPS_DIR_ENV) {
        return Some(dir);
    }
    if let Some(cache) = env_path(CACHE_DIR_ENV) {
        return Some(cache.join("deps"));
    }
    let cache_home =
        env_path("XDG_CACHE_HOME").or_else(|| env_path("HOME").map(|home| home.join(".cache")))?;
    Some(cache_home.join("trtfarm").join("deps"))
}

/// The `onnx.proto` of the pinned `onnx` wheel.
pub fn onnx_proto() -> Option<PathBuf> {
    env_path(ONNX_PROTO_ENV).or_else(|| Some(deps_dir()?.join("onnx").join("onnx.proto")))
}

/// The directory of small real ONNX models shipped inside the `onnx` wheel.
pub fn onnx_test_models() -> Option<PathBuf> {
    env_path(ONNX_TEST_MODELS_ENV).or_else(|| Some(deps_dir()?.join("onnx").join("light")))
}

/// The TensorRT-RTX libraries `scripts/setup` installed (`$TRTFARM_RTX_LIB_DIR`, else
/// `<deps>/lib/tensorrt-rtx`), for tests that build real engines; an error saying how to install
/// them when they are not there.
pub fn rtx_lib_dir() -> Result<PathBuf, String> {
    let dir = env_path("TRTFARM_RTX_LIB_DIR")
        .or_else(|| Some(deps_dir()?.join("lib").join("tensorrt-rtx")))
        .ok_or("HOME or XDG_CACHE_HOME must be set to find the trtfarm cache")?;
    if !dir.join("libtensorrt_rtx.so.1").is_file() {
        return Err(format!(
            "TensorRT-RTX is not installed: {} has no libtensorrt_rtx.so.1. Run scripts/setup \
             (or set TRTFARM_RTX_LIB_DIR).",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The Python interpreter of the set-up virtual environment (it has `onnx` installed).
pub fn python() -> Option<PathBuf> {
    env_path(PYTHON_ENV).or_else(|| Some(deps_dir()?.join("venv").join("bin").join("python")))
}
