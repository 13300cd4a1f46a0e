//! Tests of the token file (parsing, permissions) and of the bearer check.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tonic::Code;
use tonic::metadata::MetadataMap;

use super::*;

const ALPHA: &str = "alpha-0123456789abcdef0123456789abcdef";
const BRAVO: &str = "bravo-0123456789abcdef0123456789abcdef";
const CHARLIE: &str = "charlie-0123456789abcdef0123456789abcd";

/// A token file holding `text` with permission bits `mode`.
fn token_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn set(text: &str) -> Result<TokenSet, TokenFileError> {
    TokenSet::parse(text, Path::new("/etc/trtfarm/tokens"))
}

#[test]
fn a_private_file_loads_every_token_and_skips_blanks_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("# farm tokens\n\n{ALPHA}\n   {BRAVO}  \r\n# {CHARLIE} is retired\n");
    let tokens = TokenSet::load(&token_file(dir.path(), &text, 0o600)).unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.accepts(ALPHA));
    assert!(tokens.accepts(BRAVO));
    assert!(
        !tokens.accepts(CHARLIE),
        "a commented-out token is not a token"
    );
    // Owner-only read is as good as read-write.
    assert!(TokenSet::load(&token_file(dir.path(), ALPHA, 0o400)).is_ok());
}

#[test]
fn a_file_others_may_read_or_write_is_refused_with_the_chmod_fix() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666] {
        let path = token_file(dir.path(), ALPHA, mode);
        let error = TokenSet::load(&path).unwrap_err();
        assert!(
            matches!(error, TokenFileError::Permissions { mode: m, .. } if m == mode),
            "{mode:o}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("has mode 0{mode:o}")),
            "{message}"
        );
        assert!(
            message.contains(&format!("run `chmod 600 {}`", path.display())),
            "{message}"
        );
        assert!(!message.contains(ALPHA), "the token leaked: {message}");
    }
}

#[test]
fn a_missing_file_or_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let error = TokenSet::load(&missing).unwrap_err();
    assert!(matches!(error, TokenFileError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read the token file {}", missing.display())),
        "{error}"
    );
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    let error = TokenSet::load(&sub).unwrap_err();
    assert!(
        matches!(error, TokenFileError::NotATokenFile { .. }),
        "{error:?}"
    );
}

#[test]
fn an_empty_file_or_a_short_or_unsendable_token_is_refused() {
    for text in ["", "\n\n", "# only a comment\n  \n"] {
        let error = set(text).unwrap_err();
        assert!(matches!(error, TokenFileError::Empty { .. }), "{text:?}");
        assert!(error.to_string().contains("holds no token"), "{error}");
    }

    let short = "x".repeat(MIN_TOKEN_LEN - 1);
    let error = set(&format!("{ALPHA}\n\n{short}\n")).unwrap_err();
    assert!(
        matches!(error, TokenFileError::TooShort { line: 3, len, .. } if len == MIN_TOKEN_LEN - 1),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("can be guessed"), "{message}");
    assert!(!message.contains(&short), "the token leaked: {message}");
    assert!(
        set(&"x".repeat(MIN_TOKEN_LEN)).is_ok(),
        "32 bytes are enough"
    );

    for bad in [
        format!("{ALPHA} {BRAVO}"),
        format!("{ALPHA}é"),
        format!("{ALPHA}\u{7}"),
    ] {
        let error = set(&bad).unwrap_err();
        assert!(
            matches!(error, TokenFileError::BadCharacter { line: 1, .. }),
            "{bad:?}: {error:?}"
        );
    }
}

#[test]
fn the_check_accepts_each_token_and_refuses_the_rest() {
    let tokens = set(&format!("{ALPHA}\n{BRAVO}\n{CHARLIE}\n")).unwrap();
    for token in [ALPHA, BRAVO, CHARLIE] {
        assert!(tokens.accepts(token), "{token}");
    }
    let near_misses = [
        String::new(),
        ALPHA[..ALPHA.len() - 1].to_string(),
        format!("{ALPHA}0"),
        ALPHA.to_uppercase(),
        format!("{ALPHA}\n{BRAVO}"),
        "delta-0123456789abcdef0123456789abcdef".to_string(),
    ];
    for wrong in &near_misses {
        assert!(!tokens.accepts(wrong), "{wrong:?}");
    }
    // Nothing of a token is kept, not even in the debug form.
    assert_eq!(format!("{tokens:?}"), "TokenSet(3 tokens)");
}

fn metadata(authorization: Option<&str>) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    if let Some(value) = authorization {
        metadata.insert("authorization", value.parse().unwrap());
    }
    metadata
}

#[test]
fn the_interceptor_says_whether_a_token_is_missing_malformed_or_wrong() {
    let tokens = Arc::new(RwLock::new(set(&format!("{ALPHA}\n{BRAVO}\n")).unwrap()));
    let check = RequireToken::new(Some(Arc::clone(&tokens)));
    for good in [
        format!("Bearer {ALPHA}"),
        format!("bearer {BRAVO}"),
        format!("BEARER  {ALPHA} "),
    ] {
        check.check(&metadata(Some(&good))).unwrap();
    }
    let refused = |value: Option<&str>| {
        let status = check.check(&metadata(value)).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{value:?}");
        assert!(!status.message().contains(ALPHA), "{status:?}");
        status.message().to_string()
    };
    assert_eq!(refused(None), MISSING_TOKEN);
    assert_eq!(refused(Some(ALPHA)), MALFORMED_HEADER, "no scheme");
    assert_eq!(refused(Some(&format!("Basic {ALPHA}"))), MALFORMED_HEADER);
    assert_eq!(refused(Some("Bearer ")), MALFORMED_HEADER);
    assert_eq!(refused(Some(&format!("Bearer {CHARLIE}"))), WRONG_TOKEN);
    assert_eq!(refused(Some("Bearer short")), WRONG_TOKEN);

    // A reload replaces the set the interceptor reads.
    *tokens.write().unwrap() = set(CHARLIE).unwrap();
    check
        .check(&metadata(Some(&format!("Bearer {CHARLIE}"))))
        .unwrap();
    assert_eq!(refused(Some(&format!("Bearer {ALPHA}"))), WRONG_TOKEN);

    // Without a token file every call passes.
    RequireToken::new(None).check(&metadata(None)).unwrap();
}

#[test]
fn the_interceptor_keeps_the_token_from_the_service() {
    use tonic::service::Interceptor;
    let tokens = Arc::new(RwLock::new(set(ALPHA).unwrap()));
    let mut check = RequireToken::new(Some(tokens));
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {ALPHA}").parse().unwrap());
    let passed = check.call(request).unwrap();
    assert!(passed.metadata().get("authorization").is_none());
    let status = check.call(tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[test]
fn a_reload_replaces_the_tokens_and_a_bad_file_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = token_file(dir.path(), ALPHA, 0o600);
    let tokens = Arc::new(RwLock::new(TokenSet::load(&path).unwrap()));

    token_file(dir.path(), &format!("{ALPHA}\n{BRAVO}\n"), 0o600);
    assert_eq!(reload(&path, &tokens).unwrap(), 2);
    assert!(tokens.read().unwrap().accepts(BRAVO));

    // Widened permissions, then an emptied file: refused, and both tokens stay in force.
    token_file(dir.path(), CHARLIE, 0o644);
    let error = reload(&path, &tokens).unwrap_err();
    assert!(
        matches!(error, TokenFileError::Permissions { .. }),
        "{error:?}"
    );
    token_file(dir.path(), "# all gone\n", 0o600);
    assert!(matches!(
        reload(&path, &tokens).unwrap_err(),
        TokenFileError::Empty { .. }
    ));
    let kept = tokens.read().unwrap();
    assert!(kept.accepts(ALPHA) && kept.accepts(BRAVO) && !kept.accepts(CHARLIE));
}
