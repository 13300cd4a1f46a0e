//! `trtfarmd` subcommands other than `serve` and `build`: store maintenance and the GPU probe.

pub mod probe_gpu;
pub mod store;
