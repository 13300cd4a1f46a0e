//! Certificates for TLS tests: a private CA and a server certificate it signed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A private CA and a server certificate it signed for IP 127.0.0.1: (ca.pem, cert.pem,
/// key.pem) under `dir`, the key mode 0600.
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "trtfarm test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "trtfarmd");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca).unwrap();
    (
        write(&dir.join("ca.pem"), &ca.pem(), 0o644),
        write(&dir.join("cert.pem"), &cert.pem(), 0o644),
        write(&dir.join("key.pem"), &key.serialize_pem(), 0o600),
    )
}

fn write(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}
