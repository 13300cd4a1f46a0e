//! Finding a loaded TensorRT toolchain that satisfies a manifest's requirement.

use std::path::Path;

use manifest_schema::{Flavour, ToolchainRequirement};
use trt_ffi::Toolchain;

/// Loads the toolchain of `flavour` (from `lib_dir` when given).
pub fn load(flavour: Flavour, lib_dir: Option<&Path>) -> anyhow::Result<Toolchain> {
    Ok(Toolchain::load(flavour, lib_dir)?)
}

/// Fails unless the loaded `toolchain`'s version satisfies `requirement`.
pub fn check_version(
    toolchain: &Toolchain,
    requirement: &ToolchainRequirement,
) -> anyhow::Result<()> {
    let loaded = toolchain.version();
    anyhow::ensure!(
        requirement.matches(&loaded),
        "the manifest asks for `{requirement}`, but the {} found at {} is version {loaded}",
        toolchain.flavour().product_name(),
        toolchain.library_path().display(),
    );
    Ok(())
}
