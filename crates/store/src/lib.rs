//! Scribble's store. In the one-process mode it is the embedded store: a SQLite file is the
//! source of truth for every accepted event, and an in-memory journey book per project, rebuilt
//! from it at start and updated by the worker, answers reports. ClickHouse joins it later.

mod embedded;

pub use embedded::{ApplyOutcome, EmbeddedStore};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored event is not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
}
