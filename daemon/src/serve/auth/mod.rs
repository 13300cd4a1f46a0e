//! Who may call the daemon, and over what: on a Unix socket only its own user; bearer tokens
//! from the token file (`[auth]`), checked before the `trtfarm.v1.Farm` service and reflection
//! see a call; and the TLS identity (`[tls]`) the server presents.
//!
//! - [`TokenSet`]: the token file, loaded with its permission and length checks.
//! - [`RequireToken`]: the interceptor that answers `UNAUTHENTICATED`.
//! - [`reload_on_hangup`]: SIGHUP [`reload`]s the token file, for rotation without downtime.
//! - [`server_with_tls`]: a tonic server builder with the `[tls]` certificate and key.
//! - [`RequireOwner`]: on a Unix socket, only the daemon's own uid may call (`SO_PEERCRED`).

mod check;
mod peer;
mod tls;
mod tokens;

#[cfg(test)]
mod tests;

pub use check::{
    MALFORMED_HEADER, MISSING_TOKEN, RequireToken, SharedTokens, WRONG_TOKEN, reload,
    reload_on_hangup,
};
pub use peer::{RequireOwner, UnixPeer};
pub use tls::server_with_tls;
pub use tokens::{MIN_TOKEN_LEN, TokenFileError, TokenSet};
