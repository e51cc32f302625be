//! Scribble's store: where stitched journeys are read from. In the one-process mode it is the
//! embedded store (SQLite as the source of truth, an in-memory journey book per project for
//! reports); scaled out it is ClickHouse ([`ClickHouseStore`]). Reports reach either through
//! [`JourneyStore`], and get the same answers from both.

mod clickhouse;
mod embedded;
#[cfg(feature = "test-support")]
pub mod testing;

use async_trait::async_trait;
use scribble_domain::event::IdentityKey;
use scribble_domain::journey::JourneySet;
use scribble_domain::paths::{positional_graph, state_graph, GraphView, PathGraph, PathOptions};
use scribble_domain::stitch::{CustomerView, Dimension, Expired, JourneyFilter};

pub use crate::clickhouse::{is_plain_identifier, ClickHouseConfig, ClickHouseStore};
pub use embedded::{ApplyOutcome, EmbeddedStore};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored event is not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    #[error("database name {0:?}: use ASCII letters, digits and `_`, not starting with a digit")]
    InvalidDatabaseName(String),
    #[error(
        "the selected events span too long a time for one path report; narrow it with from and to"
    )]
    ReportTooWide,
}

/// What [`JourneyStore::forget`] erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The customer's name before it was erased.
    pub customer_id: IdentityKey,
    /// Every identity of the customer, each now tombstoned.
    pub identities: Vec<IdentityKey>,
    /// Stored events erased: touchpoints, identifies and aliases.
    pub events: u64,
    /// Whether the erasure is done. A store that erases in the background (ClickHouse
    /// mutations) may answer before it is; the tombstones are written either way.
    pub complete: bool,
}

/// What reports read. Both stores give the same answers for the same events.
#[async_trait]
pub trait JourneyStore: Send + Sync {
    /// The stitched journeys of `project` that pass `filter`.
    async fn journeys(
        &self,
        project: &str,
        filter: &JourneyFilter,
    ) -> Result<JourneySet, StoreError>;

    /// [`journeys`](Self::journeys), for reports that read no step property: the steps may come
    /// without their properties (every [`JourneySet::property`] is then `None`), which lets a
    /// store build the set where the data lives. The journeys themselves are the same.
    async fn journeys_without_properties(
        &self,
        project: &str,
        filter: &JourneyFilter,
    ) -> Result<JourneySet, StoreError> {
        self.journeys(project, filter).await
    }

    /// The journeys of `project` that pass `filter`, split into segments by `dimension`, as
    /// [`JourneyBook::segments`](scribble_domain::stitch::JourneyBook::segments) defines them.
    async fn segments(
        &self,
        project: &str,
        filter: &JourneyFilter,
        dimension: &Dimension,
    ) -> Result<Vec<(String, JourneySet)>, StoreError>;

    /// The path graph of the journeys `filter` selects. By default drawn from
    /// [`journeys`](Self::journeys); a store may count it where the data lives, as long as the
    /// graph is the same.
    async fn path_graph(
        &self,
        project: &str,
        filter: &JourneyFilter,
        view: GraphView,
        options: &PathOptions,
    ) -> Result<PathGraph, StoreError> {
        let set = self.journeys(project, filter).await?;
        let options = options.clone();
        Ok(tokio::task::spawn_blocking(move || match view {
            GraphView::Positional => positional_graph(&set, &options),
            GraphView::State => state_graph(&set, &options),
        })
        .await?)
    }

    /// The customer of `project` any of whose identities is `identity`.
    async fn customer(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<CustomerView>, StoreError>;

    /// Erases the customer of `project` any of whose identities is `identity`: a tombstone for
    /// each of its identities is written first (workers drop every later event naming one),
    /// then its events, identity links, traits and journey fragments are deleted. `None` when
    /// no customer has `identity`.
    async fn forget(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Forgotten>, StoreError>;

    /// Applies a retention period to `project`: what
    /// [`expiry`](scribble_domain::privacy::expiry) says for every event before `cutoff_ms`
    /// (touchpoints deleted, links kept without traits or addresses). Idempotent; returns what
    /// was removed.
    async fn expire(&self, project: &str, cutoff_ms: i64) -> Result<Expired, StoreError>;

    /// Whether reports can be read right now (for readiness endpoints): `Ok` unless the store
    /// is a server that does not answer. The embedded store, in this process, always can.
    async fn check_reachable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
