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
//! - `registry`: [`TimingCacheRegistry`], cache blobs and version records in the store.
//! - `index`: [`VersionIndex`], each scope's versions in order: in the store for one daemon,
//!   in PostgreSQL for a farm.
//!
//! `ingest::timing` resolves a submission's plan (and so its action key), `build::run` hands
//! the cache to the builder, `publish` records what a `record` build wrote.

mod index;
mod policy;
mod registry;
mod scope;

pub use index::{StoreIndex, VersionIndex};
pub use policy::{
    Pin, PolicyRequest, PublishPlan, Refusal, RegistryView, TimingCachePlan, builder_settings,
    check_same_scope, plan,
};
pub use registry::{CacheVersion, RegistryError, TimingCacheRegistry};
pub use scope::{BuildGpu, SCOPE_ENCODING_VERSION, TimingCacheScope, TimingSettings};
