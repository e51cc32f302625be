//! Scribble's stream worker: takes accepted events off the bus and writes them to the store in
//! batches, committing its position on the bus only after the store has the batch, so a crash
//! replays and never loses (the stores drop replayed event ids). [`embedded`] follows the embedded
//! queue into the embedded store; [`kafka`] is a consumer-group member moving Kafka into ClickHouse.
//! Both record into [`metrics`]; [`http`] serves them, with liveness and readiness, when the
//! worker runs as its own process. [`retention`] sweeps expired events out of either store.

pub mod embedded;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod retention;

use std::time::Duration;

use scribble_bus::BusError;
use scribble_store::StoreError;

pub use embedded::{move_batch, run};
pub use metrics::WorkerMetrics;

/// Everything that can stop one batch, and what makes the worker not ready ([`http`] maps each
/// to its reply).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the last write to the store failed; the worker is retrying it with back-off")]
    StoreFailing,
    #[error("the last call to the event bus failed; the worker is retrying")]
    BusFailing,
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most events written in one store transaction.
    pub batch_size: usize,
    /// Longest time a batch keeps filling after its first event arrived (Kafka worker).
    pub max_batch_wait: Duration,
    /// Pause after a failed batch before trying again (doubles on repeated failures).
    pub retry_after: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            max_batch_wait: Duration::from_millis(200),
            retry_after: Duration::from_millis(500),
        }
    }
}
