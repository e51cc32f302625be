//! The embedded store. `apply` writes a batch of events and the worker's queue cursor in one
//! transaction, so a crash between the write and the cursor update cannot happen: after a restart
//! the worker resumes exactly after the last stored batch. Duplicate sends are recognised by the
//! journey books, which hold the id of every stored event (they are rebuilt from the table at
//! start), so the table is append-only and needs no index. Only after the commit does the batch
//! enter the books.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection};
use scribble_domain::event::{Event, IdentityKey};
use scribble_domain::journey::JourneySet;
use scribble_domain::stitch::{CustomerView, Dimension, JourneyBook, JourneyFilter};
use tracing::info;

use crate::{JourneyStore, StoreError};

/// What one `apply` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub stored: usize,
    pub duplicates: usize,
}

/// The embedded store; share it behind an `Arc`.
pub struct EmbeddedStore {
    connection: Mutex<Connection>,
    books: RwLock<HashMap<String, JourneyBook>>,
    cursor: AtomicU64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("cursor", &self.cursor())
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path` and loads every stored event into memory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 project TEXT NOT NULL,
                 body TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS queue_cursor (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 seq INTEGER NOT NULL
             );
             INSERT OR IGNORE INTO queue_cursor (id, seq) VALUES (1, 0);",
        )?;
        let cursor: u64 =
            connection.query_row("SELECT seq FROM queue_cursor WHERE id = 1", [], |row| {
                row.get(0)
            })?;
        let started = Instant::now();
        let mut books: HashMap<String, JourneyBook> = HashMap::new();
        let mut loaded = 0usize;
        {
            let mut statement =
                connection.prepare("SELECT project, body FROM events ORDER BY rowid")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let project: String = row.get(0)?;
                let body: String = row.get(1)?;
                let event: Event = serde_json::from_str(&body)?;
                books.entry(project).or_default().add(&event);
                loaded += 1;
            }
        }
        info!(
            events = loaded,
            cursor,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded store loaded"
        );
        Ok(Self {
            connection: Mutex::new(connection),
            books: RwLock::new(books),
            cursor: AtomicU64::new(cursor),
        })
    }

    /// Sequence number of the last queue entry this store has taken.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Stores `events` (project, event) and moves the cursor to `through_seq`, durably and
    /// atomically, then adds the new events to the journey books. Blocking.
    pub fn apply(
        &self,
        events: &[(&str, &Event)],
        through_seq: u64,
    ) -> Result<ApplyOutcome, StoreError> {
        // Held for the whole apply: deciding what is fresh and storing it must not interleave
        // with another apply.
        let mut connection = self.connection.lock();
        let fresh: Vec<(&str, &Event)> = {
            let books = self.books.read();
            let mut in_batch = HashSet::with_capacity(events.len());
            events
                .iter()
                .filter(|(project, event)| {
                    let stored = books
                        .get(*project)
                        .is_some_and(|book| book.contains(&event.event_id));
                    !stored && in_batch.insert((*project, event.event_id))
                })
                .copied()
                .collect()
        };
        let transaction = connection.transaction()?;
        {
            let mut insert =
                transaction.prepare_cached("INSERT INTO events (project, body) VALUES (?1, ?2)")?;
            for &(project, event) in &fresh {
                insert.execute(params![project, serde_json::to_string(event)?])?;
            }
        }
        transaction.execute(
            "UPDATE queue_cursor SET seq = ?1 WHERE id = 1",
            params![through_seq],
        )?;
        transaction.commit()?;
        {
            let mut books = self.books.write();
            for &(project, event) in &fresh {
                match books.get_mut(project) {
                    Some(book) => book.add(event),
                    None => books.entry(project.to_owned()).or_default().add(event),
                };
            }
        }
        self.cursor.store(through_seq, Ordering::Release);
        drop(connection);
        Ok(ApplyOutcome {
            stored: fresh.len(),
            duplicates: events.len() - fresh.len(),
        })
    }

    /// Runs `report` over the project's journey book (an empty one for a project without events).
    /// Blocking for as long as the report runs.
    pub fn read<R>(&self, project: &str, report: impl FnOnce(&JourneyBook) -> R) -> R {
        let books = self.books.read();
        match books.get(project) {
            Some(book) => report(book),
            None => report(&JourneyBook::new()),
        }
    }
}

#[async_trait]
impl JourneyStore for Arc<EmbeddedStore> {
    async fn journeys(
        &self,
        project: &str,
        filter: &JourneyFilter,
    ) -> Result<JourneySet, StoreError> {
        let (store, project, filter) = (self.clone(), project.to_owned(), filter.clone());
        Ok(
            tokio::task::spawn_blocking(move || {
                store.read(&project, |book| book.journeys(&filter))
            })
            .await?,
        )
    }

    async fn segments(
        &self,
        project: &str,
        filter: &JourneyFilter,
        dimension: &Dimension,
    ) -> Result<Vec<(String, JourneySet)>, StoreError> {
        let (store, project) = (self.clone(), project.to_owned());
        let (filter, dimension) = (filter.clone(), dimension.clone());
        Ok(tokio::task::spawn_blocking(move || {
            store.read(&project, |book| book.segments(&filter, &dimension))
        })
        .await?)
    }

    async fn customer(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<CustomerView>, StoreError> {
        let (store, project, identity) = (self.clone(), project.to_owned(), identity.clone());
        Ok(tokio::task::spawn_blocking(move || {
            store.read(&project, |book| book.customer(&identity))
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribble_domain::event::{Body, Who};
    use scribble_domain::stitch::JourneyFilter;
    use uuid::Uuid;

    fn visit(n: u128, who: &str) -> Event {
        Event {
            event_id: Uuid::from_u128(n),
            at_ms: n as i64,
            received_ms: n as i64,
            who: Who {
                anonymous_id: Some(who.into()),
                user_id: None,
            },
            body: Body::Touchpoint {
                touchpoint: "site_visit".into(),
                channel: "web".into(),
                direct: true,
                properties: Default::default(),
            },
        }
    }

    #[test]
    fn applied_events_are_deduplicated_kept_per_project_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let (a, b, c) = (visit(1, "x"), visit(2, "y"), visit(3, "x"));
        {
            let store = EmbeddedStore::open(&path).unwrap();
            let outcome = store
                .apply(&[("shop", &a), ("shop", &b), ("blog", &c)], 3)
                .unwrap();
            assert_eq!(
                outcome,
                ApplyOutcome {
                    stored: 3,
                    duplicates: 0
                }
            );
            // A replay of the same events (a crash before the cursor moved would cause one).
            let replay = store.apply(&[("shop", &a), ("shop", &b)], 5).unwrap();
            assert_eq!(
                replay,
                ApplyOutcome {
                    stored: 0,
                    duplicates: 2
                }
            );
            assert_eq!(store.read("shop", |book| book.touch_count()), 2);
        }
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(reopened.cursor(), 5);
        assert_eq!(
            reopened.read("shop", |book| book
                .journeys(&JourneyFilter::default())
                .journeys
                .len()),
            2
        );
        assert_eq!(reopened.read("blog", |book| book.touch_count()), 1);
        assert_eq!(reopened.read("nobody", |book| book.touch_count()), 0);
    }
}
