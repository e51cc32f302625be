//! The worker's metrics, all defined here, and the readiness it reports (`/readyz`):
//!
//! - `scribble_worker_batch_events`: histogram of the events per batch written to the store;
//! - `scribble_worker_insert_duration_seconds`: histogram of the store write of each batch
//!   (the successful attempt: an embedded transaction, or a ClickHouse insert with its identity
//!   and fragment upkeep);
//! - `scribble_worker_events_stored_total`: events written to the store (replays included);
//! - `scribble_worker_failures_total{step}`: failed attempts, each retried, by step: `batch`
//!   (embedded: read, write and trim), `poll`, `dead_letter`, `insert`, `commit` (Kafka);
//! - `scribble_worker_dead_letters_total`: messages set aside on the dead-letter topic;
//! - embedded only, `scribble_worker_queue_backlog_events`: events the queue committed that the
//!   store does not have yet, read at each scrape: the queue's depth and the worker's lag;
//! - Kafka only, `scribble_worker_consumer_lag_messages`: messages of this worker's partitions
//!   the group has not committed, and `scribble_worker_assigned_partitions`: how many partitions
//!   the group gave it (0 for a worker beyond the partition count), both sampled every 5 s.
//!
//! Readiness: ready unless the last store write failed or the last call to the bus (a poll, or
//! the lag sample, which asks the broker every 5 s) failed. Before the first batch nothing has
//! failed, so a new worker is ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use scribble_bus::{ConsumerLag, EmbeddedQueue};
use scribble_store::EmbeddedStore;
use scribble_telemetry::{register_computed_gauge, seconds_buckets, MetricsRegistry};

use crate::WorkerError;

/// A step of the worker that can fail and is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Embedded: reading a batch from the queue, writing it to the store, trimming the queue.
    Batch,
    /// Kafka: fetching messages.
    Poll,
    /// Kafka: producing a poison message to the dead-letter topic.
    DeadLetter,
    /// Kafka: inserting a batch into ClickHouse.
    Insert,
    /// Kafka: committing the offsets after a batch.
    Commit,
}

impl Step {
    /// The `step` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Poll => "poll",
            Self::DeadLetter => "dead_letter",
            Self::Insert => "insert",
            Self::Commit => "commit",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

/// What the worker reports about itself: its metrics and the outcome of its last store write
/// and bus call. Shared by the worker loop, which records, and the HTTP listener, which serves.
#[derive(Debug)]
pub struct WorkerMetrics {
    batch_events: Histogram,
    insert_duration: Histogram,
    events_stored: Counter,
    failures: Family<StepLabels, Counter>,
    dead_letters: Counter,
    consumer_lag: Gauge,
    assigned_partitions: Gauge,
    store_failing: AtomicBool,
    bus_failing: AtomicBool,
}

impl WorkerMetrics {
    /// The metrics of an embedded worker moving `queue` into `store`, registered in `registry`.
    pub fn register_embedded(
        registry: &MetricsRegistry,
        queue: Arc<EmbeddedQueue>,
        store: Arc<EmbeddedStore>,
    ) -> Arc<Self> {
        registry.register(|registry| {
            let metrics = Self::register_common(registry);
            let committed = queue.committed();
            register_computed_gauge(
                registry,
                "scribble_worker_queue_backlog_events",
                "Events committed to the embedded queue that the store does not have yet",
                move || {
                    let backlog = committed.borrow().saturating_sub(store.cursor());
                    Some(i64::try_from(backlog).unwrap_or(i64::MAX))
                },
            );
            metrics
        })
    }

    /// The metrics of a Kafka worker, registered in `registry`.
    pub fn register_kafka(registry: &MetricsRegistry) -> Arc<Self> {
        registry.register(|registry| {
            let metrics = Self::register_common(registry);
            registry.register(
                "scribble_worker_consumer_lag_messages",
                "Messages of this worker's partitions its consumer group has not committed, sampled every 5 s",
                metrics.consumer_lag.clone(),
            );
            registry.register(
                "scribble_worker_assigned_partitions",
                "Partitions of the events topic assigned to this worker, sampled every 5 s",
                metrics.assigned_partitions.clone(),
            );
            metrics
        })
    }

    fn register_common(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            insert_duration: Histogram::new(seconds_buckets()),
            events_stored: Counter::default(),
            failures: Family::default(),
            dead_letters: Counter::default(),
            consumer_lag: Gauge::default(),
            assigned_partitions: Gauge::default(),
            store_failing: AtomicBool::new(false),
            bus_failing: AtomicBool::new(false),
        };
        registry.register(
            "scribble_worker_batch_events",
            "Events per batch written to the store",
            metrics.batch_events.clone(),
        );
        registry.register_with_unit(
            "scribble_worker_insert_duration",
            "Time to write one batch to the store (the attempt that succeeded)",
            Unit::Seconds,
            metrics.insert_duration.clone(),
        );
        registry.register(
            "scribble_worker_events_stored",
            "Events written to the store, replays included",
            metrics.events_stored.clone(),
        );
        registry.register(
            "scribble_worker_failures",
            "Failed attempts of a worker step, each retried, by step",
            metrics.failures.clone(),
        );
        registry.register(
            "scribble_worker_dead_letters",
            "Messages the worker could not decode, set aside on the dead-letter topic",
            metrics.dead_letters.clone(),
        );
        Arc::new(metrics)
    }

    /// A batch of `events` was written to the store in `took`.
    pub(crate) fn batch_stored(&self, events: usize, took: Duration) {
        self.batch_events.observe(events as f64);
        self.insert_duration.observe(took.as_secs_f64());
        self.events_stored.inc_by(events as u64);
        self.store_answered(true);
    }

    /// An attempt at `step` failed; it will be retried.
    pub(crate) fn failed(&self, step: Step) {
        self.failures
            .get_or_create(&StepLabels { step: step.label() })
            .inc();
    }

    /// Records whether the store took the last write.
    pub(crate) fn store_answered(&self, answered: bool) {
        self.store_failing.store(!answered, Ordering::Relaxed);
    }

    /// Records whether the bus answered the last call that tells (a poll, a commit, a dead
    /// letter, the lag sample; an embedded queue read).
    pub(crate) fn bus_answered(&self, answered: bool) {
        self.bus_failing.store(!answered, Ordering::Relaxed);
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    pub(crate) fn set_consumer_lag(&self, lag: ConsumerLag) {
        self.consumer_lag
            .set(i64::try_from(lag.messages).unwrap_or(i64::MAX));
        self.assigned_partitions
            .set(i64::try_from(lag.partitions).unwrap_or(i64::MAX));
    }

    /// `Ok` while the worker is ready ([module docs](self)); otherwise what is failing.
    pub fn readiness(&self) -> Result<(), WorkerError> {
        if self.store_failing.load(Ordering::Relaxed) {
            return Err(WorkerError::StoreFailing);
        }
        if self.bus_failing.load(Ordering::Relaxed) {
            return Err(WorkerError::BusFailing);
        }
        Ok(())
    }
}
