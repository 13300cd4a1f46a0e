//! The cache keys: the one place the farm decides whether two builds, or two model
//! preparations, are the same.
//!
//! The action key is blake3 over a framed encoding of everything that can change the engine:
//! key version and farm salt, the variant's canonical settings, the digest of every input file,
//! the model transform, the toolchain that was actually loaded (builder and ONNX parser library
//! digests), the target, the timing cache used as input, and the builder program that drives
//! TensorRT. Absolute paths, host names, times, the model's file name and the daemon's own
//! binary never enter it: upgrading the daemon or the CLI keeps every cached engine.
//!
//! The prepare key names one model conversion: the input files, the conversion and its
//! settings, and the pass version.
//!
//! Layout: a magic string, the key's version (u32 LE), then fields in a fixed order, each
//! `tag: u16 LE`, `length: u64 LE`, `payload`. Bump the version whenever a field's meaning
//! changes; results are only shared between equal versions.

use trtfarm_store::{ActionKey, BlobDigest};
use trtfarm_types::ComputeCapability;

use crate::inventory::ToolchainIdentity;

/// Version of the action-key encoding. 4: the program field names the builder
/// (`trtfarm-builder`), which now receives a converted model and a typed configuration.
pub const ACTION_KEY_VERSION: u32 = 4;

const MAGIC: &[u8] = b"trtfarm.action\0";

/// Version of the prepare-key encoding.
pub const PREPARE_KEY_VERSION: u32 = 1;

const PREPARE_MAGIC: &[u8] = b"trtfarm.prepare\0";

/// Field tags. Never reuse a retired number.
mod tag {
    pub(super) const SALT: u16 = 1;
    pub(super) const VARIANT: u16 = 2;
    pub(super) const INPUTS: u16 = 3;
    pub(super) const TOOLCHAIN: u16 = 4;
    pub(super) const TARGET: u16 = 5;
    pub(super) const TIMING_CACHE: u16 = 6;
    // 7: the daemon's worker program, before the builder was a program of its own.
    pub(super) const MODEL_TRANSFORM: u16 = 8;
    pub(super) const BUILDER: u16 = 9;
    // Prepare keys.
    pub(super) const AUTOCAST: u16 = 10;
}

/// What an input file is to the build. The model's own path is not part of the key (renaming
/// a model does not change its engine); an external-data file's path is, because the model
/// refers to it by that name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyInput {
    /// The ONNX model.
    Model(BlobDigest),
    /// An external-data file, by its path relative to the model.
    ExternalData {
        /// Path as the model refers to it.
        path: String,
        /// Its content.
        digest: BlobDigest,
    },
    /// A plugin library, by its position in `[model] plugins` (load order matters).
    Plugin {
        /// Index in the manifest's plugin list.
        index: u32,
        /// Its content.
        digest: BlobDigest,
    },
}

/// Where the engine will run, beyond what the variant's settings already say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TensorRT-RTX builds ahead of time for the variant's compute-capability list, which the
    /// variant encoding already carries.
    AheadOfTime,
    /// TensorRT Enterprise builds for the GPU it times tactics on.
    Gpu {
        /// Marketing name, e.g. `NVIDIA H100 80GB HBM3`.
        model: String,
        /// e.g. 9.0; in the key as its text, `9.0`.
        compute_capability: ComputeCapability,
    },
}

/// Everything the key is computed from.
#[derive(Debug, Clone)]
pub struct KeyMaterial<'a> {
    /// Farm-wide salt from the daemon config (`None`: no salt).
    pub salt: Option<&'a str>,
    /// `Variant::canonical_encoding()` of the variant being built.
    pub variant_encoding: &'a [u8],
    /// Every input file. Order does not matter; the encoding sorts them.
    pub inputs: &'a [KeyInput],
    /// The loaded toolchain.
    pub toolchain: &'a ToolchainIdentity,
    /// The target.
    pub target: &'a Target,
    /// The timing cache loaded as input (locked policy), if any.
    pub timing_cache: Option<&'a BlobDigest>,
    /// blake3 (hex) of the builder program. TensorRT-RTX plans depend on the builder's heap
    /// layout, and so on its own code: measured, a debug and a release build of one source gave
    /// different plans of the same model.
    pub builder: &'a str,
    /// The model transform the prepare step applies before building (fp16/bf16 autocast), by
    /// name and version: a new version of the pass is a new engine.
    pub model_transform: Option<(&'a str, u32)>,
}

/// Computes the action key.
pub fn action_key(material: &KeyMaterial<'_>) -> ActionKey {
    let mut e = Encoder::default();
    e.bytes.extend_from_slice(MAGIC);
    e.bytes.extend_from_slice(&ACTION_KEY_VERSION.to_le_bytes());
    e.field(tag::SALT, |e| match material.salt {
        None => e.u8(0),
        Some(salt) => {
            e.u8(1);
            e.str(salt);
        }
    });
    e.field(tag::VARIANT, |e| e.bytes_field(material.variant_encoding));
    e.field(tag::INPUTS, |e| e.inputs(material.inputs));
    e.field(tag::TOOLCHAIN, |e| {
        // As text (the digests as bare hex): the encoding predates the typed identity, and
        // every stored key depends on these bytes.
        e.str(material.toolchain.flavour.as_str());
        e.str(&material.toolchain.version.to_string());
        e.str(&material.toolchain.library.hex());
        e.str(&material.toolchain.parser.hex());
    });
    e.field(tag::TARGET, |e| match material.target {
        Target::AheadOfTime => e.u8(0),
        Target::Gpu {
            model,
            compute_capability,
        } => {
            e.u8(1);
            e.str(model);
            // As text: the encoding predates the type, and every stored key depends on it.
            e.str(&compute_capability.to_string());
        }
    });
    e.field(tag::TIMING_CACHE, |e| match material.timing_cache {
        None => e.u8(0),
        Some(digest) => {
            e.u8(1);
            e.digest(digest);
        }
    });
    e.field(tag::MODEL_TRANSFORM, |e| match material.model_transform {
        None => e.u8(0),
        Some((name, version)) => {
            e.u8(1);
            e.str(name);
            e.u64(u64::from(version));
        }
    });
    e.field(tag::BUILDER, |e| e.str(material.builder));
    ActionKey(*blake3::hash(&e.bytes).as_bytes())
}

/// The key of one model conversion: the input files (model and external data; their order does
/// not matter), the farm salt, and the conversion with every setting and the pass version.
/// Variants that differ only in what the builder does (compute capabilities, profiles) share it.
pub fn prepare_key(
    salt: Option<&str>,
    inputs: &[KeyInput],
    options: &onnx_graph::autocast::AutocastOptions,
) -> ActionKey {
    let mut e = Encoder::default();
    e.bytes.extend_from_slice(PREPARE_MAGIC);
    e.bytes
        .extend_from_slice(&PREPARE_KEY_VERSION.to_le_bytes());
    e.field(tag::SALT, |e| match salt {
        None => e.u8(0),
        Some(salt) => {
            e.u8(1);
            e.str(salt);
        }
    });
    e.field(tag::INPUTS, |e| e.inputs(inputs));
    e.field(tag::AUTOCAST, |e| {
        e.str(options.target.name());
        e.u64(u64::from(onnx_graph::autocast::AUTOCAST_VERSION));
        // Sets already: iteration order is sorted.
        e.len(options.keep_fp32_ops.len());
        for op in &options.keep_fp32_ops {
            e.str(op);
        }
        e.len(options.force_convert_ops.len());
        for op in &options.force_convert_ops {
            e.str(op);
        }
        e.u8(u8::from(options.keep_fp32_io));
        e.u64(options.inline_limit);
    });
    ActionKey(*blake3::hash(&e.bytes).as_bytes())
}

/// Appends length-framed values.
#[derive(Default)]
struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn bytes_field(&mut self, b: &[u8]) {
        self.len(b.len());
        self.bytes.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes_field(s.as_bytes());
    }

    fn digest(&mut self, d: &BlobDigest) {
        self.bytes.extend_from_slice(&d.hash);
        self.u64(d.size);
    }

    /// Input files, sorted and deduplicated: their order in a request means nothing.
    fn inputs(&mut self, inputs: &[KeyInput]) {
        let mut inputs: Vec<&KeyInput> = inputs.iter().collect();
        inputs.sort();
        inputs.dedup();
        self.len(inputs.len());
        for input in inputs {
            match input {
                KeyInput::Model(digest) => {
                    self.u8(1);
                    self.digest(digest);
                }
                KeyInput::ExternalData { path, digest } => {
                    self.u8(2);
                    self.str(path);
                    self.digest(digest);
                }
                KeyInput::Plugin { index, digest } => {
                    self.u8(3);
                    self.u64(u64::from(*index));
                    self.digest(digest);
                }
            }
        }
    }

    fn field(&mut self, tag: u16, write: impl FnOnce(&mut Self)) {
        self.bytes.extend_from_slice(&tag.to_le_bytes());
        let length_at = self.bytes.len();
        self.u64(0);
        let start = self.bytes.len();
        write(self);
        let length = (self.bytes.len() - start) as u64;
        self.bytes[length_at..start].copy_from_slice(&length.to_le_bytes());
    }
}

#[cfg(test)]
#[path = "action_key_tests.rs"]
mod tests;
