//! The `engine.toml` manifest: parsing, validation with located errors, resolution of defaults
//! into engine variants, the canonical encoding that feeds the action key, and the JSON Schema.
//!
//! The format is specified in the manifest reference of the repository's README.md. Data flows `raw` (serde types, as written) →
//! `resolve`/`validate`/`profiles` (checks, defaults) → `model` (the typed result).

mod autocast;
mod canonical;
mod diagnostic;
mod enums;
mod inputs;
mod model;
mod model_inputs;
mod profiles;
mod raw;
mod render;
mod resolve;
mod schema;
mod size;
mod suggest;
mod toml_error;
mod toolchain;
mod validate;

use std::path::Path;

pub use canonical::CANONICAL_ENCODING_VERSION;
pub use diagnostic::{Diagnostic, ManifestErrors, Severity};
pub use enums::{
    Flavour, HardwareCompatibility, Precision, RefitMode, TacticSource, TilingLevel,
    TimingCachePolicy, UnknownValue,
};
pub use inputs::hash_file;
pub use model::{
    Autocast, Blake3Digest, BuildSettings, Compatibility, ComputeCapability,
    ComputeCapabilityParseError, DigestParseError, GpuSelector, GpuSelectorParseError, Manifest,
    MemoryPools, Model, PluginLibrary, Profile, ShapeRange, Variant, Weights,
};
pub use model_inputs::{ModelDim, ModelInput};
pub use resolve::{IMPLICIT_VARIANT_NAME, SUPPORTED_SCHEMA_VERSION};
pub use schema::{json_schema, json_schema_text};
pub use toolchain::{
    Comparator, ToolchainParseError, ToolchainRequirement, Version, VersionOp, VersionReq,
};

use diagnostic::SourceFile;

/// Reads, parses and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => {
            let source = SourceFile::new(path, "");
            let diagnostic = source.error(0..0, format!("cannot read manifest: {e}"), None);
            Err(ManifestErrors::new(source, vec![diagnostic]))
        }
    }
}

/// Parses and validates manifest text. `path` is only used in messages and to resolve the
/// relative paths inside the manifest; the filesystem is not touched (see
/// [`Manifest::check_inputs`]).
pub fn parse(source: &str, path: &Path) -> Result<Manifest, ManifestErrors> {
    let file = SourceFile::new(path, source);
    let raw: raw::RawManifest = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            let diagnostic = toml_error::toml_diagnostic(&file, &e);
            return Err(ManifestErrors::new(file, vec![diagnostic]));
        }
    };
    resolve::resolve(raw, file.clone())
        .map_err(|diagnostics| ManifestErrors::new(file, diagnostics))
}
