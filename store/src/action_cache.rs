//! The action cache: small encoded results under `ac/v1/<key>`, create-if-absent.

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::backend::Backend;
use crate::{ActionKey, Published, StoreError};

/// Action results larger than this are refused on read: they are small records, and anything
/// bigger is damage or abuse that should not be loaded into memory.
const MAX_ACTION_RESULT_BYTES: u64 = 16 << 20;

impl Backend {
    /// The stored result for `key`, or `None`.
    pub(crate) async fn get_action_result(
        &self,
        key: &ActionKey,
    ) -> Result<Option<Bytes>, StoreError> {
        let context = || format!("reading {}", self.describe_action(key));
        let got = match self.store.get(&self.layout.action(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(StoreError::backend(context(), source)),
        };
        if got.meta.size > MAX_ACTION_RESULT_BYTES {
            return Err(StoreError::TooLarge {
                what: self.describe_action(key),
                size: got.meta.size,
                limit: MAX_ACTION_RESULT_BYTES,
            });
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|source| StoreError::backend(context(), source))?;
        Ok(Some(bytes))
    }

    /// Writes the result unless one exists (atomically where the backend can).
    pub(crate) async fn put_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<Published, StoreError> {
        let location = self.layout.action(key);
        let create = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(&location, PutPayload::from(encoded.clone()), create)
            .await
        {
            Ok(_) => Ok(Published::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Published::AlreadyExisted),
            Err(object_store::Error::NotImplemented { .. }) => {
                // No atomic create here (e.g. S3-compatible store with conditional put off):
                // check, then write. A racing writer may also "create"; results for one key are
                // interchangeable, so the later write winning is harmless.
                tracing::debug!(
                    store = %self.display_url,
                    "backend lacks create-if-absent; publishing action result by check-then-write"
                );
                match self.store.head(&location).await {
                    Ok(_) => Ok(Published::AlreadyExisted),
                    Err(object_store::Error::NotFound { .. }) => {
                        self.replace_action_result(key, encoded).await?;
                        Ok(Published::Created)
                    }
                    Err(source) => Err(StoreError::backend(
                        format!("checking for {}", self.describe_action(key)),
                        source,
                    )),
                }
            }
            Err(source) => Err(StoreError::backend(
                format!("writing {}", self.describe_action(key)),
                source,
            )),
        }
    }

    /// Writes the result, replacing any existing one.
    pub(crate) async fn replace_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<(), StoreError> {
        self.store
            .put(&self.layout.action(key), PutPayload::from(encoded))
            .await
            .map(|_| ())
            .map_err(|source| {
                StoreError::backend(format!("writing {}", self.describe_action(key)), source)
            })
    }
}
