//! Bounds on what one manifest may ask for. Each keeps a mistaken or hostile manifest from
//! costing the client, the daemon or a build worker more than any real manifest needs, and is
//! reported like every other error: at the offending value, with a hint.
//!
//! The daemon parses the manifest of every request it receives, so these bounds are also what
//! a client can make the daemon do per request.

/// Largest manifest, in bytes: 1 MiB. Real manifests are a few KiB (256 engines with a dozen
/// settings each fit in about 100 KiB); past this the text is not a manifest.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Most `[[engine]]` tables in one manifest: 256. A precision × GPU × optimization-level
/// fan-out is a few dozen; each engine is a separate build, and `trtfarm submit` sends them all.
pub const MAX_ENGINES: usize = 256;

/// Most optimization profiles of one engine: 64. TensorRT documents no limit, but it tunes
/// every profile separately, so build time and plan size grow with each; real engines use one
/// to a handful (prefill/decode, a few batch ranges).
pub const MAX_PROFILES: usize = 64;

/// Most inputs one profile may describe: 1024. A decoder with a key and a value cache per layer
/// has about twice its layer count; 1024 covers 500 layers.
pub const MAX_PROFILE_INPUTS: usize = 1024;

/// Largest rank of a profile shape: 8, TensorRT's `Dims::MAX_DIMS`.
pub const MAX_RANK: usize = 8;

/// Largest dimension in a profile shape: 2^31 - 1. TensorRT's ONNX parser and most of its
/// kernels index dimensions with 32-bit integers.
pub const MAX_DIMENSION: i64 = i32::MAX as i64;

/// Largest `memory_pools` size: 1 TiB. No GPU has that much memory; a larger value is a typo
/// (a unit too many) that TensorRT would silently clamp.
pub const MAX_POOL_BYTES: u64 = 1 << 40;
