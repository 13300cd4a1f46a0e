//! TensorRT Enterprise timing-cache governance: which cache a build loads, what it records,
//! and where recorded caches live.
//!
//! Enterprise times candidate kernels on the GPU it builds on, so two builds of one model can
//! choose differently; its plan bytes are not reproducible. What the farm can hold fixed is the
//! choice: a `record` build writes an editable timing cache that the registry publishes by
//! digest; engine.lock pins a digest; a `locked` build loads exactly that cache with
//! error-on-miss, never writes it back, and refuses optimization level 0 (which ignores it).
//!
//! - `scope`: [`TimingCacheScope`], what a cache's entries depend on (toolchain, GPU, MPS
//!   share, timing-relevant settings), and the registry's derived keys.
//! - `policy`: [`plan`], the pure decision from policy, scope, pin and registry contents to a
//!   [`TimingCachePlan`] or a [`Refusal`].
//! - `registry`: [`TimingCacheRegistry`], versions per scope in the store.
//!
//! Not wired into the live build path yet: `request::prepare` refuses Enterprise submissions
//! (the daemon has no GPU inventory), so nothing here runs outside its tests. No TensorRT
//! Enterprise is available in this workplace; the tests pin the decisions and the exact builder
//! calls they lead to (`trt_ffi::plan_builder_calls`), not a real build.

mod policy;
mod registry;
mod scope;

pub use policy::{
    Pin, PolicyRequest, PublishPlan, Refusal, RegistryView, TimingCachePlan, check_same_scope, plan,
};
pub use registry::{CacheVersion, RegistryError, TimingCacheRegistry};
pub use scope::{BuildGpu, SCOPE_ENCODING_VERSION, TimingCacheScope, TimingSettings};
