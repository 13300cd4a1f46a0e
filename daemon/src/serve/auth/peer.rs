//! The check every call on a Unix socket passes: the caller's uid, as the kernel reports it for
//! the connection (`SO_PEERCRED`), must be the daemon's own. The socket's mode and directory
//! keep other users from connecting at all; this is what still holds if those were loosened,
//! or if the socket was placed somewhere others can reach, and it answers with a reason rather
//! than a dropped connection.

use tonic::service::Interceptor;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

/// A tonic interceptor (for the whole server, health included) that refuses calls arriving on a
/// Unix socket from any uid but `owner` with `PERMISSION_DENIED`. Calls over TCP carry no Unix
/// peer and pass through to the token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequireOwner {
    /// The only uid admitted: the daemon's own.
    pub owner: u32,
}

/// Who called over a Unix socket, as far as the connection tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixPeer {
    /// Not a Unix socket connection (TCP).
    NotUnix,
    /// A Unix socket peer the kernel could not identify.
    Unknown,
    /// A Unix socket peer running as this uid.
    Uid(u32),
}

impl RequireOwner {
    /// Why a call from `peer` is refused, if it is.
    pub fn check(&self, peer: UnixPeer) -> Result<(), Status> {
        match peer {
            UnixPeer::NotUnix => Ok(()),
            UnixPeer::Uid(uid) if uid == self.owner => Ok(()),
            UnixPeer::Uid(uid) => Err(Status::permission_denied(format!(
                "this daemon is private to the user who started it (uid {}); you are uid {uid}: \
                 use your own local daemon (leave out --daemon and --daemon-dir)",
                self.owner
            ))),
            UnixPeer::Unknown => Err(Status::permission_denied(
                "this daemon is private to the user who started it, and the kernel did not say \
                 who is calling",
            )),
        }
    }
}

/// The peer of the connection `request` came in on.
fn peer_of<T>(request: &Request<T>) -> UnixPeer {
    match request.extensions().get::<UdsConnectInfo>() {
        None => UnixPeer::NotUnix,
        Some(info) => info
            .peer_cred
            .map_or(UnixPeer::Unknown, |cred| UnixPeer::Uid(cred.uid())),
    }
}

impl Interceptor for RequireOwner {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let peer = peer_of(&request);
        if let Err(status) = self.check(peer) {
            tracing::warn!(?peer, "refused a call from another user");
            return Err(status);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_gets_through_a_unix_socket_not_even_root() {
        let check = RequireOwner { owner: 1000 };
        assert!(check.check(UnixPeer::Uid(1000)).is_ok());
        assert!(check.check(UnixPeer::NotUnix).is_ok(), "TCP: tokens decide");
        for peer in [UnixPeer::Uid(1001), UnixPeer::Uid(0), UnixPeer::Unknown] {
            let status = check.check(peer).unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{peer:?}");
            assert!(
                status.message().contains("private to the user"),
                "{status:?}"
            );
        }
        let status = check.check(UnixPeer::Uid(1001)).unwrap_err();
        assert!(
            status.message().contains("(uid 1000); you are uid 1001"),
            "{status:?}"
        );
    }

    #[test]
    fn a_request_without_unix_connect_info_came_over_tcp() {
        let mut check = RequireOwner { owner: 1000 };
        assert_eq!(peer_of(&Request::new(())), UnixPeer::NotUnix);
        assert!(check.call(Request::new(())).is_ok());
        let mut request = Request::new(());
        request.extensions_mut().insert(UdsConnectInfo {
            peer_addr: None,
            peer_cred: None,
        });
        assert_eq!(peer_of(&request), UnixPeer::Unknown);
        assert!(check.call(request).is_err());
    }
}
