//! Store writes of a finished build, retried through a store outage.
//!
//! A plan that took an hour to build must not be thrown away because the bucket was
//! unreachable for ten seconds when it finished. Every publishing write may be repeated
//! safely: blobs are immutable and named by their digest, and action results are created only
//! if absent. `object_store` already retries single HTTP requests; this covers what it cannot,
//! such as a refused connection that outlasts its retries or a multipart upload the restarted
//! server has forgotten (the whole file is then sent again).

use std::future::Future;
use std::time::Duration;

use trtfarm_store::StoreError;

use crate::metrics::Metrics;

/// How long a build keeps retrying its store writes before it fails as `INFRASTRUCTURE`.
pub(crate) const RETRY_WINDOW: Duration = Duration::from_secs(90);
/// The first pause; each next one doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Runs `call` until it succeeds, fails for a reason that would repeat, or [`RETRY_WINDOW`]
/// has passed since the first try; `what` names the write in the log, and each retry counts
/// in `trtfarm_store_write_retries_total`.
pub(crate) async fn retrying<T, F, Fut>(
    what: &str,
    metrics: &Metrics,
    mut call: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_WINDOW;
    let mut pause = FIRST_PAUSE;
    let mut tries = 1u32;
    loop {
        match call().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!("cannot store the {what} (try {tries}), retrying in {pause:?}: {e}");
                metrics.store_write_retried();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                tries += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn outage() -> StoreError {
        StoreError::Backend {
            context: "put cas/blake3/ab/… in s3://farm".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            },
        }
    }

    fn denied() -> StoreError {
        StoreError::Backend {
            context: "put cas/blake3/ab/… in s3://farm".into(),
            source: object_store::Error::PermissionDenied {
                path: "cas/blake3/ab".into(),
                source: "403".into(),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_outage_is_ridden_out() {
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let metrics = Metrics::new();
        let result = retrying("engine plan", &metrics, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 5 { Err(outage()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 5);
        // Pauses of 0.25 + 0.5 + 1 + 2 s between the five tries.
        assert_eq!(started.elapsed(), Duration::from_millis(3750));
        let text = metrics.encode();
        assert!(
            text.contains("\ntrtfarm_store_write_retries_total 4\n"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_window_fails_with_the_last_error() {
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retrying("engine plan", &Metrics::new(), || {
            calls.set(calls.get() + 1);
            async { Err(outage()) }
        })
        .await;
        assert!(result.unwrap_err().is_transient());
        assert!(started.elapsed() <= RETRY_WINDOW, "{:?}", started.elapsed());
        assert!(started.elapsed() >= RETRY_WINDOW - MAX_PAUSE);
        assert!(calls.get() > 5 && calls.get() < 20, "{} tries", calls.get());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_that_would_repeat_is_not_retried() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retrying("engine plan", &Metrics::new(), || {
            calls.set(calls.get() + 1);
            async { Err(denied()) }
        })
        .await;
        assert!(!result.unwrap_err().is_transient());
        assert_eq!(calls.get(), 1);
    }
}
