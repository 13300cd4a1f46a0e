//! The trtfarm client library: what the `trtfarm` CLI (and anything else that talks to a
//! `trtfarmd`) uses to move blobs and follow builds.

pub mod digest_cache;
pub mod inputs;
pub mod lock;
pub mod model_facts;
pub mod transfer;
