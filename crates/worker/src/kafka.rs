//! The scale-out worker: one member of a Kafka consumer group. It gathers deliveries into a batch
//! (by size, or by time once the first one arrived), sends undecodable ones to the dead-letter
//! topic, inserts the rest into ClickHouse, retrying with back-off while ClickHouse is down, and
//! commits the partition offsets only after the insert was acknowledged. A crash or a rebalance
//! therefore replays the uncommitted tail; replayed event ids never count twice because the store
//! deduplicates by event id. Alongside, it samples its consumer lag every 5 s for its metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scribble_bus::{DeadLetters, Delivery, KafkaEventSource};
use scribble_domain::event::Event;
use scribble_store::ClickHouseStore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::metrics::Step;
use crate::{WorkerConfig, WorkerError, WorkerMetrics};

/// Longest wait for the first delivery of a batch before checking for shutdown again.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Longest pause between retries of a failed insert.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the consumer lag is sampled: each sample asks the broker, once per partition.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait for each broker answer of a lag sample.
const LAG_TIMEOUT: Duration = Duration::from_secs(3);

/// What one batch holds once split: events to store and deliveries that cannot be decoded.
#[derive(Debug, Default, PartialEq)]
pub struct SplitBatch<'a> {
    pub events: Vec<(&'a str, &'a Event)>,
    pub poison: Vec<Poison<'a>>,
}

/// A delivery that cannot be decoded, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Poison<'a> {
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
    pub reason: &'a str,
}

/// Splits a batch into storable events and poison messages. Pure.
pub fn split(batch: &[Delivery]) -> SplitBatch<'_> {
    let mut split = SplitBatch::default();
    for delivery in batch {
        match delivery {
            Delivery::Event { project, event, .. } => split.events.push((project.as_str(), event)),
            Delivery::Poison {
                partition,
                offset,
                payload,
                reason,
            } => split.poison.push(Poison {
                partition: *partition,
                offset: *offset,
                payload,
                reason,
            }),
        }
    }
    split
}

/// The pause before retry number `attempt` (from 1): doubling from `first`, capped. Pure.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

/// Runs the worker until `shutdown` resolves, recording into `metrics`. The next batch is
/// gathered while the current one is stored and committed, so polling Kafka and writing to
/// ClickHouse overlap. An unfinished batch is left uncommitted, so the group replays it.
pub async fn run(
    source: Arc<KafkaEventSource>,
    dead_letters: Arc<DeadLetters>,
    store: Arc<ClickHouseStore>,
    config: WorkerConfig,
    metrics: Arc<WorkerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let _lag_sampler = AbortOnDrop(tokio::spawn(sample_lag(source.clone(), metrics.clone())));
    let mut next = tokio::spawn(gather(source.clone(), config.clone()));
    loop {
        let gathered = tokio::select! {
            gathered = &mut next => gathered,
            _ = &mut shutdown => return,
        };
        next = tokio::spawn(gather(source.clone(), config.clone()));
        let batch = match gathered.map_err(WorkerError::from).and_then(|batch| batch) {
            Ok(batch) if batch.is_empty() => continue,
            // Shared with the blocking commit task instead of copying every event for it.
            Ok(batch) => Arc::new(batch),
            Err(error) => {
                metrics.failed(Step::Poll);
                metrics.bus_answered(false);
                warn!(%error, "polling the bus failed; retrying");
                tokio::time::sleep(config.retry_after).await;
                continue;
            }
        };
        let stored = tokio::select! {
            stored = store_with_retries(&batch, &dead_letters, &store, &config, &metrics) => stored,
            _ = &mut shutdown => {
                // The batch being gathered is not committed either: the group replays it.
                next.abort();
                return;
            }
        };
        debug!(events = stored, deliveries = batch.len(), "batch stored");
        commit_with_retries(&source, &batch, &config, &metrics).await;
    }
}

/// Aborts the task when dropped, so it ends with the function that started it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every [`LAG_INTERVAL`], asks the broker for this worker's consumer lag (a blocking call, on
/// the blocking pool) and records it, and whether the broker answered. Runs until aborted.
async fn sample_lag(source: Arc<KafkaEventSource>, metrics: Arc<WorkerMetrics>) {
    let mut ticks = tokio::time::interval(LAG_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let asking = source.clone();
        match tokio::task::spawn_blocking(move || asking.lag(LAG_TIMEOUT)).await {
            Ok(Ok(lag)) => {
                metrics.set_consumer_lag(lag);
                metrics.bus_answered(true);
                debug!(
                    lag_messages = lag.messages,
                    partitions = lag.partitions,
                    "consumer lag sampled"
                );
            }
            Ok(Err(error)) => {
                metrics.bus_answered(false);
                warn!(%error, "cannot ask the broker for the consumer lag");
            }
            Err(error) => warn!(%error, "consumer lag task failed"),
        }
    }
}

/// Commits the offsets after `batch`, retrying a few times. Giving up loses nothing: after a
/// rebalance the partitions may belong to another worker, which replays from the last commit,
/// and the store drops the duplicates.
async fn commit_with_retries(
    source: &Arc<KafkaEventSource>,
    batch: &Arc<Vec<Delivery>>,
    config: &WorkerConfig,
    metrics: &WorkerMetrics,
) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        let (committing, to_commit) = (source.clone(), batch.clone());
        match tokio::task::spawn_blocking(move || committing.commit(&to_commit)).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => {
                metrics.bus_answered(false);
                warn!(%error, attempt, "offset commit failed; retrying");
            }
            Err(error) => warn!(%error, attempt, "offset commit task failed; retrying"),
        }
        metrics.failed(Step::Commit);
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff(config.retry_after, attempt)).await;
        }
    }
    warn!(
        deliveries = batch.len(),
        "could not commit offsets; the batch will be replayed"
    );
}

/// Gathers one batch: waits for a first delivery, then takes more until the batch is full or
/// `config.max_batch_wait` has passed since the first one.
async fn gather(
    source: Arc<KafkaEventSource>,
    config: WorkerConfig,
) -> Result<Vec<Delivery>, WorkerError> {
    let mut batch: Vec<Delivery> = Vec::new();
    let mut first_at: Option<Instant> = None;
    while batch.len() < config.batch_size {
        let wait = match first_at {
            None => IDLE_POLL,
            Some(first) => match config.max_batch_wait.checked_sub(first.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            },
        };
        let (polling, room) = (source.clone(), config.batch_size - batch.len());
        let more = tokio::task::spawn_blocking(move || polling.poll_batch(room, wait)).await??;
        if more.is_empty() {
            if first_at.is_none() {
                return Ok(batch);
            }
            break;
        }
        first_at.get_or_insert_with(Instant::now);
        batch.extend(more);
    }
    Ok(batch)
}

/// Sends poison to the dead-letter topic and inserts the events, retrying each step with
/// back-off until it succeeds: nothing is skipped. Returns how many events were stored.
async fn store_with_retries(
    batch: &[Delivery],
    dead_letters: &DeadLetters,
    store: &ClickHouseStore,
    config: &WorkerConfig,
    metrics: &WorkerMetrics,
) -> usize {
    let split = split(batch);
    for poison in &split.poison {
        let Poison {
            partition,
            offset,
            payload,
            reason,
        } = *poison;
        retry_until_ok(config, metrics, Step::DeadLetter, || {
            dead_letters.send(payload, reason, partition, offset)
        })
        .await;
        metrics.dead_lettered();
        warn!(
            partition,
            offset, reason, "poison message sent to the dead-letter topic"
        );
    }
    if split.events.is_empty() {
        return 0;
    }
    let (attempts, took) = retry_until_ok(config, metrics, Step::Insert, || {
        store.insert(&split.events)
    })
    .await;
    metrics.batch_stored(split.events.len(), took);
    if attempts > 1 {
        info!(
            attempts,
            events = split.events.len(),
            "ClickHouse is back; batch stored"
        );
    }
    debug!(
        events = split.events.len(),
        insert_ms = took.as_millis() as u64,
        "batch inserted into ClickHouse"
    );
    split.events.len()
}

/// Runs `step` until it succeeds, pausing with doubling back-off between failures, each counted
/// in `metrics`; returns how many attempts it took and how long the successful one took.
async fn retry_until_ok<F, E>(
    config: &WorkerConfig,
    metrics: &WorkerMetrics,
    step: Step,
    mut attempt_step: impl FnMut() -> F,
) -> (u32, Duration)
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        match attempt_step().await {
            Ok(()) => return (attempt, started.elapsed()),
            Err(error) => {
                metrics.failed(step);
                match step {
                    Step::Insert => metrics.store_answered(false),
                    _ => metrics.bus_answered(false),
                }
                let pause = backoff(config.retry_after, attempt);
                warn!(%error, step = step.label(), attempt, retry_ms = pause.as_millis() as u64, "worker step failed; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribble_domain::event::{Body, Who};
    use uuid::Uuid;

    fn delivery(offset: i64) -> Delivery {
        Delivery::Event {
            partition: 0,
            offset,
            project: "shop".into(),
            event: Event {
                event_id: Uuid::from_u128(offset as u128),
                at_ms: offset,
                received_ms: offset,
                who: Who {
                    anonymous_id: Some("c".into()),
                    user_id: None,
                },
                body: Body::Alias {
                    previous_id: "x".into(),
                },
                ip: None,
            },
        }
    }

    #[test]
    fn split_keeps_events_in_order_and_sets_poison_apart() {
        let poison = Delivery::Poison {
            partition: 1,
            offset: 7,
            payload: b"{".to_vec(),
            reason: "not JSON".into(),
        };
        let batch = vec![delivery(1), poison, delivery(2)];
        let split = split(&batch);
        let offsets: Vec<i64> = split.events.iter().map(|(_, event)| event.at_ms).collect();
        assert_eq!(offsets, vec![1, 2]);
        assert_eq!(
            split.poison,
            vec![Poison {
                partition: 1,
                offset: 7,
                payload: b"{",
                reason: "not JSON",
            }]
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let first = Duration::from_millis(500);
        assert_eq!(backoff(first, 1), Duration::from_millis(500));
        assert_eq!(backoff(first, 3), Duration::from_secs(2));
        assert_eq!(backoff(first, 30), MAX_BACKOFF);
    }
}
