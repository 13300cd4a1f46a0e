//! Reaching a daemon: a remote one by URL (with its bearer token), or the local one, found or
//! started through its info file (see [`crate::local_daemon`]). Both give the same client type.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use trtfarm_proto::local::default_state_dir;
use trtfarm_proto::v1::farm_client::FarmClient;

use crate::cli::DaemonArgs;
use crate::local_daemon;

/// Largest message accepted from the daemon (job lists, results).
const MAX_MESSAGE: usize = 16 << 20;

/// Initial HTTP/2 flow-control window, per stream and per connection (adaptive from there).
const WINDOW: u32 = 8 << 20;

/// How long establishing a connection may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected `trtfarm.v1.Farm` client, remote or local.
pub type FarmConnection = FarmClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every call when there is a token.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// The interceptor for `token` (none: calls go out unchanged).
    pub fn new(token: Option<&str>) -> anyhow::Result<BearerToken> {
        let value = token
            .map(|token| {
                format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "the token is not valid in an HTTP header (printable ASCII only)"
                        )
                    })
            })
            .transpose()?;
        Ok(BearerToken(value))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The local daemon's state directory.
pub fn local_dir(args: &DaemonArgs) -> PathBuf {
    args.daemon_dir.clone().unwrap_or_else(default_state_dir)
}

/// A client for the daemon `args` name: `--daemon URL` (sending `--token`), else the local
/// daemon, started (or restarted, when its version differs from this client's) on demand.
pub async fn connect(args: &DaemonArgs) -> anyhow::Result<FarmConnection> {
    match &args.daemon {
        Some(url) => open(url, args.token.as_deref(), CONNECT_TIMEOUT).await,
        None => Ok(local_daemon::ensure(&local_dir(args)).await?.client),
    }
}

/// Connects to the daemon at `endpoint`, sending `token` with every call.
pub async fn open(
    endpoint: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<FarmConnection> {
    let interceptor = BearerToken::new(token)?;
    let channel = Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("`{endpoint}` is not a daemon URL"))?
        .connect_timeout(timeout)
        // Blob streams need more than HTTP/2's 64 KiB default window to run at disk speed.
        .http2_adaptive_window(true)
        .initial_connection_window_size(WINDOW)
        .initial_stream_window_size(WINDOW)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot reach the daemon at {endpoint}"))?;
    Ok(FarmClient::with_interceptor(channel, interceptor).max_decoding_message_size(MAX_MESSAGE))
}

/// The gRPC status code as the contract spells it (`DATA_LOSS`, `NOT_FOUND`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A daemon's refusal as `DATA_LOSS: <the daemon's message>` (instead of tonic's debug form
/// with metadata). A message of several lines (rendered manifest diagnostics) is kept whole.
pub fn describe_status(status: &Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        code_name(status.code()).to_string()
    } else {
        format!("{}: {message}", code_name(status.code()))
    }
}

/// Turns an error whose cause is a gRPC status into one line, `what: CODE: message`; any other
/// error gets `what` as context.
pub fn rpc_error(what: impl std::fmt::Display, error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<Status>() {
        Some(status) => anyhow::anyhow!("{what}: {}", describe_status(status)),
        None => error.context(what.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_out_as_a_bearer_header() {
        let mut with = BearerToken::new(Some("s3cret")).unwrap();
        let request = with.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        let mut without = BearerToken::new(None).unwrap();
        let request = without.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
        assert!(BearerToken::new(Some("line\nbreak")).is_err());
    }

    #[test]
    fn statuses_read_as_one_line_with_the_code_in_words() {
        let status = Status::data_loss("blob blake3:ab no longer matches its digest");
        assert_eq!(
            describe_status(&status),
            "DATA_LOSS: blob blake3:ab no longer matches its digest"
        );
        assert_eq!(describe_status(&Status::unavailable("")), "UNAVAILABLE");
        let error = rpc_error("fetch x", anyhow::Error::from(Status::not_found("no blob")));
        assert_eq!(format!("{error:#}"), "fetch x: NOT_FOUND: no blob");
    }
}
