//! Moving blobs that failed verification out of the CAS, keeping them for inspection.

use std::time::{SystemTime, UNIX_EPOCH};

use object_store::ObjectStoreExt;

use crate::backend::Backend;
use crate::{BlobDigest, StoreError};

impl Backend {
    /// Copies the blob to `quarantine/blake3/<hex>.<unix millis>`, then deletes it from the CAS.
    ///
    /// The delete happens even when the copy fails: a corrupt blob that stays in the CAS would be
    /// reported as present forever and never re-uploaded. The error then says the evidence is lost.
    pub(crate) async fn quarantine(
        &self,
        digest: &BlobDigest,
        reason: &str,
    ) -> Result<(), StoreError> {
        let from = self.layout.blob(digest);
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis())
            .unwrap_or(0);
        let to = self.layout.quarantine(digest, millis);
        tracing::warn!(
            digest = %digest, store = %self.display_url, quarantine = %to, reason,
            "quarantining blob"
        );

        let copied = match self.store.copy(&from, &to).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NotFound {
                    what: format!(
                        "{} (nothing to quarantine; it may have been quarantined already)",
                        self.describe_blob(digest)
                    ),
                });
            }
            Err(source) => {
                tracing::error!(
                    digest = %digest, store = %self.display_url, error = %source,
                    "copying the blob to quarantine failed; deleting it from the CAS anyway"
                );
                Err(source)
            }
        };
        match self.store.delete(&from).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(StoreError::backend(
                    format!(
                        "deleting corrupt {} from the CAS",
                        self.describe_blob(digest)
                    ),
                    source,
                ));
            }
        }
        copied.map_err(|source| {
            StoreError::backend(
                format!(
                    "copying {} to {to} (the blob was removed from the CAS, but not kept)",
                    self.describe_blob(digest)
                ),
                source,
            )
        })
    }

    /// [`Self::quarantine`] for a read that found corruption: failures are logged, never raised,
    /// because the caller's error is the corruption itself.
    pub(crate) async fn quarantine_after_failed_check(&self, digest: &BlobDigest, reason: &str) {
        if let Err(error) = self.quarantine(digest, reason).await {
            tracing::error!(%error, "quarantine after a failed verification did not complete");
        }
    }
}
