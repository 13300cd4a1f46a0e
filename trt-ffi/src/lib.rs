//! TensorRT through our own shim: the only crate in trtfarm that touches C++.
//!
//! A small C++ shim (`shim/trtfarm_shim.cpp`, plain C header `shim/trtfarm_shim.h`) is compiled
//! once per flavour into its own shared object and embedded in this crate. At run time the shim
//! is written to the user cache, dlopen'ed, and it dlopens TensorRT itself, so binaries build and
//! start on machines without TensorRT and say exactly what is missing.
//!
//! ```no_run
//! use trt_ffi::{BuildConfig, BuildRequest, Flavour, IgnoreProgress, OnnxSource, Toolchain};
//! let toolchain = Toolchain::load(Flavour::TensorRtRtx, None)?;
//! let request = BuildRequest {
//!     onnx: OnnxSource::File("model.onnx".into()),
//!     config: BuildConfig::default(),
//!     plan_path: "model.plan".into(),
//! };
//! let output = toolchain.build(&request, &mut IgnoreProgress)?;
//! println!("{} bytes, blake3 {}", output.plan_size, output.plan_digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod build;
mod calls;
mod config;
mod error;
mod inspector;
mod layer_listing;
mod observer;
mod shim;
mod toolchain;

pub use build::{BuildOutput, BuildRequest, OnnxSource};
pub use calls::{BuilderCall, BuilderFlag, MemoryPool, Unsupported, plan_builder_calls};
pub use config::{
    BuildConfig, ComputeCapability, HardwareCompatibilityLevel, MemoryPoolLimits,
    OptimizationProfile, ProfileInput, ProfilingVerbosity, TacticSource, TilingOptimizationLevel,
    TimingCacheConfig,
};
pub use error::{BuildError, LoadError, ParserError};
pub use inspector::{InspectorJsonError, LayerPrecisionReport};
pub use layer_listing::builder_layer_listing;
pub use observer::{BuildObserver, Control, IgnoreProgress, LogMessage, ProgressEvent, Severity};
pub use shim::install_shims;
pub use toolchain::{Flavour, Toolchain, Version, default_search_dirs};
