//! `trtfarmd`, the trtfarm build daemon, as a library: the binary in `main.rs` is a thin
//! command-line layer over these modules.
//!
//! Where things are:
//! - `config`: `daemon.toml`, flags and environment.
//! - `auth`: bearer tokens and TLS: who may call, and over what.
//! - `server` and `service`: the gRPC server and the `trtfarm.v1.Farm` implementation.
//! - `action_key`: the one place the cache key is computed.
//! - `request`, `variant_config`: a submission checked and turned into a typed build.
//! - `jobs`: the persistent job table, the scheduler, running a build and publishing it.
//! - `build`: the prepare step, the builder process, and `trtfarmd build`.
//! - `metrics`: Prometheus metrics over HTTP.
//! - `gpus`: the GPU inventory, Enterprise GPU choice and CUDA MPS.

pub mod build;
pub mod cli;
pub mod config;
pub mod gpus;
pub mod ingest;
pub mod inventory;
pub mod metrics;
pub mod publish;
pub mod schedule;
pub mod serve;
pub mod timing_cache;
pub mod toolchains;

pub use trtfarm_build_protocol::stamp as file_stamp;
