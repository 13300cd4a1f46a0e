//! [`open`]: from a store URL (plus backend options) to a [`ContentStore`].

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::backend::{Backend, ObjectContentStore};
use crate::layout::Layout;
use crate::{ContentStore, StoreError};

/// The store URL forms [`open`] accepts, as shown in its error messages.
pub const SUPPORTED_URLS: &str = "file:///absolute/dir, memory://, s3://bucket/prefix, \
     az://container/prefix (or azure://), gs://bucket/prefix";

/// Builds a cloud backend: environment first, then `options`, refusing unknown option keys.
macro_rules! cloud_store {
    ($builder:ty, $key:ty, $kind:literal, $url:expr, $display:expr, $options:expr) => {{
        let mut builder = <$builder>::from_env().with_url($url.as_str());
        for (key, value) in $options {
            let parsed: $key =
                key.to_ascii_lowercase()
                    .parse()
                    .map_err(|_| StoreError::InvalidOption {
                        url: $display.clone(),
                        key: key.clone(),
                        reason: format!(
                            "not an option of the {} backend (see object_store's {})",
                            $kind,
                            stringify!($key)
                        ),
                    })?;
            builder = builder.with_config(parsed, value.clone());
        }
        let store = builder.build().map_err(|source| {
            StoreError::backend(
                format!("configuring the {} store {}", $kind, $display),
                source,
            )
        })?;
        Arc::new(store) as Arc<dyn ObjectStore>
    }};
}

/// Opens the store a URL names.
///
/// - `file:///abs/dir`: a local directory, created if missing; writes are fsynced. Relative
///   paths (`file://dir`, `file:dir`) are refused: they would depend on the daemon's working
///   directory.
/// - `memory://`: a fresh, empty in-process store per call (for tests and dry runs).
/// - `s3://bucket/prefix`, `az://container/prefix` (or `azure://`), `gs://bucket/prefix`:
///   configured from the environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`) with `options` (keys such as
///   `aws_endpoint`, `aws_access_key_id`, `aws_allow_http`) applied on top. An option the backend
///   does not know is refused rather than ignored. An S3-compatible server takes
///   `aws_endpoint=http://host:port` and `aws_allow_http=true`; an Azure emulator (Azurite) takes
///   `azure_storage_endpoint=http://host:port/<account>` with `azure_allow_http=true` and the
///   account name and key (see `test_servers` for working sets).
///
/// The URL's path is the store root; everything is kept below it.
pub fn open(url: &str, options: &[(String, String)]) -> Result<Arc<dyn ContentStore>, StoreError> {
    let parsed = Url::parse(url).map_err(|e| StoreError::InvalidUrl {
        url: url.to_string(),
        reason: format!(
            "{e}; a store URL looks like one of {SUPPORTED_URLS} (a local directory is written \
             file:///absolute/dir)"
        ),
    })?;
    let display = display_url(&parsed);
    let no_options = |kind: &str| match options.first() {
        Some((key, _)) => Err(StoreError::InvalidOption {
            url: display.clone(),
            key: key.clone(),
            reason: format!("the {kind} backend takes no options"),
        }),
        None => Ok(()),
    };

    let (store, root, kind): (Arc<dyn ObjectStore>, Path, &'static str) = match parsed.scheme() {
        "file" => {
            no_options("file")?;
            (
                open_local_dir(url, &parsed, &display)?,
                Path::default(),
                "file",
            )
        }
        "memory" => {
            no_options("memory")?;
            if parsed.host_str().is_some_and(|host| !host.is_empty()) {
                return Err(StoreError::InvalidUrl {
                    url: display,
                    reason: "memory:// takes no host; write memory:// or memory:///prefix".into(),
                });
            }
            let root = url_prefix(&parsed, &display)?;
            (Arc::new(InMemory::new()), root, "memory")
        }
        "s3" => {
            let store = cloud_store!(
                AmazonS3Builder,
                AmazonS3ConfigKey,
                "s3",
                parsed,
                display,
                options
            );
            (store, url_prefix(&parsed, &display)?, "s3")
        }
        "az" | "azure" => {
            let store = cloud_store!(
                MicrosoftAzureBuilder,
                AzureConfigKey,
                "azure",
                parsed,
                display,
                options
            );
            (store, url_prefix(&parsed, &display)?, "azure")
        }
        "gs" => {
            let store = cloud_store!(
                GoogleCloudStorageBuilder,
                GoogleConfigKey,
                "gcs",
                parsed,
                display,
                options
            );
            (store, url_prefix(&parsed, &display)?, "gcs")
        }
        other => {
            return Err(StoreError::UnsupportedUrl(format!(
                "{display:?}: scheme {other:?} is not supported; use one of {SUPPORTED_URLS}"
            )));
        }
    };
    Ok(Arc::new(ObjectContentStore::new(Backend {
        store,
        layout: Layout::new(root),
        kind,
        display_url: display,
    })))
}

/// The local directory a `file://` URL names, created if missing.
fn open_local_dir(raw: &str, url: &Url, display: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let refuse = |reason: String| StoreError::InvalidUrl {
        url: display.to_string(),
        reason,
    };
    let absolute_form = raw
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"));
    let local_host = matches!(url.host_str(), None | Some("") | Some("localhost"));
    if !absolute_form || !local_host {
        return Err(refuse(format!(
            "a file store must name an absolute directory, like file:///var/cache/trtfarm \
             (three slashes); relative paths are refused because they would depend on the \
             daemon's working directory{}",
            match url.host_str() {
                Some(host) if !local_host => format!(" (here {host:?} was read as a host name)"),
                _ => String::new(),
            }
        )));
    }
    let dir = url
        .to_file_path()
        .map_err(|()| refuse("not a local file path".into()))?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        StoreError::io(format!("creating the store directory {}", dir.display()), e)
    })?;
    let local = LocalFileSystem::new_with_prefix(&dir).map_err(|source| {
        StoreError::backend(
            format!("opening the store directory {}", dir.display()),
            source,
        )
    })?;
    Ok(Arc::new(local.with_fsync(true)))
}

/// The URL's path as the store root (no leading or trailing slash).
fn url_prefix(url: &Url, display: &str) -> Result<Path, StoreError> {
    Path::from_url_path(url.path().trim_matches('/')).map_err(|e| StoreError::InvalidUrl {
        url: display.to_string(),
        reason: format!("its path cannot be a store root: {e}"),
    })
}

/// The URL without password, query or fragment, for messages and logs. (The user part stays:
/// in `az://container@account…` it is the container, not a credential.)
fn display_url(url: &Url) -> String {
    let mut clean = url.clone();
    // Fails only for URLs that cannot have credentials, which then have none to remove.
    let _ = clean.set_password(None);
    clean.set_query(None);
    clean.set_fragment(None);
    clean.to_string()
}
