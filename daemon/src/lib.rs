//! `trtfarmd`, the trtfarm build daemon, as a library: the binary in `main.rs` is a thin
//! command-line layer over these modules.
//!
//! Where things are:
//! - `config`: `daemon.toml`, flags and environment.
//! - `auth`: bearer tokens and TLS: who may call, and over what.
//! - `server` and `service`: the gRPC server and the `trtfarm.v1.Farm` implementation;
//!   `listener`: the private Unix socket or TCP port it accepts connections on.
//! - `action_key`: the one place the cache key is computed.
//! - `jobs`: the persistent job table and the scheduler.
//! - `worker`: build worker subprocesses, the daemon side and the worker side.
//! - `metrics`: Prometheus metrics over HTTP.
//! - `gpus`: the GPU inventory, Enterprise GPU choice and CUDA MPS.
//! - `local_build`, `toolchains`, `variant_config`, `model_prep`: turning a manifest variant
//!   into a TensorRT build, shared by `trtfarmd build` and the workers.

pub mod action_key;
pub mod auth;
pub mod config;
pub mod file_stamp;
pub mod gpus;
pub mod inventory;
pub mod jobs;
pub mod listener;
pub mod local_build;
pub mod metrics;
pub mod model_prep;
pub mod provenance;
pub mod request;
pub mod server;
pub mod service;
pub mod store_cmd;
pub mod timing_cache;
pub mod toolchains;
pub mod variant_config;
pub mod worker;
