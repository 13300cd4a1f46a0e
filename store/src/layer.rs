//! [`content_store_impl!`]: writes the [`ContentStore`](crate::ContentStore) methods that a
//! layer passes straight to the store it wraps, so each layer spells out only what it changes.
//!
//! Every layer (retry, tiered, the test fault layer) and the object store itself wrap another
//! value with the same operations; written by hand, each repeated the same eleven signatures.
//!
//! ```ignore
//! content_store_impl! {
//!     RetryStore {
//!         inner => kind display_url admin contains read;
//!     }
//!     async fn put_file(&self, path: &Path, expected: Option<BlobDigest>) -> ... { ... }
//! }
//! ```
//!
//! Each group `field => names;` forwards the named methods to `self.field`; `field [check] =>`
//! first calls `self.check()?` in every async method of the group (the fault layer's hook).
//! The methods written after the braces are the type's own. It is one recursive macro because
//! `async_trait` rewrites the impl before any macro inside it would expand, so the whole impl
//! must come out of one expansion.

/// Writes `impl ContentStore for $ty`, forwarding the listed methods; see the module docs.
macro_rules! content_store_impl {
    // All groups written: the impl, forwarded methods first.
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*];) => {
        #[::async_trait::async_trait]
        impl $crate::ContentStore for $ty {
            $($acc)*
            $($own)*
        }
    };
    // A group with no names left.
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => ; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*]; [$($own)*]; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => kind $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            fn kind(&self) -> &str {
                self.$f.kind()
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => display_url $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            fn display_url(&self) -> &str {
                self.$f.display_url()
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => admin $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            fn admin(&self) -> ::std::sync::Arc<dyn $crate::StoreAdmin> {
                self.$f.admin()
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => contains $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn contains(&self, digest: &$crate::BlobDigest) -> Result<bool, $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.contains(digest).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => find_missing $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn find_missing(
                &self,
                digests: &[$crate::BlobDigest],
            ) -> Result<Vec<$crate::BlobDigest>, $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.find_missing(digests).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => put_file $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn put_file(
                &self,
                path: &::std::path::Path,
                expected: Option<$crate::BlobDigest>,
            ) -> Result<$crate::PutOutcome, $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.put_file(path, expected).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => read $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn read(
                &self,
                digest: &$crate::BlobDigest,
                offset: u64,
            ) -> Result<$crate::BlobStream, $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.read(digest, offset).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => read_to_file $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn read_to_file(
                &self,
                digest: &$crate::BlobDigest,
                dest: &::std::path::Path,
            ) -> Result<(), $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.read_to_file(digest, dest).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => get_action_result $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn get_action_result(
                &self,
                key: &$crate::ActionKey,
            ) -> Result<Option<::bytes::Bytes>, $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.get_action_result(key).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => put_action_result $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn put_action_result(
                &self,
                key: &$crate::ActionKey,
                encoded: ::bytes::Bytes,
            ) -> Result<$crate::Published, $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.put_action_result(key, encoded).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => replace_action_result $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn replace_action_result(
                &self,
                key: &$crate::ActionKey,
                encoded: ::bytes::Bytes,
            ) -> Result<(), $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.replace_action_result(key, encoded).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    (@munch $ty:ty; [$($acc:tt)*]; [$($own:tt)*]; $f:ident $([$c:ident])? => quarantine $($n:ident)*; $($rest:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; [$($acc)*
            async fn quarantine(
                &self,
                digest: &$crate::BlobDigest,
                reason: &str,
            ) -> Result<(), $crate::StoreError> {
                $(self.$c()?;)?
                self.$f.quarantine(digest, reason).await
            }
        ]; [$($own)*]; $f $([$c])? => $($n)*; $($rest)*}
    };
    // Entry: `Type { groups } own methods`.
    ($ty:ty { $($groups:tt)* } $($own:tt)*) => {
        $crate::layer::content_store_impl! {@munch $ty; []; [$($own)*]; $($groups)*}
    };
}

pub(crate) use content_store_impl;
