//! The prepare step: the model as TensorRT will see it, checked and, for fp16/bf16, converted,
//! before any builder process starts.
//!
//! Strongly typed TensorRT takes precision from the model's types, not from builder flags, so
//! `precision = "fp16"` means converting the model (`onnx_graph::autocast`) and `int8`/`fp8`/
//! `fp4` mean a model that already carries Q/DQ nodes of that type. A conversion is a cached
//! step of its own: its key ([`crate::ingest::action_key::prepare_key`]) names the input files and the
//! exact conversion, its result is a blob in the store, and every variant that needs the same
//! conversion (fp16 for sm86, for sm89, portable) shares it. It never runs in the builder's
//! address space, whose heap layout decides the plan's bytes.

use std::path::{Path, PathBuf};

use manifest_schema::Variant;
use onnx_graph::autocast::{AUTOCAST_VERSION, AutocastOptions};
use serde::{Deserialize, Serialize};
use trtfarm_store::BlobDigest;

use crate::ingest::variant_config::{ModelPrecision, autocast_options, model_precision};

/// What the prepare step does to a variant's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preparation {
    /// fp32/tf32: checked, built as it is.
    CheckOnly,
    /// fp16/bf16: checked, then converted with these options.
    Autocast(AutocastOptions),
    /// int8/fp8/fp4: checked, and built only if it carries Q/DQ nodes of this type.
    ExplicitQuantization(&'static str),
}

impl Preparation {
    /// The preparation `variant`'s precision and `autocast` settings ask for.
    pub fn for_variant(variant: &Variant) -> Preparation {
        match model_precision(variant) {
            ModelPrecision::AsIs => Preparation::CheckOnly,
            ModelPrecision::Autocast(target) => {
                Preparation::Autocast(autocast_options(target, &variant.settings.autocast))
            }
            ModelPrecision::ExplicitQuantization(precision) => {
                Preparation::ExplicitQuantization(precision)
            }
        }
    }

    /// The conversion by name and pass version (`("fp16", 1)`), for keys; `None` when the model
    /// is built as it is.
    pub fn transform(&self) -> Option<(&'static str, u32)> {
        match self {
            Preparation::Autocast(options) => Some((options.target.name(), AUTOCAST_VERSION)),
            Preparation::CheckOnly | Preparation::ExplicitQuantization(_) => None,
        }
    }
}

/// One line of what the prepare step did, for the build log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareLogLine {
    /// "info", "warning" or "error".
    pub severity: String,
    /// The text.
    pub text: String,
}

/// Checks the model at `model` and prepares it as `preparation` says; returns the file to build:
/// `model` itself, or `converted` after a conversion (written there, with its weights beside it
/// as `<converted>.data` when they exceed the inline limit). Blocking. The log receives what
/// was done.
pub fn prepare_model(
    preparation: &Preparation,
    model: &Path,
    converted: &Path,
    log: &mut Vec<PrepareLogLine>,
) -> Result<PathBuf, String> {
    let mut say = |severity: &str, text: String| {
        log.push(PrepareLogLine {
            severity: severity.into(),
            text,
        })
    };
    // What TensorRT's parser would take quietly or misread (bytes that are no model, a graph
    // without outputs, dimensions past 32 bits, external data outside the model's directory or
    // past the end of its file) is refused here, in the model's own terms.
    if let Err(e) = onnx_graph::sanity::check_model(model) {
        let message = format!("the model failed trtfarm's check before parsing: {e}");
        say("error", message.clone());
        return Err(message);
    }
    match preparation {
        Preparation::CheckOnly => Ok(model.to_path_buf()),
        Preparation::Autocast(options) => {
            let target = options.target.name();
            let report = onnx_graph::autocast::autocast_file(model, converted, options)
                .map_err(|e| format!("cannot convert the model to {target}: {e}"))?;
            say(
                "info",
                format!(
                    "trtfarm autocast to {target}: {} weights and {} nodes converted, {} \
                     numerically sensitive nodes kept in fp32, {} casts inserted",
                    report.converted_initializers,
                    report.converted_nodes,
                    report.kept_fp32_nodes.len(),
                    report.inserted_casts
                ),
            );
            for warning in &report.clamped {
                say("warning", format!("trtfarm autocast: {warning}"));
            }
            Ok(converted.to_path_buf())
        }
        Preparation::ExplicitQuantization(precision) => {
            let summary = onnx_graph::quantization::quantization_summary(model)
                .map_err(|e| format!("cannot read the model: {e}"))?;
            onnx_graph::quantization::require_explicit_quantization(&summary, precision)?;
            Ok(model.to_path_buf())
        }
    }
}

/// A converted model in the store: what the action cache holds under its prepare key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreparedModel {
    /// The conversion, e.g. "fp16".
    pub transform: String,
    /// Its pass version.
    pub pass_version: u32,
    /// The converted model.
    pub model: StoredFile,
    /// Its external-data file, by the name the model refers to it with.
    pub external_data: Option<StoredFile>,
    /// What the conversion said.
    pub log: Vec<PrepareLogLine>,
}

/// One file in the store and its name beside the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredFile {
    /// File name (for external data: as the model names it).
    pub name: String,
    /// blake3, 64 lowercase hex digits.
    pub blake3: String,
    /// Size in bytes.
    pub size: u64,
}

impl StoredFile {
    /// The file `name` with content `digest`.
    pub fn new(name: &str, digest: &BlobDigest) -> StoredFile {
        StoredFile {
            name: name.to_owned(),
            blake3: digest.hex(),
            size: digest.size,
        }
    }

    /// Its digest.
    pub fn digest(&self) -> Result<BlobDigest, String> {
        BlobDigest::parse(&self.blake3, self.size).map_err(|e| format!("`{}`: {e}", self.name))
    }

    /// Its name as a path inside the inputs directory: one plain file name, nothing else.
    pub fn file_name(&self) -> Result<&Path, String> {
        let path = Path::new(&self.name);
        match path.file_name() {
            Some(name) if name == path.as_os_str() => Ok(path),
            _ => Err(format!(
                "a prepared model names the file `{}`, which is not a plain file name",
                self.name
            )),
        }
    }
}

/// The action-cache entry: `{"prepared_model": {...}}`, so `gc` and people can tell it from
/// action results (protobuf) and timing-cache registry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreparedModelRecord {
    /// The converted model.
    pub prepared_model: PreparedModel,
}

impl PreparedModelRecord {
    /// The entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a prepared-model record always serialises")
    }

    /// Reads an entry; an error for anything else.
    pub fn decode(bytes: &[u8]) -> Result<PreparedModelRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a prepared-model record: {e}"))
    }

    /// Every blob the record names.
    pub fn blobs(&self) -> Result<Vec<BlobDigest>, String> {
        let model = &self.prepared_model;
        std::iter::once(&model.model)
            .chain(model.external_data.as_ref())
            .map(StoredFile::digest)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PreparedModelRecord {
        PreparedModelRecord {
            prepared_model: PreparedModel {
                transform: "fp16".into(),
                pass_version: 1,
                model: StoredFile::new("model.onnx", &BlobDigest::of_bytes(b"model")),
                external_data: Some(StoredFile::new(
                    "model.onnx.data",
                    &BlobDigest::of_bytes(b"weights"),
                )),
                log: vec![PrepareLogLine {
                    severity: "info".into(),
                    text: "converted".into(),
                }],
            },
        }
    }

    #[test]
    fn a_record_round_trips_and_names_its_blobs() {
        let record = record();
        let bytes = record.encode();
        assert!(bytes.starts_with(br#"{"prepared_model":"#));
        assert_eq!(PreparedModelRecord::decode(&bytes).unwrap(), record);
        assert_eq!(
            record.blobs().unwrap(),
            vec![
                BlobDigest::of_bytes(b"model"),
                BlobDigest::of_bytes(b"weights")
            ]
        );
        assert!(PreparedModelRecord::decode(b"{\"versions\":[]}").is_err());
    }

    #[test]
    fn stored_names_are_plain_file_names() {
        let digest = BlobDigest::of_bytes(b"x");
        assert!(
            StoredFile::new("model.onnx.data", &digest)
                .file_name()
                .is_ok()
        );
        for bad in ["../escape", "dir/file", "/abs", "", ".."] {
            assert!(
                StoredFile::new(bad, &digest).file_name().is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
