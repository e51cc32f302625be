//! Scribble's event bus. In the one-process mode it is the embedded queue: a SQLite file where
//! the collector appends validated events and the stream worker reads them in order. In the
//! scale-out deployment Kafka plays the same role ([`KafkaSink`], [`KafkaEventSource`]).

mod embedded;
mod kafka;

use async_trait::async_trait;
use scribble_domain::event::Event;

pub use embedded::{EmbeddedQueue, QueuedEvent};
pub use kafka::{
    ensure_topic, message_key, next_offsets, ConsumerLag, DeadLetters, Delivery, Envelope,
    KafkaConfig, KafkaConsumerConfig, KafkaEventSource, KafkaSink, REASON_HEADER,
};

/// Where the collector hands accepted events. Both the embedded queue and Kafka take them.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Hands over `events` of `project`. Returns `Ok` only once every one of them is durably
    /// held by the bus (committed to disk, or acknowledged by all in-sync replicas).
    async fn append(&self, project: &str, events: &[Event]) -> Result<(), BusError>;

    /// Whether the bus can take events right now (for the readiness endpoint).
    fn is_ready(&self) -> bool;

    /// What the sink holds that the bus has not acknowledged yet, for the collector's metrics;
    /// `None` for a sink that answers only after its own durable write (the embedded queue,
    /// whose backlog is what the worker has not stored yet). Must not block.
    fn in_flight(&self) -> Option<InFlight> {
        None
    }
}

/// Messages and payload bytes handed to the bus and not acknowledged yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    pub messages: u64,
    pub bytes: u64,
}

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("embedded queue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("queued event is not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("group commit failed: {0}")]
    Commit(String),
    #[error("the queue writer has stopped")]
    Closed,
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the Kafka broker did not acknowledge in time or refused the events: {0}")]
    Unavailable(String),
    #[error("too many event bytes are waiting for Kafka acknowledgements; retry shortly")]
    Busy,
}
