//! The `trtfarm.v1` wire contract between `trtfarm` and `trtfarmd`.
//!
//! The gRPC services land with the daemon (issue 4); this crate exists now so the workspace has
//! its final shape and nothing else grows a private copy of the contract.
