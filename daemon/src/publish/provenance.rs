//! The provenance record stored with every engine: an in-toto Statement (v1) whose subject is
//! the plan (blake3 and sha256) and whose predicate says how it was made: action key, inputs,
//! settings, toolchain, target, builder host and times.

use std::time::SystemTime;

use serde_json::{Value, json};
use trtfarm_store::BlobDigest;

use crate::ingest::action_key::{ACTION_KEY_VERSION, KeyInput, Target};
use crate::ingest::request::PreparedBuild;

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The predicate type of trtfarm's build provenance.
pub const PREDICATE_TYPE: &str = "https://trtfarm.dev/provenance/build/v1";

/// A named artifact with its digests.
#[derive(Debug, Clone)]
pub struct Subject {
    name: String,
    blake3: String,
    sha256: Option<String>,
    size: u64,
}

impl Subject {
    /// `name` with `digest` (and its sha256, when known).
    pub fn new(name: &str, digest: &BlobDigest, sha256: Option<&[u8; 32]>) -> Subject {
        Subject {
            name: name.to_string(),
            blake3: digest.hex(),
            sha256: sha256.map(|s| hex(s)),
            size: digest.size,
        }
    }

    fn to_json(&self) -> Value {
        let mut digest = json!({ "blake3": self.blake3 });
        if let Some(sha256) = &self.sha256 {
            digest["sha256"] = json!(sha256);
        }
        json!({ "name": self.name, "digest": digest, "size": self.size })
    }
}

/// Everything a provenance statement says.
pub struct Provenance<'a> {
    /// The build.
    pub prepared: &'a PreparedBuild,
    /// The engine plan.
    pub engine: Subject,
    /// Build log, layer JSON, timing cache.
    pub byproducts: Vec<Subject>,
    /// The daemon's host name.
    pub host: &'a str,
    /// When the build started (inputs fetched from here on).
    pub started: SystemTime,
    /// When the outputs were stored.
    pub finished: SystemTime,
    /// The GPU an Enterprise build ran on; `None` for builds without one.
    pub gpu: Option<GpuRun<'a>>,
}

/// Where on a GPU a build ran, and what its CUDA context got there.
#[derive(Debug, Clone, Copy)]
pub struct GpuRun<'a> {
    /// `GPU-…` of the build GPU.
    pub uuid: &'a str,
    /// Its SMs, all of them (from the daemon's inventory).
    pub multiprocessors: u32,
    /// The MPS share the manifest asked for.
    pub mps_percentage: Option<u8>,
    /// The worker's own report of its context.
    pub context: Option<&'a trtfarm_gpu::context::ContextReport>,
}

impl Provenance<'_> {
    /// The statement as pretty JSON bytes.
    pub fn statement(&self) -> Vec<u8> {
        let prepared = self.prepared;
        let inputs: Vec<Value> = prepared
            .key_inputs
            .iter()
            .map(|input| match input {
                KeyInput::Model(digest) => json!({
                    "role": "model",
                    "path": prepared.request.inputs.iter()
                        .find(|i| i.role == trtfarm_proto::v1::InputRole::Model as i32)
                        .map(|i| i.path.clone())
                        .unwrap_or_default(),
                    "digest": { "blake3": digest.hex() },
                    "size": digest.size,
                }),
                KeyInput::ExternalData { path, digest } => json!({
                    "role": "external_data",
                    "path": path,
                    "digest": { "blake3": digest.hex() },
                    "size": digest.size,
                }),
                KeyInput::Plugin { index, digest } => json!({
                    "role": "plugin",
                    "index": index,
                    "digest": { "blake3": digest.hex() },
                    "size": digest.size,
                }),
            })
            .collect();
        let target = match &prepared.target {
            Target::AheadOfTime => json!({
                "kind": "ahead-of-time",
                "computeCapabilities": prepared.variant.settings.compatibility.compute_capabilities
                    .iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            Target::Gpu {
                model,
                compute_capability,
            } => json!({ "kind": "gpu", "model": model, "computeCapability": compute_capability }),
        };
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [self.engine.to_json()],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "actionKey": prepared.key.hex(),
                "actionKeyVersion": ACTION_KEY_VERSION,
                "manifest": {
                    "path": prepared.request.manifest.as_ref().map(|m| m.path.clone()).unwrap_or_default(),
                    "variant": prepared.variant.name,
                },
                "inputs": inputs,
                "settings": prepared.variant.settings,
                "profiles": prepared.variant.profiles,
                "canonicalSettingsBlake3": blake3::hash(&prepared.variant.canonical_encoding()).to_hex().to_string(),
                "toolchain": {
                    "flavour": prepared.toolchain.flavour,
                    "version": prepared.toolchain.version,
                    "libraryBlake3": prepared.toolchain.library.hex(),
                    "parserLibraryBlake3": prepared.toolchain.parser.hex(),
                },
                "target": target,
                "builder": {
                    "host": self.host,
                    "daemonVersion": env!("CARGO_PKG_VERSION"),
                    "gpu": self.gpu.map(|gpu| json!({
                        "uuid": gpu.uuid,
                        "mpsActiveThreadPercentage": gpu.mps_percentage,
                        "multiprocessors": gpu.multiprocessors,
                        "contextSmCount": gpu.context.and_then(|c| c.context_sm_count),
                    })),
                },
                "startedOn": humantime::format_rfc3339_millis(self.started).to_string(),
                "finishedOn": humantime::format_rfc3339_millis(self.finished).to_string(),
                "byproducts": self.byproducts.iter().map(Subject::to_json).collect::<Vec<_>>(),
            },
        });
        serde_json::to_vec_pretty(&statement).unwrap_or_default()
    }
}
