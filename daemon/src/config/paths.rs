//! Default directories, and turning the paths people write into absolute paths and URLs.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// A per-user base directory, or the temp dir for an account with no home directory at all.
pub(crate) fn user_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(std::env::temp_dir)
}

/// Expands a leading `~/` and makes `path` absolute against `base`; `field` names it in errors.
pub(crate) fn resolve_path(
    field: &'static str,
    path: &Path,
    base: &Path,
) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::Invalid {
            field,
            message: "is an empty path".into(),
        });
    }
    if let Ok(rest) = path.strip_prefix("~") {
        let home = dirs::home_dir().ok_or_else(|| ConfigError::Invalid {
            field,
            message: format!(
                "{} starts with `~` but there is no home directory",
                path.display()
            ),
        })?;
        return Ok(home.join(rest));
    }
    Ok(base.join(path))
}

/// A store URL as given, or a plain path turned into a `file://` URL (relative to `base`).
pub(crate) fn resolve_store_url(url: &str, base: &Path) -> Result<String, ConfigError> {
    if url.contains("://") {
        return Ok(url.to_string());
    }
    // `s3:/bucket` or `file:store` is a mistyped URL, not a directory named `s3:`.
    let looks_like_scheme = url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if looks_like_scheme {
        return Err(ConfigError::Invalid {
            field: "store.url",
            message: format!(
                "{url:?} is not a URL (no `scheme://`) nor a path; expected file://, s3://, \
                 az://, gs://, memory:// or a directory path"
            ),
        });
    }
    Ok(file_url(&resolve_path("store.url", Path::new(url), base)?))
}

/// `file://` URL of an absolute path, escaping the characters a URL parser would misread.
pub(crate) fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '#' => url.push_str("%23"),
            '?' => url.push_str("%3F"),
            ' ' => url.push_str("%20"),
            c => url.push(c),
        }
    }
    url
}
