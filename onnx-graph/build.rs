//! Generates the ONNX protobuf types (`onnx_graph::proto`) from the `onnx.proto` that
//! `scripts/setup` took from the pinned `onnx` wheel. Nothing of ONNX's is committed here.

use std::path::Path;
use std::process::ExitCode;

#[allow(dead_code)] // build.rs needs only the proto location of this shared module
#[path = "src/deps.rs"]
mod deps;

fn main() -> ExitCode {
    for var in deps::ENV_VARS {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/deps.rs");

    let Some(proto) = deps::onnx_proto().filter(|path| path.is_file()) else {
        let looked = deps::onnx_proto()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "(no location: neither $HOME nor $XDG_CACHE_HOME is set)".into());
        println!(
            "cargo::error=onnx-graph needs onnx.proto from the `onnx` Python package and did not find it at {looked}. \
             Run scripts/setup (it installs the pinned `onnx` wheel and links its onnx.proto there), \
             or set {}=/path/to/onnx.proto.",
            deps::ONNX_PROTO_ENV
        );
        return ExitCode::FAILURE;
    };
    println!("cargo::rerun-if-changed={}", proto.display());

    let include = proto.parent().unwrap_or(Path::new("."));
    if let Err(err) = prost_build::Config::new().compile_protos(&[&proto], &[include]) {
        println!(
            "cargo::error=cannot generate Rust types from {}: {err}",
            proto.display()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
