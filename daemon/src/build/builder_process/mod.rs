//! Builder processes: one `trtfarm-builder` process per build, so a TensorRT crash, OOM or hang
//! kills a builder, never the daemon, and so every build starts from the same process layout
//! (TensorRT-RTX plans are byte-identical only then). The task file and the messages are the
//! `trtfarm_build_protocol` crate; the builder itself is the `builder` crate.
//!
//! - `spawn`: starting one, [`run_builder`] and the [`BuilderLauncher`] trait.
//! - `output` and `outcome`: reading the builder's streams and deciding how it ended.
//! - `usage`: the CPU time and memory a builder uses, read while it runs.
//! - `build_root`: the fixed-length paths that keep anything but the action key from reaching
//!   a builder's heap.

pub mod build_root;
mod outcome;
mod output;
mod spawn;
pub mod usage;

pub use build_root::BuildRoot;
pub use outcome::{BuilderOutcome, BuilderReport};
pub use output::{BuilderEvent, LOG_TAIL_LINES};
pub use spawn::{
    BASE_ENV, BUILD_ARG, BUILDER_STACK_LIMIT, BuilderCommand, BuilderLauncher, ProcessLauncher,
    builder_env, run_builder,
};
