//! `listen`: a TCP address, or a Unix socket that only its owner can reach. The text form is
//! the same in `daemon.toml`, `--listen` and `TRTFARMD_LISTEN`: `127.0.0.1:50051`,
//! `[::1]:50051`, or `unix:/path/to/daemon.sock`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserializer;
use serde::de::{self, Visitor};
use trtfarm_proto::local::UNIX_SCHEME;

use super::values::parse_socket_addr;
use super::{ConfigError, resolve_path};

/// What a listen address may look like, for error messages.
const LISTEN_HELP: &str = "expected \"unix:/path/to/daemon.sock\" (only you can reach it) or an \
     IP address and port like \"127.0.0.1:50051\" or \"[::1]:50051\" (no host names)";

/// Where the gRPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address. On loopback every user of this machine can connect; elsewhere, anyone
    /// who can reach it. Either way only a token (`auth.token_file`) tells callers apart.
    Tcp(SocketAddr),
    /// A Unix socket. Only the user who started the daemon can connect: the socket is mode
    /// 0600 (its default directory, `state_dir`, 0700) and every connection's peer uid is
    /// checked when it is accepted.
    Unix(PathBuf),
}

impl ListenAddr {
    /// The TCP address, when it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(addr) => Some(*addr),
            ListenAddr::Unix(_) => None,
        }
    }

    /// Makes a relative socket path absolute against `base` (`~/` is the home directory).
    pub(crate) fn resolve(self, base: &Path) -> Result<ListenAddr, ConfigError> {
        match self {
            ListenAddr::Unix(path) => Ok(ListenAddr::Unix(resolve_path("listen", &path, base)?)),
            tcp => Ok(tcp),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenAddr, String> {
        parse_listen(text)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "{UNIX_SCHEME}{}", path.display()),
        }
    }
}

/// Parses a listen address: `unix:PATH`, else an IP socket address.
pub(crate) fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    let trimmed = text.trim();
    match trimmed.strip_prefix(UNIX_SCHEME) {
        Some("") => Err(format!(
            "invalid address {text:?}: no path after `unix:`; {LISTEN_HELP}"
        )),
        Some(path) => Ok(ListenAddr::Unix(PathBuf::from(path))),
        None => parse_socket_addr(trimmed)
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("invalid address {text:?}: {LISTEN_HELP}")),
    }
}

/// Serde adapter for `listen` (absent = `None`, the socket in `state_dir`).
pub(crate) fn de_opt_listen<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ListenAddr>, D::Error> {
    deserializer.deserialize_any(ListenVisitor).map(Some)
}

/// Visits the text of a listen address.
struct ListenVisitor;

impl Visitor<'_> for ListenVisitor {
    type Value = ListenAddr;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(LISTEN_HELP)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ListenAddr, E> {
        parse_listen(value).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_unix_sockets_or_ip_and_port() {
        assert_eq!(
            parse_listen("unix:/run/trtfarm/daemon.sock"),
            Ok(ListenAddr::Unix("/run/trtfarm/daemon.sock".into()))
        );
        assert_eq!(
            parse_listen(" 127.0.0.1:50051 "),
            Ok(ListenAddr::Tcp("127.0.0.1:50051".parse().unwrap()))
        );
        let error = parse_listen("unix:").unwrap_err();
        assert!(error.contains("no path after `unix:`"), "{error}");
        let error = parse_listen("localhost:50051").unwrap_err();
        assert!(
            error.contains("no host names") && error.contains("unix:/"),
            "{error}"
        );
    }

    #[test]
    fn listen_addresses_print_as_they_are_written() {
        for text in ["unix:/run/d.sock", "127.0.0.1:50051", "[::1]:7"] {
            assert_eq!(parse_listen(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_relative_socket_is_resolved_and_tcp_is_left_alone() {
        let base = Path::new("/etc/trtfarm");
        let socket = parse_listen("unix:run/d.sock")
            .unwrap()
            .resolve(base)
            .unwrap();
        assert_eq!(socket, ListenAddr::Unix("/etc/trtfarm/run/d.sock".into()));
        let tcp = parse_listen("127.0.0.1:1").unwrap();
        assert_eq!(tcp.clone().resolve(base).unwrap(), tcp);
        assert_eq!(tcp.tcp(), Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(socket.tcp(), None);
    }
}
