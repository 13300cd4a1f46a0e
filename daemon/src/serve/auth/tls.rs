//! The server's TLS identity, read from the PEM files `[tls]` names.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Identity, ServerTlsConfig};

/// Longest a client may take over the TLS handshake: an unauthenticated peer must not hold a
/// connection open indefinitely.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A tonic server builder serving TLS with the certificate chain in `cert` and its key in
/// `key`. Fails here, before the daemon listens, on unreadable or unusable files.
pub fn server_with_tls(cert: &Path, key: &Path) -> anyhow::Result<tonic::transport::Server> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    let key_pem = std::fs::read(key)
        .with_context(|| format!("cannot read the TLS private key {}", key.display()))?;
    let identity = Identity::from_pem(cert_pem, key_pem);
    tonic::transport::Server::builder()
        .tls_config(
            ServerTlsConfig::new()
                .identity(identity)
                .timeout(HANDSHAKE_TIMEOUT),
        )
        .with_context(|| {
            format!(
                "cannot serve TLS with the certificate {} and the key {} (PEM expected; does \
                 the key belong to the certificate?)",
                cert.display(),
                key.display()
            )
        })
}
