//! [`RetryStore`]: a layer that repeats writes through a store outage.
//!
//! Every write may be repeated safely: blobs are immutable and named by their digest, and action
//! results are created only if absent. `object_store` already retries single HTTP requests; this
//! covers what it cannot, such as a refused connection that outlasts its retries or a multipart
//! upload the restarted server has forgotten (the whole file is then sent again). Reads are
//! passed through untouched: a caller waiting on a read would rather hear of the outage at once.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::layer::content_store_impl;
use crate::{ActionKey, BlobDigest, ContentStore, Published, PutOutcome, StoreError};

/// How long and how often a [`RetryStore`] tries a write again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// No try starts later than this after the first one. Default: 90 s.
    pub window: Duration,
    /// The pause before the first retry; each next one doubles. Default: 250 ms.
    pub first_pause: Duration,
    /// The longest pause between two tries. Default: 10 s.
    pub max_pause: Duration,
}

impl Default for RetryPolicy {
    /// Long enough for a build's results to outlast a store restart: 90 s, 250 ms doubling up
    /// to 10 s.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(90),
            first_pause: Duration::from_millis(250),
            max_pause: Duration::from_secs(10),
        }
    }
}

/// A retry about to happen, as a [`RetryObserver`] sees it.
#[derive(Debug)]
pub struct Retry<'a> {
    /// The operation that failed, and on what (e.g. `put_file /scratch/plan`).
    pub operation: &'a str,
    /// The try that failed, from 1.
    pub attempt: u32,
    /// How long the store waits before the next try.
    pub pause: Duration,
    /// Why the try failed (always transient: see [`StoreError::is_transient`]).
    pub error: &'a StoreError,
}

/// Told of every retry (to count it in a metric, say); it must not block.
pub type RetryObserver = dyn Fn(&Retry<'_>) + Send + Sync;

/// A [`ContentStore`] whose writes (`put_file`, `put_action_result`, `replace_action_result`)
/// are tried again, with doubling pauses, while they fail transiently and the window lasts.
pub struct RetryStore {
    inner: Arc<dyn ContentStore>,
    policy: RetryPolicy,
    observer: Option<Arc<RetryObserver>>,
}

impl RetryStore {
    /// Retries `inner`'s writes under `policy`.
    pub fn new(inner: Arc<dyn ContentStore>, policy: RetryPolicy) -> Self {
        Self {
            inner,
            policy,
            observer: None,
        }
    }

    /// Calls `observer` before each retry.
    pub fn with_observer(mut self, observer: impl Fn(&Retry<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Runs `call` until it succeeds, fails for a reason that would repeat, or the next try
    /// would start after the window.
    async fn retrying<T, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let deadline = tokio::time::Instant::now() + self.policy.window;
        let mut pause = self.policy.first_pause;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error)
                    if error.is_transient() && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::warn!(
                        store = %self.inner.display_url(), operation, attempt, ?pause, %error,
                        "store write failed; retrying"
                    );
                    if let Some(observer) = &self.observer {
                        observer(&Retry {
                            operation,
                            attempt,
                            pause,
                            error: &error,
                        });
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.policy.max_pause);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

content_store_impl! {
    RetryStore {
        inner => kind display_url admin contains find_missing read read_to_file get_action_result
            quarantine;
    }

    async fn put_file(
        &self,
        path: &Path,
        expected: Option<BlobDigest>,
    ) -> Result<PutOutcome, StoreError> {
        let operation = format!("put_file {}", path.display());
        self.retrying(&operation, || self.inner.put_file(path, expected))
            .await
    }

    async fn put_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<Published, StoreError> {
        let operation = format!("put_action_result {key}");
        self.retrying(&operation, || {
            self.inner.put_action_result(key, encoded.clone())
        })
        .await
    }

    async fn replace_action_result(
        &self,
        key: &ActionKey,
        encoded: Bytes,
    ) -> Result<(), StoreError> {
        let operation = format!("replace_action_result {key}");
        self.retrying(&operation, || {
            self.inner.replace_action_result(key, encoded.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::faults::{FaultyStore, denied, outage};

    /// A memory store behind a fault layer, behind a retry layer counting its retries.
    fn stores() -> (Arc<FaultyStore>, RetryStore, Arc<AtomicU32>) {
        let faulty = Arc::new(FaultyStore::new(crate::open("memory://", &[]).unwrap()));
        let retries = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&retries);
        let store =
            RetryStore::new(faulty.clone(), RetryPolicy::default()).with_observer(move |retry| {
                assert!(retry.error.is_transient());
                counted.fetch_add(1, Ordering::Relaxed);
            });
        (faulty, store, retries)
    }

    fn key() -> ActionKey {
        ActionKey([7; 32])
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_outage_is_ridden_out() {
        let (faulty, store, retries) = stores();
        faulty.fail_next(4, outage);
        let started = tokio::time::Instant::now();
        let published = store
            .put_action_result(&key(), Bytes::from_static(b"r"))
            .await;
        assert_eq!(published.unwrap(), Published::Created);
        // Pauses of 0.25 + 0.5 + 1 + 2 s between the five tries.
        assert_eq!(started.elapsed(), Duration::from_millis(3750));
        assert_eq!(retries.load(Ordering::Relaxed), 4);
        assert_eq!(faulty.calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_window_fails_with_the_last_error() {
        let (faulty, store, _) = stores();
        faulty.fail_next(u32::MAX, outage);
        let started = tokio::time::Instant::now();
        let error = store
            .replace_action_result(&key(), Bytes::from_static(b"r"))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        let window = RetryPolicy::default().window;
        let max_pause = RetryPolicy::default().max_pause;
        assert!(started.elapsed() <= window, "{:?}", started.elapsed());
        assert!(started.elapsed() >= window - max_pause);
        assert!(
            faulty.calls() > 5 && faulty.calls() < 20,
            "{} tries",
            faulty.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_that_would_repeat_is_not_retried() {
        let (faulty, store, retries) = stores();
        faulty.fail_next(u32::MAX, denied);
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("plan");
        std::fs::write(&path, b"plan").unwrap();
        let error = store.put_file(&path, None).await.unwrap_err();
        assert!(!error.is_transient(), "{error}");
        assert_eq!(faulty.calls(), 1);
        assert_eq!(retries.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_not_retried() {
        let (faulty, store, retries) = stores();
        faulty.fail_next(1, outage);
        assert!(store.get_action_result(&key()).await.is_err());
        assert_eq!(store.get_action_result(&key()).await.unwrap(), None);
        assert_eq!(retries.load(Ordering::Relaxed), 0);
    }
}
