//! The embedded worker: follows the queue, writes each batch to the store together with the
//! queue position in one transaction, then drops the taken entries from the queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use scribble_bus::{EmbeddedQueue, QueuedEvent};
use scribble_store::EmbeddedStore;
use tracing::{debug, warn};

use crate::metrics::Step;
use crate::{WorkerConfig, WorkerError, WorkerMetrics};

/// The queue is trimmed when a batch crosses a multiple of this sequence number, and whenever
/// the worker has caught up.
const TRIM_EVERY: u64 = 100_000;

/// Moves events from `queue` to `store` until `shutdown` resolves, recording into `metrics`.
/// Failed batches are retried (nothing is skipped), so the store never misses an acknowledged
/// event.
pub async fn run(
    queue: Arc<EmbeddedQueue>,
    store: Arc<EmbeddedStore>,
    config: WorkerConfig,
    metrics: Arc<WorkerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut committed = queue.committed();
    tokio::pin!(shutdown);
    loop {
        match move_batch(&queue, &store, config.batch_size, &metrics).await {
            Ok(0) => {
                tokio::select! {
                    _ = committed.changed() => {}
                    _ = &mut shutdown => return,
                }
            }
            Ok(moved) => debug!(moved, cursor = store.cursor(), "batch stored"),
            Err(error) => {
                metrics.failed(Step::Batch);
                match error {
                    WorkerError::Bus(_) => metrics.bus_answered(false),
                    _ => metrics.store_answered(false),
                }
                warn!(%error, retry_ms = config.retry_after.as_millis() as u64, "batch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(config.retry_after) => {}
                    _ = &mut shutdown => return,
                }
            }
        }
    }
}

/// Moves one batch, recording its size and store write time into `metrics`; returns how many
/// queue entries it took.
pub async fn move_batch(
    queue: &Arc<EmbeddedQueue>,
    store: &Arc<EmbeddedStore>,
    batch_size: usize,
    metrics: &Arc<WorkerMetrics>,
) -> Result<usize, WorkerError> {
    let (queue, store, metrics) = (queue.clone(), store.clone(), metrics.clone());
    tokio::task::spawn_blocking(move || -> Result<usize, WorkerError> {
        let batch: Vec<QueuedEvent> = queue.read_after(store.cursor(), batch_size)?;
        metrics.bus_answered(true);
        let Some(last) = batch.last().map(|entry| entry.seq) else {
            return Ok(0);
        };
        let pairs: Vec<(&str, &_)> = batch
            .iter()
            .map(|entry| (entry.project.as_str(), &entry.event))
            .collect();
        let started = Instant::now();
        let outcome = store.apply(&pairs, last)?;
        metrics.batch_stored(batch.len(), started.elapsed());
        if outcome.duplicates > 0 {
            debug!(
                duplicates = outcome.duplicates,
                "duplicate event ids dropped"
            );
        }
        if outcome.tombstoned > 0 {
            debug!(
                tombstoned = outcome.tombstoned,
                "events of forgotten customers dropped"
            );
        }
        // Trimming costs a delete per entry; doing it for large stretches at once keeps it off
        // the path of every batch.
        if last % TRIM_EVERY < batch.len() as u64 || batch.len() < batch_size {
            queue.truncate_through(last)?;
        }
        Ok(batch.len())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribble_domain::event::{Body, Event, Who};
    use scribble_telemetry::{MetricsRegistry, Samples};
    use std::time::Duration;
    use uuid::Uuid;

    fn visit(n: u128) -> Event {
        Event {
            event_id: Uuid::from_u128(n),
            at_ms: n as i64,
            received_ms: n as i64,
            who: Who {
                anonymous_id: Some(format!("c{}", n % 3)),
                user_id: None,
            },
            body: Body::Touchpoint {
                touchpoint: "site_visit".into(),
                channel: "web".into(),
                direct: true,
                properties: Default::default(),
            },
            ip: None,
        }
    }

    #[tokio::test]
    async fn worker_moves_queued_events_into_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("queue.db")).unwrap());
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let events: Vec<Event> = (1..=25).map(visit).collect();
        queue.append("shop", &events).await.unwrap();
        queue.append("shop", &events[..5]).await.unwrap(); // a sender retried
        let registry = MetricsRegistry::new();
        let metrics = WorkerMetrics::register_embedded(&registry, queue.clone(), store.clone());
        let backlog = Samples::parse(&registry.encode());
        assert_eq!(
            backlog.sum("scribble_worker_queue_backlog_events", &[]),
            Some(30.0),
            "everything is waiting before the worker starts"
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(run(
            queue.clone(),
            store.clone(),
            WorkerConfig {
                batch_size: 7,
                ..Default::default()
            },
            metrics.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        for _ in 0..100 {
            if store.cursor() == 30 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(()).unwrap();
        worker.await.unwrap();
        assert_eq!(store.cursor(), 30);
        assert_eq!(store.read("shop", |book| book.touch_count()), 25);
        assert_eq!(queue.depth().unwrap(), 0);

        // 30 entries in batches of at most 7: 7, 7, 7, 7, 2 (the queue may have been read before
        // the second append committed, which only splits a batch further).
        let samples = Samples::parse(&registry.encode());
        let batches = samples.count("scribble_worker_batch_events_count", &[]);
        assert!(batches >= 5.0, "{batches} batches");
        assert_eq!(
            samples.sum("scribble_worker_batch_events_sum", &[]),
            Some(30.0)
        );
        assert_eq!(
            samples.count("scribble_worker_batch_events_bucket", &[("le", "8")]),
            batches,
            "no batch over 7 events"
        );
        assert_eq!(
            samples.count("scribble_worker_insert_duration_seconds_count", &[]),
            batches
        );
        assert_eq!(
            samples.sum("scribble_worker_events_stored_total", &[]),
            Some(30.0)
        );
        assert_eq!(
            samples.sum("scribble_worker_queue_backlog_events", &[]),
            Some(0.0)
        );
        assert_eq!(samples.count("scribble_worker_failures_total", &[]), 0.0);
        assert!(metrics.readiness().is_ok());
    }
}
