//! Scribble's event bus. In the one-process mode it is the embedded queue: a SQLite file where
//! the collector appends validated events and the stream worker reads them in order. Later the
//! same role is played by Kafka.

mod embedded;

pub use embedded::{EmbeddedQueue, QueuedEvent};

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
}
