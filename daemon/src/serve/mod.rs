//! The serve stage: the gRPC server and the mapping between the wire and the farm.
//!
//! - `server`: `trtfarmd serve` wiring: store, farm, gRPC, health, reflection, metrics, drain.
//! - `service`: the `trtfarm.v1.Farm` implementation (uploads, submit, watch, fetch).
//! - `listener`: the private Unix socket or TCP port it accepts connections on.
//! - `auth`: bearer tokens, the socket owner's check and TLS: who may call, and over what.

pub mod auth;
pub mod listener;
pub mod server;
pub mod service;
