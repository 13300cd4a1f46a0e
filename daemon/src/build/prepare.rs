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

use manifest_schema::{Precision, Variant};
use onnx_graph::OnnxError;
use onnx_graph::autocast::{AUTOCAST_VERSION, AutocastOptions, AutocastTarget};
use serde::{Deserialize, Serialize};
use trtfarm_store::BlobDigest;

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
    /// The preparation `variant`'s precision and `autocast` settings ask for. Strongly typed
    /// TensorRT takes precision from the model's types, so only tf32 stays a builder flag.
    pub fn for_variant(variant: &Variant) -> Preparation {
        let autocast = |target| {
            let settings = &variant.settings.autocast;
            let mut options = AutocastOptions::new(target);
            options.keep_fp32_ops = settings.keep_fp32.clone();
            options.force_convert_ops = settings.convert.clone();
            options.keep_fp32_io = settings.keep_fp32_io;
            Preparation::Autocast(options)
        };
        match variant.settings.precision {
            Precision::Fp32 | Precision::Tf32 => Preparation::CheckOnly,
            Precision::Fp16 => autocast(AutocastTarget::Half),
            Precision::Bf16 => autocast(AutocastTarget::BFloat16),
            Precision::Int8 => Preparation::ExplicitQuantization("int8"),
            Precision::Fp8 => Preparation::ExplicitQuantization("fp8"),
            Precision::Fp4 => Preparation::ExplicitQuantization("fp4"),
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

/// Why the prepare step refused or could not prepare a model. Each message says what failed in
/// the model's terms; the model or the manifest is at fault, not the farm.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The model fails the check made before TensorRT's parser sees it.
    #[error("the model failed trtfarm's check before parsing: {0}")]
    Check(OnnxError),
    /// The fp16/bf16 conversion failed.
    #[error("cannot convert the model to {target}: {source}")]
    Convert {
        /// The precision it was converted to.
        target: &'static str,
        /// What went wrong.
        source: OnnxError,
    },
    /// The model could not be read for the Q/DQ check.
    #[error("cannot read the model: {0}")]
    Read(OnnxError),
    /// An int8/fp8/fp4 engine of a model without Q/DQ nodes of that type (the message says how
    /// such models are made).
    #[error("{0}")]
    NotQuantized(String),
}

/// A prepared-model record that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not such a record.
    #[error("not a prepared-model record: {0}")]
    Format(#[from] serde_json::Error),
    /// A digest in it is malformed.
    #[error("`{name}`: {source}")]
    Digest {
        /// The file it names.
        name: String,
        /// What is wrong with its digest.
        source: trtfarm_types::DigestError,
    },
    /// A file name in it would leave the inputs directory.
    #[error("a prepared model names the file `{0}`, which is not a plain file name")]
    FileName(String),
}

/// One line of what the prepare step did, for the build log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareLogLine {
    /// "info", "warning" or "error".
    pub severity: String,
    /// The text.
    pub text: String,
}

/// The model the builder gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelToBuild {
    /// The model: the original, or the converted one.
    pub model: PathBuf,
    /// A converted model's weights, when autocast wrote them beside it (too large to inline).
    pub converted_weights: Option<PathBuf>,
}

/// Checks the model at `model` and prepares it as `preparation` says: the original to build as
/// it is, or `converted` after a conversion. Blocking. The log receives what was done.
pub fn prepare_model(
    preparation: &Preparation,
    model: &Path,
    converted: &Path,
    log: &mut Vec<PrepareLogLine>,
) -> Result<ModelToBuild, PrepareError> {
    let as_it_is = || ModelToBuild {
        model: model.to_path_buf(),
        converted_weights: None,
    };
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
        let error = PrepareError::Check(e);
        say("error", error.to_string());
        return Err(error);
    }
    match preparation {
        Preparation::CheckOnly => Ok(as_it_is()),
        Preparation::Autocast(options) => {
            let target = options.target.name();
            let report = onnx_graph::autocast::autocast_file(model, converted, options)
                .map_err(|source| PrepareError::Convert { target, source })?;
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
            Ok(ModelToBuild {
                model: converted.to_path_buf(),
                converted_weights: report.external_data,
            })
        }
        Preparation::ExplicitQuantization(precision) => {
            let summary = onnx_graph::quantization::quantization_summary(model)
                .map_err(PrepareError::Read)?;
            onnx_graph::quantization::require_explicit_quantization(&summary, precision)
                .map_err(PrepareError::NotQuantized)?;
            Ok(as_it_is())
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
    pub fn digest(&self) -> Result<BlobDigest, RecordError> {
        BlobDigest::parse(&self.blake3, self.size).map_err(|source| RecordError::Digest {
            name: self.name.clone(),
            source,
        })
    }

    /// Its name as a path inside the inputs directory: one plain file name, nothing else.
    pub fn file_name(&self) -> Result<&Path, RecordError> {
        let path = Path::new(&self.name);
        match path.file_name() {
            Some(name) if name == path.as_os_str() => Ok(path),
            _ => Err(RecordError::FileName(self.name.clone())),
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
    pub fn decode(bytes: &[u8]) -> Result<PreparedModelRecord, RecordError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Every blob the record names.
    pub fn blobs(&self) -> Result<Vec<BlobDigest>, RecordError> {
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
