//! The ingest stage: a client's submission checked and turned into a build the farm can run,
//! with the keys that decide whether it was built before.
//!
//! - `request`: every check of a `SubmitRequest` (manifest, paths, digests, toolchain, GPU,
//!   limits) and the resulting `PreparedBuild`.
//! - `variant_config`: a manifest variant as the exact, typed TensorRT builder configuration.
//! - `action_key`: the action key and the prepare key, each in one framed encoding.
//! - `timing`: the timing cache an Enterprise build loads, resolved against the registry.

pub mod action_key;
pub mod request;
pub mod timing;
pub mod variant_config;
