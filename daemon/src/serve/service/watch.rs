//! The `WatchJob` stream: the job's state now, then every event until it ends.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};
use trtfarm_proto::v1;

use super::BoxStream;
use crate::schedule::Farm;

fn is_final(event: &v1::JobEvent) -> bool {
    matches!(
        event.event,
        Some(v1::job_event::Event::Finished(_) | v1::job_event::Event::Failed(_))
    )
}

/// Streams `now`, then what `receiver` delivers, ending after the job's final event. A watcher
/// too slow to keep up misses log lines, never the end: when the channel closes without a
/// final event, the job's stored state supplies it.
pub(super) fn job_events(
    farm: Arc<Farm>,
    job_id: u64,
    now: Vec<v1::JobEvent>,
    receiver: Option<broadcast::Receiver<v1::JobEvent>>,
) -> BoxStream<v1::JobEvent> {
    let ended = now.iter().any(is_final);
    let head = futures::stream::iter(now.into_iter().map(Ok));
    let Some(receiver) = receiver.filter(|_| !ended) else {
        return Box::pin(head);
    };
    let tail = futures::stream::unfold(Some((farm, receiver)), move |state| async move {
        let (farm, mut receiver) = state?;
        loop {
            match receiver.recv().await {
                Ok(event) if is_final(&event) => return Some((Ok(event), None)),
                Ok(event) => return Some((Ok(event), Some((farm, receiver)))),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(job = job_id, missed, "a watcher fell behind");
                }
                Err(RecvError::Closed) => {
                    let job = farm.get_job(job_id).await.ok()?;
                    let event = crate::schedule::terminal_event(&job)?;
                    return Some((Ok(event), None));
                }
            }
        }
    });
    Box::pin(head.chain(tail))
}
