//! The `engine.toml` manifest: parsing, validation with located errors, resolution of defaults
//! into engine variants, the canonical encoding that feeds the action key, and the JSON Schema.
//!
//! The format is specified in the manifest reference, docs/manifest.md. Data flows `raw` (serde types, as written) →
//! `resolve`/`validate`/`profiles` (checks, defaults) → `model` (the typed result).

mod autocast;
mod autocast_ops_check;
mod canonical;
mod diagnostic;
mod enums;
mod inputs;
pub mod limits;
mod model;
mod model_inputs;
mod profile_suggestion;
mod profiles;
mod raw;
mod render;
mod resolve;
mod schema;
mod setting_place;
mod size;
mod suggest;
mod toml_error;
mod toolchain;
mod toolchain_check;
mod validate;

use std::path::Path;

pub use autocast_ops_check::ModelNode;
pub use canonical::CANONICAL_ENCODING_VERSION;
pub use diagnostic::{Diagnostic, ManifestErrors, Severity};
pub use enums::{
    Flavour, HardwareCompatibility, Precision, RefitMode, TacticSource, TilingLevel,
    TimingCachePolicy, UnknownValue,
};
pub use inputs::{INPUT_ROOTS_ENV, extra_input_roots, hash_file};
pub use model::{
    Autocast, Blake3Digest, BuildSettings, Compatibility, ComputeCapability, GpuSelector,
    GpuSelectorParseError, Manifest, MemoryPools, Model, PluginLibrary, Profile, ShapeRange,
    Variant, Weights,
};
pub use model_inputs::{ModelDim, ModelInput};
pub use profile_suggestion::{suggested_profile, toml_key};
pub use resolve::{IMPLICIT_VARIANT_NAME, SUPPORTED_SCHEMA_VERSION};
pub use schema::{json_schema, json_schema_text};
pub use setting_place::SettingPlace;
pub use toolchain::{
    Comparator, RequiredVersion, ToolchainParseError, ToolchainRequirement, Version, VersionOp,
    VersionReq,
};
pub use toolchain_check::AvailableToolchain;
pub use trtfarm_types::DigestError;

use diagnostic::SourceFile;

/// Reads, parses and validates the manifest at `path`. Reads at most one byte more than
/// [`limits::MAX_MANIFEST_BYTES`], so a path naming a device or a huge file is refused without
/// being read whole.
pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|file| {
        file.take(limits::MAX_MANIFEST_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
    });
    let text = read.and_then(|_| {
        if bytes.len() > limits::MAX_MANIFEST_BYTES {
            return Ok(None);
        }
        String::from_utf8(std::mem::take(&mut bytes))
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    });
    match text {
        Ok(Some(text)) => parse(&text, path),
        Ok(None) => Err(too_large(path, None)),
        Err(e) => {
            let source = SourceFile::new(path, "");
            let diagnostic = source.error(0..0, format!("cannot read manifest: {e}"), None);
            Err(ManifestErrors::new(source, vec![diagnostic]))
        }
    }
}

/// Parses and validates manifest text. `path` is only used in messages and to resolve the
/// relative paths inside the manifest; the filesystem is not touched (see
/// [`Manifest::check_inputs`]). Text over [`limits::MAX_MANIFEST_BYTES`] is refused unparsed.
pub fn parse(source: &str, path: &Path) -> Result<Manifest, ManifestErrors> {
    if source.len() > limits::MAX_MANIFEST_BYTES {
        return Err(too_large(path, Some(source.len())));
    }
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

/// The error for a manifest over [`limits::MAX_MANIFEST_BYTES`], of `len` bytes when known.
fn too_large(path: &Path, len: Option<usize>) -> ManifestErrors {
    let source = SourceFile::new(path, "");
    let diagnostic = source.error(
        0..0,
        match len {
            Some(len) => format!(
                "the manifest is {len} bytes, over the limit of {} bytes (1 MiB)",
                limits::MAX_MANIFEST_BYTES
            ),
            None => format!(
                "the manifest is larger than the limit of {} bytes (1 MiB)",
                limits::MAX_MANIFEST_BYTES
            ),
        },
        Some(
            "real manifests are a few KiB: check that this is the right file; split a very \
             large fan-out of engines over several manifests"
                .to_string(),
        ),
    );
    ManifestErrors::new(source, vec![diagnostic])
}
