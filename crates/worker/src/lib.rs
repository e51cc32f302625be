//! Scribble's stream worker: takes accepted events off the bus and writes them to the store in
//! batches, committing its position on the bus only after the store has the batch, so a crash
//! replays and never loses (the stores drop replayed event ids). [`embedded`] follows the embedded
//! queue into the embedded store; [`kafka`] is a consumer-group member moving Kafka into ClickHouse.

pub mod embedded;
pub mod kafka;

use std::time::Duration;

use scribble_bus::BusError;
use scribble_store::StoreError;

pub use embedded::{move_batch, run};

/// Everything that can stop one batch.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
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
