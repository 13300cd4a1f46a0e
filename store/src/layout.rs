//! Where things live inside a store root:
//!
//! ```text
//! cas/blake3/<first 2 hex>/<64 hex>           blobs
//! ac/v1/<64 hex>                              action results
//! quarantine/blake3/<64 hex>.<unix millis>    blobs that failed verification
//! ```

use object_store::path::Path;
use url::Url;

use crate::admin::Area;
use crate::digest::{ActionKey, BlobDigest};

/// Where a `file://` store (`store_url`) keeps blob `digest` on this machine,
/// `<dir>/cas/blake3/<2 hex>/<64 hex>`; `None` for any other kind of store. For a reader on
/// the same host that copies the file itself: it must verify what it copied, as the store does.
pub fn local_blob_file(store_url: &str, digest: &BlobDigest) -> Option<std::path::PathBuf> {
    let url = Url::parse(store_url).ok()?;
    if url.scheme() != "file" {
        return None;
    }
    let hex = digest.hex();
    Some(
        url.to_file_path()
            .ok()?
            .join("cas")
            .join("blake3")
            .join(&hex[..2])
            .join(&hex),
    )
}

/// Maps digests and keys to object paths under a root prefix.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    root: Path,
}

impl Layout {
    /// A layout rooted at `root` (the empty path for a store that owns its whole namespace).
    pub(crate) fn new(root: Path) -> Self {
        Self { root }
    }

    /// `cas/blake3/<2 hex>/<64 hex>`: the blob's object path.
    pub(crate) fn blob(&self, digest: &BlobDigest) -> Path {
        let hex = digest.hex();
        self.root
            .clone()
            .join("cas")
            .join("blake3")
            .join(&hex[..2])
            .join(hex.as_str())
    }

    /// `ac/v1/<64 hex>`: the action result's object path.
    pub(crate) fn action(&self, key: &ActionKey) -> Path {
        self.root
            .clone()
            .join("ac")
            .join("v1")
            .join(key.hex().as_str())
    }

    /// `cas`, `ac` or `quarantine`: the object path prefix of one area.
    pub(crate) fn area(&self, area: Area) -> Path {
        self.root.clone().join(area.dir())
    }

    /// `location` relative to the root, parts joined by `/` (all of it if outside the root).
    pub(crate) fn relative(&self, location: &Path) -> String {
        match location.prefix_match(&self.root) {
            Some(parts) => parts
                .map(|part| part.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => location.to_string(),
        }
    }

    /// The object path of `relative` (as [`Self::relative`] writes it), checked but not
    /// re-encoded, so a listed name maps back to the same object.
    pub(crate) fn object(&self, relative: &str) -> Result<Path, object_store::path::Error> {
        let relative = Path::parse(relative)?;
        Ok(self.root.parts().chain(relative.parts()).collect())
    }

    /// `quarantine/blake3/<64 hex>.<unix millis>`: where a corrupt blob is moved.
    pub(crate) fn quarantine(&self, digest: &BlobDigest, unix_millis: u128) -> Path {
        self.root
            .clone()
            .join("quarantine")
            .join("blake3")
            .join(format!("{}.{unix_millis}", digest.hex()).as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let digest = BlobDigest::of_bytes(b"x");
        let hex = digest.hex();
        let key = ActionKey([0xab; 32]);

        let bare = Layout::new(Path::default());
        assert_eq!(
            bare.blob(&digest).as_ref(),
            format!("cas/blake3/{}/{hex}", &hex[..2])
        );
        assert_eq!(
            bare.action(&key).as_ref(),
            format!("ac/v1/{}", "ab".repeat(32))
        );
        assert_eq!(
            bare.quarantine(&digest, 17).as_ref(),
            format!("quarantine/blake3/{hex}.17")
        );

        let prefixed = Layout::new(Path::from("team/cache"));
        assert_eq!(
            prefixed.blob(&digest).as_ref(),
            format!("team/cache/cas/blake3/{}/{hex}", &hex[..2])
        );
    }

    #[test]
    fn relative_paths_map_back_to_the_same_objects() {
        let digest = BlobDigest::of_bytes(b"x");
        for root in ["", "team/cache"] {
            let layout = Layout::new(Path::from(root));
            let blob = layout.blob(&digest);
            let relative = layout.relative(&blob);
            assert!(relative.starts_with("cas/blake3/"), "{relative}");
            assert_eq!(layout.object(&relative).unwrap(), blob);
            // A name that needs encoding survives the round trip unchanged.
            let odd = layout.area(Area::Quarantine).join("a b%.1");
            assert_eq!(layout.object(&layout.relative(&odd)).unwrap(), odd);
        }
    }
}
