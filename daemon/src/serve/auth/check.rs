//! The check every protected call passes before a service sees it: `authorization: Bearer
//! <token>` with a token of the daemon's token file. A refused call never reaches the service,
//! so it cannot read or write the store; for a streaming upload not one byte is read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::{TokenFileError, TokenSet};

/// The token set the check reads, replaced in place when the token file is reloaded.
pub type SharedTokens = Arc<RwLock<TokenSet>>;

/// Refusal of a call that sent no token.
pub const MISSING_TOKEN: &str = "this daemon requires a bearer token: send `authorization: \
     Bearer <token>` (trtfarm: --token-file PATH or TRTFARM_TOKEN_FILE)";

/// Refusal of a call whose `authorization` header is not a bearer token.
pub const MALFORMED_HEADER: &str =
    "the authorization header is not `Bearer <token>` with a printable ASCII token";

/// Refusal of a call whose token is not in the token file.
pub const WRONG_TOKEN: &str =
    "the bearer token is not accepted by this daemon (wrong, or removed from its token file)";

/// A tonic interceptor that lets a call through only with an accepted bearer token; with no
/// token set (a loopback daemon without a token file) it lets every call through.
#[derive(Debug, Clone, Default)]
pub struct RequireToken(Option<SharedTokens>);

impl RequireToken {
    /// Checks calls against `tokens`; `None` checks nothing.
    pub fn new(tokens: Option<SharedTokens>) -> RequireToken {
        RequireToken(tokens)
    }

    /// Why `metadata` does not authorize a call, if it does not.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(tokens) = &self.0 else {
            return Ok(());
        };
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated(MISSING_TOKEN))?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Status::unauthenticated(MALFORMED_HEADER))?;
        // A poisoned lock still holds a complete set: replacing it is a single assignment.
        let accepted = tokens
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .accepts(presented);
        if accepted {
            Ok(())
        } else {
            Err(Status::unauthenticated(WRONG_TOKEN))
        }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Err(status) = self.check(request.metadata()) {
            tracing::info!(
                peer = ?request.remote_addr(),
                reason = status.message(),
                "refused an unauthenticated call"
            );
            return Err(status);
        }
        // The service has no use for the token: keep it out of anything it might log.
        request.metadata_mut().remove("authorization");
        Ok(request)
    }
}

/// Replaces `tokens` with the ones `path` holds now and returns how many; a file that cannot
/// be used leaves the tokens in force unchanged.
pub fn reload(path: &Path, tokens: &SharedTokens) -> Result<usize, TokenFileError> {
    let fresh = TokenSet::load(path)?;
    let count = fresh.len();
    *tokens
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
    Ok(count)
}

/// [`reload`]s on every SIGHUP, so tokens can be added and removed without a restart. `hangup`
/// is made by the caller before the daemon listens, so a SIGHUP never meets its default action
/// (which ends the process).
pub async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    path: PathBuf,
    tokens: SharedTokens,
) {
    while hangup.recv().await.is_some() {
        match reload(&path, &tokens) {
            Ok(count) => {
                tracing::info!(path = %path.display(), tokens = count, "reloaded the token file")
            }
            Err(error) => tracing::error!("kept the tokens in force: {error}"),
        }
    }
}
