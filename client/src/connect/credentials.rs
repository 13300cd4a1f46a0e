//! What `trtfarm` proves and trusts when it dials a remote daemon: the bearer token
//! (`--token`, or the first token of `--token-file`) and, for `https://` URLs, the CA
//! certificates the daemon's certificate must chain to.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::cli::DaemonArgs;

/// The bearer token `args` give: `--token`/`TRTFARM_TOKEN`, else the first token line of
/// `--token-file`/`TRTFARM_TOKEN_FILE`; an error if both are given.
pub fn token(args: &DaemonArgs) -> anyhow::Result<Option<String>> {
    match (&args.token, &args.token_file) {
        (Some(_), Some(_)) => bail!(
            "both a token (--token or TRTFARM_TOKEN) and a token file (--token-file or \
             TRTFARM_TOKEN_FILE) are given; give one"
        ),
        (Some(token), None) => Ok(Some(token.clone())),
        (None, Some(path)) => read_token_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

/// The first token in a token file (blank lines and `#` comments skipped). Like the daemon,
/// refuses a file that group or others may read or write: a token anyone can read is no secret.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let what = || format!("cannot read the token file {}", path.display());
    let file = std::fs::File::open(path).with_context(what)?;
    let mode = file.metadata().with_context(what)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "the token file {} has mode {mode:04o}: users other than you can read or change it; \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .with_context(what)?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .with_context(|| {
            format!(
                "the token file {} holds no token (one per line; `#` starts a comment)",
                path.display()
            )
        })
}

/// TLS settings for `url`: none for `http://`; for `https://`, the CA certificates of `ca`
/// (PEM) when given, else the platform's roots. `--tls-ca` replaces the platform roots, as
/// curl's `--cacert` does: a private CA is then the only one trusted.
pub fn tls_config(url: &str, ca: Option<&Path>) -> anyhow::Result<Option<ClientTlsConfig>> {
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    match (https, ca) {
        (false, None) => Ok(None),
        (false, Some(ca)) => bail!(
            "a CA certificate ({}, from --tls-ca or TRTFARM_TLS_CA) is given but the daemon URL \
             {url} is not https://",
            ca.display()
        ),
        (true, None) => Ok(Some(ClientTlsConfig::new().with_native_roots())),
        (true, Some(ca)) => {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                bail!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    ca.display()
                );
            }
            Ok(Some(
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>, token_file: Option<&Path>) -> DaemonArgs {
        DaemonArgs {
            daemon: Some("http://farm:50051".into()),
            token: token.map(str::to_string),
            token_file: token_file.map(Path::to_path_buf),
            tls_ca: None,
            daemon_dir: None,
        }
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_token_comes_from_the_flag_or_the_first_line_of_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write(&path, "# farm\n\n  first-token \nsecond-token\n", 0o600);
        assert_eq!(
            token(&args(None, Some(&path))).unwrap().as_deref(),
            Some("first-token")
        );
        assert_eq!(
            token(&args(Some("flag"), None)).unwrap().as_deref(),
            Some("flag")
        );
        assert_eq!(token(&args(None, None)).unwrap(), None);
        let both = token(&args(Some("flag"), Some(&path))).unwrap_err();
        assert!(both.to_string().contains("give one"), "{both}");

        write(&path, "first-token\n", 0o644);
        let error = format!("{:#}", token(&args(None, Some(&path))).unwrap_err());
        assert!(error.contains("has mode 0644"), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
        assert!(!error.contains("first-token"), "the token leaked: {error}");

        write(&path, "# nothing\n", 0o600);
        let error = format!("{:#}", token(&args(None, Some(&path))).unwrap_err());
        assert!(error.contains("holds no token"), "{error}");
        let error = format!(
            "{:#}",
            token(&args(None, Some(&dir.path().join("absent")))).unwrap_err()
        );
        assert!(error.contains("cannot read the token file"), "{error}");
    }

    #[test]
    fn only_https_urls_get_tls_and_a_ca_needs_https() {
        assert!(tls_config("http://farm:50051", None).unwrap().is_none());
        assert!(tls_config("https://farm:50051", None).unwrap().is_some());
        assert!(tls_config("HTTPS://farm:50051", None).unwrap().is_some());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let error = tls_config("http://farm:50051", Some(&ca)).unwrap_err();
        assert!(error.to_string().contains("is not https://"), "{error}");
        let error = format!("{:#}", tls_config("https://farm", Some(&ca)).unwrap_err());
        assert!(error.contains("cannot read the CA certificate"), "{error}");
        std::fs::write(&ca, "not a certificate").unwrap();
        let error = tls_config("https://farm", Some(&ca)).unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }
}
