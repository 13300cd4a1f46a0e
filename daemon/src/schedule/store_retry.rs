//! Store writes of a finished build, retried through a store outage.
//!
//! A plan that took an hour to build must not be thrown away because the bucket was
//! unreachable for ten seconds when it finished. The retrying itself is the store's
//! [`RetryStore`] layer (tested there against injected outages); this is the daemon's use of it:
//! its policy (the layer's default: 90 s, pauses doubling from 250 ms to 10 s) and its metric.

use std::sync::Arc;

use trtfarm_store::{ContentStore, Retry, RetryPolicy, RetryStore};

use crate::metrics::Metrics;

/// The store the build pipeline publishes through: `store` with its writes retried for
/// [`RetryPolicy::default`]'s window, each retry counted in `trtfarm_store_write_retries_total`.
pub(crate) fn publishing_store(
    store: Arc<dyn ContentStore>,
    metrics: Arc<Metrics>,
) -> Arc<dyn ContentStore> {
    Arc::new(RetryStore::new(store, RetryPolicy::default()).with_observer(counter(metrics)))
}

/// The retry observer: one retry, one count.
fn counter(metrics: Arc<Metrics>) -> impl Fn(&Retry<'_>) + Send + Sync + 'static {
    move |_retry| metrics.store_write_retried()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use trtfarm_store::{ActionKey, Published, StoreError};

    use super::*;

    #[test]
    fn each_retry_counts_in_the_metric() {
        let metrics = Arc::new(Metrics::new());
        let count = counter(Arc::clone(&metrics));
        let error = StoreError::Backend {
            context: "put cas/blake3/ab/… in s3://farm".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            },
        };
        for attempt in 1..=2 {
            count(&Retry {
                operation: "put_file /scratch/plan",
                attempt,
                pause: Duration::from_millis(250),
                error: &error,
            });
        }
        let text = metrics.encode();
        assert!(
            text.contains("\ntrtfarm_store_write_retries_total 2\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn writes_that_succeed_pass_through_uncounted() {
        let metrics = Arc::new(Metrics::new());
        let memory = trtfarm_store::open("memory://", &[]).unwrap();
        let store = publishing_store(Arc::clone(&memory), Arc::clone(&metrics));
        let key = ActionKey([1; 32]);
        let published = store.put_action_result(&key, Bytes::from_static(b"r"));
        assert_eq!(published.await.unwrap(), Published::Created);
        assert!(memory.get_action_result(&key).await.unwrap().is_some());
        let text = metrics.encode();
        assert!(
            text.contains("\ntrtfarm_store_write_retries_total 0\n"),
            "{text}"
        );
    }
}
