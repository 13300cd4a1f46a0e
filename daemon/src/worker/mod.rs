//! Build worker subprocesses: one `trtfarmd worker` process per build, so a TensorRT crash, OOM
//! or hang kills a worker, never the daemon, and so every build starts from the same process
//! layout (TensorRT-RTX plans are byte-identical only then).
//!
//! - `protocol`: the scratch-directory layout, `task.json` and the JSON lines on stdout.
//! - `entry`: the worker side, [`worker_main`].
//! - `spawn`: the daemon side, [`run_worker`] and the [`WorkerLauncher`] trait.
//! - `output` and `outcome`: reading the worker's streams and deciding how it ended.
//! - `build_root` and `task_manifest`: the fixed-length paths and the canonical task text that
//!   keep anything but the action key from reaching a worker's heap.

pub mod build_root;
mod entry;
pub mod gpu_context;
mod outcome;
mod output;
pub mod protocol;
mod spawn;
pub mod task_manifest;

pub use build_root::BuildRoot;
pub use entry::worker_main;
pub use outcome::{WorkerOutcome, WorkerReport};
pub use output::{LOG_TAIL_LINES, WorkerEvent};
pub use protocol::{ProgressKind, WorkerDone, WorkerMessage, WorkerTask};
pub use spawn::{
    BASE_ENV, ProcessLauncher, WORKER_ARG, WORKER_STACK_LIMIT, WorkerCommand, WorkerLauncher,
    run_worker, worker_env,
};
