//! Finding a loaded TensorRT toolchain that satisfies a manifest's requirement.

use std::path::Path;

use manifest_schema::{Flavour, ToolchainRequirement, Version};
use trt_ffi::Toolchain;

/// The trt-ffi flavour for a manifest flavour.
pub fn ffi_flavour(flavour: Flavour) -> trt_ffi::Flavour {
    match flavour {
        Flavour::TensorRtRtx => trt_ffi::Flavour::TensorRtRtx,
        Flavour::TensorRt => trt_ffi::Flavour::TensorRt,
    }
}

/// Loads the toolchain of `flavour` (from `lib_dir` when given).
pub fn load(flavour: Flavour, lib_dir: Option<&Path>) -> anyhow::Result<Toolchain> {
    Ok(Toolchain::load(ffi_flavour(flavour), lib_dir)?)
}

/// Fails unless the loaded `toolchain`'s version satisfies `requirement`.
pub fn check_version(
    toolchain: &Toolchain,
    requirement: &ToolchainRequirement,
) -> anyhow::Result<()> {
    let loaded = toolchain.version();
    let version: Version = loaded.to_string().parse()?;
    anyhow::ensure!(
        requirement.matches(&version),
        "the manifest asks for `{requirement}`, but the {} found at {} is version {loaded}",
        toolchain.flavour(),
        toolchain.library_path().display(),
    );
    Ok(())
}
