//! Opening stores from URLs: supported schemes, refused forms, options, display URLs.

use trtfarm_store::{StoreError, open};

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn unknown_scheme_names_the_supported_ones() {
    let err = open("ftp://cache.example/engines", &[])
        .err()
        .expect("ftp must be refused");
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
    let message = err.to_string();
    for expected in ["ftp", "file://", "memory://", "s3://", "az://", "gs://"] {
        assert!(
            message.contains(expected),
            "{expected} missing from: {message}"
        );
    }
}

#[test]
fn a_bare_path_is_refused_with_a_hint() {
    let err = open("/var/cache/trtfarm", &[]).err().expect("bare path");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("file:///"), "{err}");
}

#[test]
fn relative_file_urls_are_refused() {
    for url in ["file://relative/dir", "file:relative/dir", "file:./dir"] {
        let err = open(url, &[])
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        assert!(
            matches!(err, StoreError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(err.to_string().contains("absolute"), "{url}: {err}");
    }
}

#[test]
fn file_urls_create_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let url = format!("file://{}", root.display());
    let store = open(&url, &[]).unwrap();
    assert_eq!(store.kind(), "file");
    assert_eq!(store.display_url(), url);
    assert!(root.is_dir());

    let localhost = format!("file://localhost{}", dir.path().join("other").display());
    assert_eq!(open(&localhost, &[]).unwrap().kind(), "file");
}

#[test]
fn memory_urls_open_independent_stores() {
    let store = open("memory://", &[]).unwrap();
    assert_eq!(store.kind(), "memory");
    assert_eq!(store.display_url(), "memory://");
    assert_eq!(open("memory:///prefix", &[]).unwrap().kind(), "memory");
    let err = open("memory://somehost", &[]).err().expect("host refused");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
}

#[test]
fn local_backends_refuse_options() {
    let err = open("memory://", &opts(&[("aws_region", "us-east-1")]))
        .err()
        .expect("options on memory://");
    assert!(matches!(err, StoreError::InvalidOption { ref key, .. } if key == "aws_region"));
}

#[test]
fn s3_opens_with_options_and_hides_credentials() {
    let store = open(
        "s3://user:secret@engines/team-a?versionId=1",
        &opts(&[
            ("aws_region", "eu-west-1"),
            ("aws_access_key_id", "AKIDEXAMPLE"),
            ("aws_secret_access_key", "wJalrXUtnFEMI"),
            ("aws_endpoint", "http://127.0.0.1:9000"),
            ("aws_allow_http", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(store.kind(), "s3");
    let shown = store.display_url();
    assert!(
        shown.starts_with("s3://") && shown.contains("engines/team-a"),
        "{shown}"
    );
    assert!(
        !shown.contains("secret") && !shown.contains("versionId"),
        "{shown}"
    );
}

#[test]
fn unknown_backend_options_are_refused_by_name() {
    let err = open("s3://engines/team-a", &opts(&[("aws_regoin", "eu-west-1")]))
        .err()
        .expect("typo must be refused");
    match &err {
        StoreError::InvalidOption { key, url, .. } => {
            assert_eq!(key, "aws_regoin");
            assert_eq!(url, "s3://engines/team-a");
        }
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn azure_opens_under_both_schemes() {
    for url in ["az://engines/team-a", "azure://engines/team-a"] {
        let store = open(url, &opts(&[("azure_storage_use_emulator", "true")])).unwrap();
        assert_eq!(store.kind(), "azure", "{url}");
    }
}
