//! From a client's `SubmitRequest` to a build the daemon can run: parse and check the manifest
//! itself, check every input path and digest, pick the toolchain, compute the action key.
//!
//! Nothing the client computed is trusted: the key comes from the manifest text and the input
//! digests (whose bytes the store verified on upload).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use manifest_schema::limits::MAX_MANIFEST_BYTES;
use manifest_schema::{Flavour, Variant};
use tonic::Status;
use trtfarm_proto::refusal::refusing_setting;
use trtfarm_proto::v1;
use trtfarm_store::{ActionKey, BlobDigest};

use crate::build::prepare::Preparation;
use crate::file_stamp::ProbedStamps;
use crate::ingest::action_key::{KeyInput, KeyMaterial, Target, action_key, prepare_key};
use crate::ingest::variant_config::build_config_for_prepared_model;
use crate::inventory::{Inventory, ToolchainIdentity};
use crate::timing_cache::{BuildGpu, TimingCachePlan, TimingCacheScope};

/// The model's name in the build's inputs directory, whatever the user called it.
pub const MODEL_NAME: &str = "model.onnx";

/// Limits and settings request preparation needs from the daemon config.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// Farm-wide action-key salt.
    pub salt: Option<String>,
    /// Most input files per request.
    pub max_inputs: usize,
    /// Largest input blob.
    pub max_blob_size: u64,
    /// Upper bound for any build deadline.
    pub max_build_timeout: Duration,
    /// blake3 (hex) of the builder program, for the action key; the farm fills it in from its
    /// build root at start-up.
    pub builder_digest: String,
}

/// A checked request: everything needed to run, persist and describe the build.
#[derive(Debug, Clone)]
pub struct PreparedBuild {
    /// The daemon-computed action key.
    pub key: ActionKey,
    /// The request as received (persisted with the job, re-prepared after a restart).
    pub request: v1::SubmitRequest,
    /// The resolved variant (settings go into the provenance).
    pub variant: Variant,
    /// The toolchain that will build it.
    pub toolchain: ToolchainIdentity,
    /// Its flavour.
    pub flavour: Flavour,
    /// Where builders load it from.
    pub library_dir: Option<PathBuf>,
    /// The probe's stamps of its libraries, checked against what the builder loaded.
    pub library_stamps: ProbedStamps,
    /// The input files (model and external data), at their paths relative to the model's
    /// directory (the model as [`MODEL_NAME`]).
    pub materialize: Vec<(BlobDigest, PathBuf)>,
    /// What went into the key, for the provenance record.
    pub key_inputs: Vec<KeyInput>,
    /// Where the engine will run.
    pub target: Target,
    /// GPUs (by index) the build may run on; empty for a build that needs no GPU.
    pub gpu_candidates: Vec<u32>,
    /// The build's deadline.
    pub timeout: Duration,
    /// What the prepare step does to the model.
    pub preparation: Preparation,
    /// The key of the model conversion, when there is one.
    pub prepare_key: Option<ActionKey>,
    /// The exact builder configuration: the same for every request with this action key.
    pub config: trt_ffi::BuildConfig,
    /// What an Enterprise build's timing caches belong to; `None` for a build without one.
    pub timing_scope: Option<TimingCacheScope>,
    /// The timing cache it loads, records or is held to, once `ingest::timing` resolved it.
    pub timing_cache: Option<TimingCachePlan>,
}

impl PreparedBuild {
    /// Where the engine runs, for people and lock files: `sm86,sm89` for TensorRT-RTX,
    /// `<GPU model>/<compute capability>` for Enterprise.
    pub fn target_text(&self) -> String {
        match &self.target {
            Target::AheadOfTime => self
                .variant
                .settings
                .compatibility
                .compute_capabilities
                .iter()
                .map(|cc| format!("sm{}{}", cc.major, cc.minor))
                .collect::<Vec<_>>()
                .join(","),
            Target::Gpu {
                model,
                compute_capability,
            } => format!("{model}/{compute_capability}"),
        }
    }

    /// Every blob the build reads.
    pub fn input_digests(&self) -> Vec<BlobDigest> {
        let mut digests: Vec<BlobDigest> =
            self.materialize.iter().map(|(digest, _)| *digest).collect();
        digests.extend(self.timing_cache_load());
        digests
    }

    /// The timing cache the builder loads, if any.
    pub fn timing_cache_load(&self) -> Option<BlobDigest> {
        self.timing_cache.as_ref().and_then(|plan| plan.load)
    }

    /// The action key of this build under `policy`: everything that decides the plan bytes.
    pub fn compute_key(&self, policy: &RequestPolicy) -> ActionKey {
        let encoding = self.variant.canonical_encoding();
        action_key(&KeyMaterial {
            salt: policy.salt.as_deref(),
            variant_encoding: &encoding,
            inputs: &self.key_inputs,
            toolchain: &self.toolchain,
            target: &self.target,
            timing_cache: self
                .timing_cache
                .as_ref()
                .and_then(TimingCachePlan::action_key_input),
            builder: &policy.builder_digest,
            model_transform: self.preparation.transform(),
        })
    }
}

/// Checks `request` and computes its action key. Errors are the gRPC statuses the client gets.
pub fn prepare(
    request: v1::SubmitRequest,
    inventory: &Inventory,
    policy: &RequestPolicy,
) -> Result<PreparedBuild, Status> {
    let manifest_msg = request
        .manifest
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("the request has no manifest"))?;
    let manifest_path = if manifest_msg.path.is_empty() {
        "engine.toml"
    } else {
        manifest_msg.path.as_str()
    };
    // Checked before parsing: the daemon parses every request's manifest, so its size is the
    // work a client can ask for (the manifest format's own limits bound the rest).
    if manifest_msg.toml.len() > MAX_MANIFEST_BYTES {
        return Err(Status::resource_exhausted(format!(
            "{manifest_path} is {} bytes; this daemon accepts manifests of at most {} (1 MiB)",
            manifest_msg.toml.len(),
            MAX_MANIFEST_BYTES
        )));
    }
    let manifest = manifest_schema::parse(&manifest_msg.toml, Path::new(manifest_path))
        .map_err(|errors| Status::invalid_argument(errors.render_plain()))?;
    let variant = manifest
        .variant(&request.variant)
        .ok_or_else(|| {
            let known: Vec<&str> = manifest
                .variants()
                .iter()
                .map(|v| v.name.as_str())
                .collect();
            Status::invalid_argument(format!(
                "{manifest_path} has no engine `{}` (it has: {})",
                request.variant,
                known.join(", ")
            ))
        })?
        .clone();
    // Refuse settings this farm cannot build now, not after a queue wait.
    let mut config = build_config_for_prepared_model(&variant)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    // The engine inspector's layer JSON, where the build host can deserialise the plan.
    config.layer_info = true;
    if !manifest.model.plugins.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{manifest_path}: plugin libraries are not supported by this daemon yet; \
             remove `[model] plugins` or build locally with `trtfarmd build`"
        )));
    }

    if request.inputs.len() > policy.max_inputs {
        return Err(Status::resource_exhausted(format!(
            "the request names {} input files; this daemon accepts at most {}",
            request.inputs.len(),
            policy.max_inputs
        )));
    }
    let mut materialize = Vec::with_capacity(request.inputs.len());
    let mut key_inputs = Vec::with_capacity(request.inputs.len());
    let mut model_digest = None;
    for input in &request.inputs {
        // Every file placed at its own path must stay inside the inputs directory. The model
        // always lands at model.onnx: its path (which may climb to a shared models directory of
        // the client's project) is only compared with the manifest's.
        let relative = match v1::InputRole::try_from(input.role) {
            Ok(v1::InputRole::Model) => PathBuf::from(MODEL_NAME),
            _ => safe_relative(&input.path)?,
        };
        let digest = parse_digest(input.digest.as_ref(), &input.path)?;
        if digest.size > policy.max_blob_size {
            return Err(Status::resource_exhausted(format!(
                "input `{}` is {} bytes; this daemon accepts at most {}",
                input.path, digest.size, policy.max_blob_size
            )));
        }
        match v1::InputRole::try_from(input.role) {
            Ok(v1::InputRole::Model) => {
                if normalize(&input.path) != normalize(&manifest.model.path) {
                    return Err(Status::invalid_argument(format!(
                        "the model input is `{}`, but {manifest_path} names `{}`",
                        input.path, manifest.model.path
                    )));
                }
                if model_digest.replace(digest).is_some() {
                    return Err(Status::invalid_argument("the request names two models"));
                }
                materialize.push((digest, PathBuf::from(MODEL_NAME)));
                key_inputs.push(KeyInput::Model(digest));
            }
            Ok(v1::InputRole::ExternalData) => {
                let path = relative.to_string_lossy().into_owned();
                if relative == Path::new(MODEL_NAME) {
                    return Err(Status::invalid_argument(format!(
                        "external-data file `{path}` would overwrite the model"
                    )));
                }
                materialize.push((digest, relative.clone()));
                key_inputs.push(KeyInput::ExternalData { path, digest });
            }
            Ok(v1::InputRole::Plugin) | Ok(v1::InputRole::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "input `{}` has role {}, which this daemon does not take",
                    input.path, input.role
                )));
            }
        }
    }
    let Some(model_digest) = model_digest else {
        return Err(Status::invalid_argument(format!(
            "the request carries no model; {manifest_path} names `{}`",
            manifest.model.path
        )));
    };
    if let Some(pinned) = manifest.model.digest
        && pinned.0 != model_digest.hash
    {
        return Err(Status::invalid_argument(format!(
            "{manifest_path} pins the model to blake3:{}, but the uploaded model is blake3:{}",
            pinned.hex(),
            model_digest.hex()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (_, path) in &materialize {
        if !seen.insert(path) {
            return Err(Status::invalid_argument(format!(
                "two inputs go to the same place: {}",
                path.display()
            )));
        }
    }

    let requirement = &variant.settings.toolchain;
    let refused =
        |message: String| refusing_setting(Status::failed_precondition(message), "toolchain");
    let available = inventory.get_matching(requirement).map_err(refused)?;
    if !requirement.matches(&available.identity.version) {
        let version = &available.identity.version;
        return Err(refused(format!(
            "engine `{}` asks for `{requirement}`, but this daemon has {} {version}: write \
             toolchain = \"{}\" to build here",
            variant.name,
            available.identity.flavour,
            manifest_schema::ToolchainRequirement::selecting(available.identity.flavour, version)
        )));
    }
    let (target, gpu_candidates) = match requirement.flavour {
        Flavour::TensorRtRtx => (Target::AheadOfTime, Vec::new()),
        Flavour::TensorRt => {
            // Decided now, so a request no GPU here can serve never waits in the queue.
            let gpus = &inventory.gpus;
            let refused = |key: &'static str, e: String| {
                let message = format!("engine `{}`: {e}", variant.name);
                refusing_setting(Status::failed_precondition(message), key)
            };
            let choice = gpus
                .choose(variant.settings.compatibility.gpu.as_ref())
                .map_err(|e| refused("compatibility.gpu", e))?;
            gpus.check_mps(variant.settings.mps_percentage)
                .map_err(|e| refused("mps_percentage", e))?;
            (choice.target, choice.candidates)
        }
    };

    let mut timeout = variant.settings.build_timeout;
    if timeout > policy.max_build_timeout {
        let message = format!(
            "engine `{}` asks for build_timeout = \"{}\"; this daemon allows at most {}",
            variant.name,
            humantime::format_duration(timeout),
            humantime::format_duration(policy.max_build_timeout)
        );
        return Err(refusing_setting(
            Status::resource_exhausted(message),
            "build_timeout",
        ));
    }
    if request.timeout_ms > 0 {
        timeout = timeout.min(Duration::from_millis(request.timeout_ms));
    }
    let timing_scope = timing_scope(&variant, &available.identity, &target)?;
    let preparation = Preparation::for_variant(&variant);
    let prepare_key = match &preparation {
        Preparation::Autocast(options) => {
            Some(prepare_key(policy.salt.as_deref(), &key_inputs, options))
        }
        Preparation::CheckOnly | Preparation::ExplicitQuantization(_) => None,
    };
    let mut prepared = PreparedBuild {
        key: ActionKey([0; 32]),
        variant,
        toolchain: available.identity,
        flavour: available.flavour,
        library_dir: available.library_dir.clone(),
        library_stamps: available.stamps,
        materialize,
        key_inputs,
        target,
        gpu_candidates,
        timeout,
        preparation,
        prepare_key,
        config,
        request,
        timing_scope,
        timing_cache: None,
    };
    // Final for a build without a timing cache; `ingest::timing` computes it again once the
    // cache the build loads is known.
    prepared.key = prepared.compute_key(policy);
    Ok(prepared)
}

/// The timing-cache scope of an Enterprise build whose policy uses a cache.
fn timing_scope(
    variant: &Variant,
    toolchain: &ToolchainIdentity,
    target: &Target,
) -> Result<Option<TimingCacheScope>, Status> {
    let Target::Gpu {
        model,
        compute_capability,
    } = target
    else {
        return Ok(None);
    };
    if variant.settings.timing_cache == manifest_schema::TimingCachePolicy::Off {
        return Ok(None);
    }
    let gpu = BuildGpu {
        model: model.clone(),
        compute_capability: *compute_capability,
    };
    TimingCacheScope::for_build(variant, toolchain, &gpu)
        .map(Some)
        .map_err(Status::invalid_argument)
}

/// Parses a wire digest, naming the input it belongs to.
pub fn parse_digest(digest: Option<&v1::Digest>, what: &str) -> Result<BlobDigest, Status> {
    let digest =
        digest.ok_or_else(|| Status::invalid_argument(format!("`{what}` has no digest")))?;
    digest
        .to_blob_digest()
        .map_err(|e| Status::invalid_argument(format!("`{what}`: {e}")))
}

/// `path` as a relative path that stays inside the directory it is joined to: no root, no
/// `..` (not even one that comes back down), no empty name, NUL or backslash. Applied to every
/// input of a request (model, external data, plugin), the same rule `engine.toml` paths follow.
fn safe_relative(path: &str) -> Result<PathBuf, Status> {
    let refuse = |why: &str| {
        Err(Status::invalid_argument(format!(
            "input path `{path}` {why}; input paths are relative to the model and stay below it"
        )))
    };
    if path.is_empty() || path.contains('\0') || path.contains('\\') {
        return refuse("is empty or has a NUL or backslash");
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => return refuse("climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return refuse("is absolute"),
        }
    }
    if out.as_os_str().is_empty() {
        return refuse("names no file");
    }
    Ok(out)
}

/// Lexically normalised `/`-separated form, for comparing two spellings of a model path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
