//! Reaching a daemon: one named by URL (`http://`, `https://` with its bearer token and TLS, see
//! [`credentials`]; or `unix:/path` for a Unix socket), or the private local one, found or
//! started through its info file (see [`crate::local_daemon`]). All give the same client type.

mod credentials;
mod reattach;

pub use reattach::{Losses, Reconnect, is_connection_loss};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use trtfarm_proto::local::{default_state_dir, endpoint_socket};
use trtfarm_proto::v1::farm_client::FarmClient;

use crate::cli::DaemonArgs;
use crate::local_daemon;

/// Largest message accepted from the daemon (job lists, results).
const MAX_MESSAGE: usize = 16 << 20;

/// HTTP/2 flow-control window, per stream and per connection.
const WINDOW: u32 = 8 << 20;

/// Ping interval, and how long a ping may go unanswered, before the connection counts as lost.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// How long establishing a connection may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do about a daemon certificate the client does not trust.
const UNTRUSTED_HINT: &str = "hint: give the CA certificate that signed the daemon's \
     certificate with --tls-ca PATH (or TRTFARM_TLS_CA); a self-signed certificate works as its \
     own CA only if it is not marked as a CA (openssl req -x509 ... -addext \
     basicConstraints=critical,CA:FALSE)";

/// Why a Unix socket refuses a user, and what to do instead.
const PRIVATE_SOCKET_HINT: &str = "hint: a daemon on a Unix socket serves only the user who \
     started it; leave out --daemon to use (or start) your own local daemon";

/// What to check when nothing answers at a daemon's address.
const NOT_LISTENING_HINT: &str = "hint: is `trtfarmd serve` running there, on that port? Leave \
     out --daemon (and TRTFARM_DAEMON) to use your own local daemon, started on demand";

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

/// A client for the daemon `args` name: `--daemon URL` (see [`connect_remote`]), else the local
/// daemon, started (or restarted, when its version differs from this client's) on demand.
pub async fn connect(args: &DaemonArgs) -> anyhow::Result<FarmConnection> {
    match &args.daemon {
        Some(url) => connect_remote(url, args).await,
        None => Ok(local_daemon::ensure(&local_dir(args)).await?.client),
    }
}

/// A client for the daemon at `url`, sending the token of `--token` or `--token-file`, over TLS
/// for an `https://` URL (trusting `--tls-ca`, else the platform's roots).
pub async fn connect_remote(url: &str, args: &DaemonArgs) -> anyhow::Result<FarmConnection> {
    let token = credentials::token(args)?;
    let tls = credentials::tls_config(url, args.tls_ca.as_deref())?;
    if token.is_some() && tls.is_none() && !is_loopback_url(url) {
        eprintln!("warning: sending the bearer token to {url} unencrypted; use an https:// URL");
    }
    dial(url, token.as_deref(), tls, CONNECT_TIMEOUT).await
}

/// Connects to the daemon at `endpoint`, sending `token` with every call (an `https://`
/// endpoint trusts the platform's roots).
pub async fn open(
    endpoint: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<FarmConnection> {
    let tls = credentials::tls_config(endpoint, None)?;
    dial(endpoint, token, tls, timeout).await
}

/// Connects to `endpoint` with `tls` (none: plain HTTP/2), sending `token` with every call.
async fn dial(
    endpoint: &str,
    token: Option<&str>,
    tls: Option<ClientTlsConfig>,
    timeout: Duration,
) -> anyhow::Result<FarmConnection> {
    let interceptor = BearerToken::new(token)?;
    let mut builder = Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("`{endpoint}` is not a daemon URL"))?;
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).with_context(|| {
            format!(
                "cannot set up TLS for {endpoint} (without --tls-ca, the platform's root \
                     certificates are trusted)"
            )
        })?;
    }
    let channel = builder
        .connect_timeout(timeout)
        // Blob streams need more than HTTP/2's 64 KiB default window to run at disk speed. A
        // fixed window, not an adaptive one: an adaptive window starts at 64 KiB, and h2 then
        // lets only about 32 KiB of small frames wait unread before it drops the connection
        // ("too_many_data_frames"), which a job's stream of log lines reached whenever this
        // process was starved of CPU.
        .initial_connection_window_size(WINDOW)
        .initial_stream_window_size(WINDOW)
        .tcp_nodelay(true)
        // A daemon that stops answering (its host gone, a partition, a peer that never speaks
        // HTTP/2) is noticed by unanswered pings instead of being waited for forever; the
        // commands that follow jobs then reach the daemon again.
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|error| {
            let error = anyhow::Error::from(error);
            let chain = format!("{error:#}");
            let hint = if chain.contains("invalid peer certificate") {
                UNTRUSTED_HINT
            } else if endpoint_socket(endpoint).is_some() && refused_by_socket(&error) {
                PRIVATE_SOCKET_HINT
            } else {
                NOT_LISTENING_HINT
            };
            anyhow::anyhow!(
                "cannot reach the daemon at {endpoint}: {}\n{hint}",
                distinct_causes(&error)
            )
        })?;
    Ok(FarmClient::with_interceptor(channel, interceptor).max_decoding_message_size(MAX_MESSAGE))
}

/// An error's causes joined with `: `, leaving out a cause its predecessor already ends with
/// (the transport repeats the operating system's message at several levels).
fn distinct_causes(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain().map(|cause| cause.to_string()) {
        // tonic's wrapper around every connection failure says nothing its causes do not.
        if cause == "transport error" {
            continue;
        }
        if !line.ends_with(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

/// Whether connecting failed because the socket (or its directory) is not ours to use.
fn refused_by_socket(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    }) || format!("{error:#}").contains("Permission denied")
}

/// Whether `url` names this machine (a Unix socket, `localhost` or a loopback address).
fn is_loopback_url(url: &str) -> bool {
    if endpoint_socket(url).is_some() {
        return true;
    }
    let host = url
        .parse::<tonic::codegen::http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_string))
        .unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a status code adds to the daemon's message, in words; `None` where the message says it
/// all (a refused request's message names what is wrong and the fix).
fn code_words(code: Code) -> Option<&'static str> {
    match code {
        Code::Ok
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Aborted => None,
        Code::Cancelled => Some("cancelled"),
        Code::Unknown | Code::Internal => Some("the daemon failed"),
        Code::DeadlineExceeded => Some("timed out"),
        Code::PermissionDenied => Some("permission denied"),
        Code::ResourceExhausted => Some("the daemon is out of resources"),
        Code::Unimplemented => {
            Some("the daemon does not know this request (is it older than this client?)")
        }
        Code::Unavailable => Some("the daemon is unavailable"),
        Code::DataLoss => Some("corrupt data"),
        Code::Unauthenticated => Some("not authenticated"),
    }
}

/// A daemon's answer in words: `corrupt data: <the daemon's message>`, or the message alone when
/// the code adds nothing to it; a status made on this side (a connection that failed) ends with
/// its causes, each said once. A message of several lines (rendered manifest diagnostics) is
/// kept whole.
pub fn describe_status(status: &Status) -> String {
    let mut text = match (code_words(status.code()), status.message().trim()) {
        (Some(words), "") => words.to_string(),
        (None, "") => "the daemon refused the request".to_string(),
        (Some(words), message) => format!("{words}: {message}"),
        (None, message) => message.to_string(),
    };
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let said = error.to_string();
        if !said.is_empty() && !text.ends_with(&said) && !said.ends_with("transport error") {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = error.source();
    }
    text
}

/// Turns an error whose cause is a gRPC status into one line, `what: <the status in words>`;
/// any other error gets `what` as context.
pub fn rpc_error(what: impl std::fmt::Display, error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<Status>() {
        Some(status) => anyhow::anyhow!("{what}: {}", describe_status(status)),
        None => error.context(what.to_string()),
    }
}

/// An error as a person should read it: where a gRPC status is among its causes, the contexts
/// above it followed by [`describe_status`], instead of tonic's `code: '...', message: ...,
/// source: ...` form.
pub fn humanize(error: anyhow::Error) -> anyhow::Error {
    let Some(status) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Status>())
    else {
        return error;
    };
    let mut parts: Vec<String> = error
        .chain()
        .take_while(|cause| cause.downcast_ref::<Status>().is_none())
        .map(|cause| cause.to_string())
        .collect();
    parts.push(describe_status(status));
    anyhow::anyhow!("{}", parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_among_the_causes_is_said_in_words() {
        let error = anyhow::Error::from(Status::unavailable("tcp connect error"))
            .context("cannot list jobs");
        assert_eq!(
            format!("{:#}", humanize(error)),
            "cannot list jobs: the daemon is unavailable: tcp connect error"
        );
        let plain = humanize(anyhow::anyhow!("no such file").context("reading engine.toml"));
        assert_eq!(format!("{plain:#}"), "reading engine.toml: no such file");
    }

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
    fn loopback_urls_are_told_from_remote_ones() {
        for url in [
            "http://127.0.0.1:50051",
            "http://localhost:1",
            "http://[::1]:50051",
            "unix:/run/user/1000/daemon.sock",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in ["http://farm:50051", "http://10.0.0.5:1", "not a url"] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn repeated_causes_are_said_once() {
        let error = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES))
            .context("Permission denied (os error 13)")
            .context("transport error");
        assert_eq!(distinct_causes(&error), "Permission denied (os error 13)");
    }

    #[test]
    fn statuses_read_as_one_line_with_the_code_in_words() {
        let status = Status::data_loss("blob blake3:ab no longer matches its digest");
        assert_eq!(
            describe_status(&status),
            "corrupt data: blob blake3:ab no longer matches its digest"
        );
        assert_eq!(
            describe_status(&Status::unavailable("")),
            "the daemon is unavailable"
        );
        let refused = Status::failed_precondition("engine `x`: toolchain 1.6 is not installed");
        assert_eq!(
            describe_status(&refused),
            "engine `x`: toolchain 1.6 is not installed"
        );
        let error = rpc_error("fetch x", anyhow::Error::from(Status::not_found("no blob")));
        assert_eq!(format!("{error:#}"), "fetch x: no blob");
        for code in 0..=16 {
            let text = describe_status(&Status::new(Code::from(code), ""));
            assert!(!text.contains('_') && !text.is_empty(), "{code}: {text}");
        }
    }
}
