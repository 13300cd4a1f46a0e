//! The types every trtfarm crate shares, each parsed and printed in one place:
//!
//! - [`BlobDigest`] (`blake3:<hex>/<size>`), [`Blake3Digest`] (`blake3:<hex>`) and
//!   [`ActionKey`] (`<hex>`): one hex rule for all of them, 64 lower-case digits;
//! - [`Flavour`], [`Version`] and [`ToolchainIdentity`]: which TensorRT built something;
//! - [`ComputeCapability`]: a CUDA architecture, with the TensorRT-RTX target list;
//! - [`lock`] (feature `engine-lock`): the `engine.lock` file, read and written;
//! - [`exit_code`]: the exit status every trtfarm binary ends with.
//!
//! Each type's text form is also its serde form, so JSON, TOML and command lines agree.

#![warn(missing_docs)]

mod compute_capability;
mod digest;
mod exit;
mod hex;
#[cfg(feature = "engine-lock")]
pub mod lock;
mod text_serde;
mod toolchain;

pub use compute_capability::{ComputeCapability, ComputeCapabilityError};
pub use digest::{ActionKey, Blake3Digest, BlobDigest, DigestError, DigestKind, DigestProblem};
pub use exit::exit_code;
pub use toolchain::{Flavour, ToolchainIdentity, UnknownFlavour, Version, VersionError};
