//! The build stage: from a checked request to a plan on disk.
//!
//! - `prepare`: the model as TensorRT will see it (checks, fp16/bf16 conversion), a cached
//!   step with its own key, run in the daemon, never in the builder.
//! - `builder_process`: one `trtfarm-builder` process per build, in a fixed-length build root,
//!   with a fixed argv, environment and stack limit and no address-space randomisation.
//! - `failure_hint` and `failure_message`: a failed build's message, TensorRT's error said once,
//!   and what to change (an operator kept in fp32, a profile's sizes).
//! - `run` and `farm_prepare`: the farm running one build: scratch directory, the prepare step
//!   shared through the store, the builder in its slot, then `publish`.
//! - `local`: `trtfarmd build`, the same two steps for one manifest, without queue or store.

pub mod builder_process;
pub mod failure_hint;
pub(crate) mod failure_message;
mod farm_prepare;
pub mod local;
pub mod prepare;
mod run;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The builder program's file name.
pub const BUILDER_PROGRAM: &str = "trtfarm-builder";

/// The builder program: `configured`, else `trtfarm-builder` beside the running executable.
/// Fails, saying where it looked and how to fix it, when there is none.
pub fn builder_program(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    let program = match configured {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find the trtfarmd executable")?
            .with_file_name(BUILDER_PROGRAM),
    };
    anyhow::ensure!(
        program.is_file(),
        "the builder program {} does not exist; install `{BUILDER_PROGRAM}` beside trtfarmd \
         (`cargo build` builds both) or name it with `--builder` / `toolchains.builder`",
        program.display()
    );
    Ok(program)
}
