//! Where things live inside a store root:
//!
//! ```text
//! cas/blake3/<first 2 hex>/<64 hex>           blobs
//! ac/v1/<64 hex>                              action results
//! quarantine/blake3/<64 hex>.<unix millis>    blobs that failed verification
//! ```

use object_store::path::Path;

use crate::digest::{ActionKey, BlobDigest};

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
}
