//! `trtfarmd`, the trtfarm build daemon, as a library: the binary in `main.rs` is a thin
//! command-line layer over these modules.
//!
//! Where things are, in the order a submission meets them:
//! - `config`: `daemon.toml`, flags and environment.
//! - `serve`: the gRPC server, its listener (the private Unix socket or a TCP port), auth and
//!   TLS, and the `trtfarm.v1.Farm` service: the wire mapped to the farm.
//! - `ingest`: a submission checked and turned into a typed build, and the cache keys.
//! - `schedule`: the persistent job table, the queue, single-flight builds.
//! - `build`: the prepare step, the builder process, running one build; `trtfarmd build`.
//! - `publish`: the build's blobs, then its action result; provenance.
//! - `cli`: the other subcommands (store gc, the GPU probe).
//! - `gpus`, `inventory`, `toolchains`, `timing_cache`, `metrics`: what the stages share.

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
