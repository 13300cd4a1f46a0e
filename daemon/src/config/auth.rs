//! `[auth]` and `[tls]`: who may call the daemon, and whether the connection is encrypted.

use std::path::PathBuf;

use serde::Deserialize;

/// `[auth]`: bearer tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// File of bearer tokens, one per line (blank lines and lines starting with `#` are
    /// ignored). With it, every `trtfarm.v1.Farm` call (and reflection) must send
    /// `authorization: Bearer <token>` with one of them; health checks stay open. Several
    /// tokens let one be replaced without downtime: add the new one, `kill -HUP` the daemon,
    /// move the clients, remove the old one, `kill -HUP` again. The daemon refuses to start if
    /// the file is readable or writable by group or others (`chmod 600` it), holds no token, or
    /// holds a token shorter than 32 bytes. Required when `listen` is not a loopback address.
    ///
    /// Default: none (no token needed, allowed on loopback only). Example:
    /// `token_file = "/etc/trtfarm/tokens"`. Flag `--token-file`, env `TRTFARMD_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
}

/// `[tls]`: serve gRPC over TLS (rustls). Both fields or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM, leaf first. Its names (DNS or IP SANs) must match
    /// the address clients dial.
    ///
    /// Default: none (plain HTTP/2). Example: `cert_file = "/etc/trtfarm/tls/cert.pem"`.
    /// Flag `--tls-cert`, env `TRTFARMD_TLS_CERT`.
    pub cert_file: Option<PathBuf>,

    /// The private key of `cert_file`, PEM (PKCS#8, PKCS#1 or SEC1).
    ///
    /// Default: none. Example: `key_file = "/etc/trtfarm/tls/key.pem"`.
    /// Flag `--tls-key`, env `TRTFARMD_TLS_KEY`.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on.
    pub fn files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}
