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

/// Loads the toolchain `requirement` names (from `lib_dir` when given) and checks that its
/// version satisfies the requirement.
pub fn resolve(
    requirement: &ToolchainRequirement,
    lib_dir: Option<&Path>,
) -> anyhow::Result<Toolchain> {
    let toolchain = Toolchain::load(ffi_flavour(requirement.flavour), lib_dir)?;
    let loaded = toolchain.version();
    let version: Version = loaded.to_string().parse()?;
    anyhow::ensure!(
        requirement.matches(&version),
        "the manifest asks for `{requirement}`, but the {} found at {} is version {loaded}",
        toolchain.flavour(),
        toolchain.library_path().display(),
    );
    Ok(toolchain)
}
