//! The embedded store. `apply` writes a batch of events and the worker's queue cursor in one
//! transaction, so a crash between the write and the cursor update cannot happen: after a restart
//! the worker resumes exactly after the last stored batch. Duplicate sends are recognised by the
//! journey books, which hold the id of every stored event (they are rebuilt from the table at
//! start), so the table needs no index. Only after the commit does the batch enter the books.
//!
//! Rows leave the table only through privacy: [`EmbeddedStore::forget`] erases a customer and
//! leaves a tombstone per identity (`apply` drops any later event naming one), and
//! [`EmbeddedStore::expire`] applies a retention period. Both change the table and then the
//! book the same way, so the book always answers as one rebuilt from the table.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection};
use scribble_domain::event::{Event, IdentityKey};
use scribble_domain::journey::JourneySet;
use scribble_domain::privacy::{expiry, names_tombstoned, Expiry};
use scribble_domain::stitch::{CustomerView, Dimension, Expired, JourneyBook, JourneyFilter};
use tracing::info;

use crate::{Forgotten, JourneyStore, StoreError};

/// What one `apply` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub stored: usize,
    pub duplicates: usize,
    /// Events dropped because they name an identity of a forgotten customer.
    pub tombstoned: usize,
}

/// The tombstoned identities of each project that has any.
type Tombstones = HashMap<String, HashSet<IdentityKey>>;

/// The embedded store; share it behind an `Arc`.
pub struct EmbeddedStore {
    connection: Mutex<Connection>,
    books: RwLock<HashMap<String, JourneyBook>>,
    /// Changed only while `connection` is locked, like the table it mirrors.
    tombstones: RwLock<Tombstones>,
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
             INSERT OR IGNORE INTO queue_cursor (id, seq) VALUES (1, 0);
             CREATE TABLE IF NOT EXISTS tombstones (
                 project TEXT NOT NULL,
                 identity TEXT NOT NULL,
                 erased_ms INTEGER NOT NULL,
                 PRIMARY KEY (project, identity)
             );",
        )?;
        let cursor: u64 =
            connection.query_row("SELECT seq FROM queue_cursor WHERE id = 1", [], |row| {
                row.get(0)
            })?;
        let mut tombstones = Tombstones::new();
        {
            let mut statement = connection.prepare("SELECT project, identity FROM tombstones")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                tombstones
                    .entry(row.get(0)?)
                    .or_default()
                    .insert(IdentityKey(row.get(1)?));
            }
        }
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
            tombstones: RwLock::new(tombstones),
            cursor: AtomicU64::new(cursor),
        })
    }

    /// Sequence number of the last queue entry this store has taken.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Stores `events` (project, event) and moves the cursor to `through_seq`, durably and
    /// atomically, then adds the new events to the journey books. Events naming a tombstoned
    /// identity (of a forgotten customer) are dropped. Blocking.
    pub fn apply(
        &self,
        events: &[(&str, &Event)],
        through_seq: u64,
    ) -> Result<ApplyOutcome, StoreError> {
        // Held for the whole apply: deciding what is fresh and storing it must not interleave
        // with another apply.
        let mut connection = self.connection.lock();
        let alive: Vec<(&str, &Event)> = {
            let tombstones = self.tombstones.read();
            events
                .iter()
                .filter(|(project, event)| match tombstones.get(*project) {
                    Some(erased) => !names_tombstoned(event, |key| erased.contains(key)),
                    None => true,
                })
                .copied()
                .collect()
        };
        let fresh: Vec<(&str, &Event)> = {
            let books = self.books.read();
            let mut in_batch = HashSet::with_capacity(alive.len());
            alive
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
            duplicates: alive.len() - fresh.len(),
            tombstoned: events.len() - alive.len(),
        })
    }

    /// Erases the customer of `project` any of whose identities is `identity`: a tombstone for
    /// each of its identities, and every event naming one of them (its touchpoints, identifies
    /// and aliases, and with them its links and traits), in one transaction; then the same in
    /// the journey book. `None` when no customer has `identity`. Blocking: the events are found
    /// by scanning the table.
    pub fn forget(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Forgotten>, StoreError> {
        let mut connection = self.connection.lock();
        let Some(customer) = self.read(project, |book| book.customer(identity)) else {
            return Ok(None);
        };
        let keys: Vec<&str> = customer
            .identities
            .iter()
            .map(|key| key.0.as_str())
            .collect();
        let bare_ids = |user: bool| -> Result<String, StoreError> {
            let ids: Vec<&str> = customer
                .identities
                .iter()
                .filter(|key| key.is_user() == user)
                .map(IdentityKey::bare)
                .collect();
            Ok(serde_json::to_string(&ids)?)
        };
        let (users, anonymous) = (bare_ids(true)?, bare_ids(false)?);
        let transaction = connection.transaction()?;
        {
            let mut tombstone = transaction.prepare_cached(
                "INSERT OR IGNORE INTO tombstones (project, identity, erased_ms) VALUES (?1, ?2, ?3)",
            )?;
            for key in &keys {
                tombstone.execute(params![project, key, now_ms()])?;
            }
        }
        let erased_ids: HashSet<uuid::Uuid> = {
            let mut delete = transaction.prepare(
                "DELETE FROM events WHERE project = ?1 AND (
                     json_extract(body, '$.who.user_id') IN (SELECT value FROM json_each(?2))
                     OR json_extract(body, '$.who.anonymous_id') IN (SELECT value FROM json_each(?3))
                     OR json_extract(body, '$.body.alias.previous_id') IN (SELECT value FROM json_each(?2)))
                 RETURNING body",
            )?;
            let mut rows = delete.query(params![project, users, anonymous])?;
            let mut erased = HashSet::new();
            while let Some(row) = rows.next()? {
                let event: Event = serde_json::from_str(&row.get::<_, String>(0)?)?;
                erased.insert(event.event_id);
            }
            erased
        };
        transaction.commit()?;
        self.tombstones
            .write()
            .entry(project.to_owned())
            .or_default()
            .extend(customer.identities.iter().cloned());
        if let Some(book) = self.books.write().get_mut(project) {
            book.forget(identity, &erased_ids);
        }
        drop(connection);
        info!(
            project,
            customer = %customer.customer_id.0,
            identities = keys.len(),
            events = erased_ids.len(),
            "customer forgotten"
        );
        Ok(Some(Forgotten {
            customer_id: customer.customer_id,
            identities: customer.identities,
            events: erased_ids.len() as u64,
            complete: true,
        }))
    }

    /// Applies a retention period to `project`: what [`expiry`] says for every event before
    /// `cutoff_ms` (touchpoints deleted, links kept without traits or addresses), in one
    /// transaction, then the same in the journey book. Idempotent. Blocking: the events are
    /// found by scanning the table.
    pub fn expire(&self, project: &str, cutoff_ms: i64) -> Result<Expired, StoreError> {
        let mut connection = self.connection.lock();
        let transaction = connection.transaction()?;
        let mut changes = Vec::new();
        {
            // Only events a sweep still changes: reduced links carry no touchpoint, traits
            // (left out of the JSON when empty) or address.
            let mut candidates = transaction.prepare(
                "SELECT rowid, body FROM events WHERE project = ?1
                     AND json_extract(body, '$.at_ms') < ?2
                     AND (json_extract(body, '$.body.touchpoint') IS NOT NULL
                          OR json_extract(body, '$.body.identify.traits') IS NOT NULL
                          OR json_extract(body, '$.ip') IS NOT NULL)",
            )?;
            let mut rows = candidates.query(params![project, cutoff_ms])?;
            while let Some(row) = rows.next()? {
                let rowid: i64 = row.get(0)?;
                let event: Event = serde_json::from_str(&row.get::<_, String>(1)?)?;
                match expiry(&event, cutoff_ms) {
                    Expiry::Keep => {}
                    change => changes.push((rowid, change)),
                }
            }
        }
        {
            let mut delete = transaction.prepare("DELETE FROM events WHERE rowid = ?1")?;
            let mut rewrite =
                transaction.prepare("UPDATE events SET body = ?2 WHERE rowid = ?1")?;
            for (rowid, change) in &changes {
                match change {
                    Expiry::Keep => {}
                    Expiry::Delete => {
                        delete.execute(params![rowid])?;
                    }
                    Expiry::ReduceToLink(link) => {
                        rewrite.execute(params![rowid, serde_json::to_string(link)?])?;
                    }
                }
            }
        }
        transaction.commit()?;
        let expired = self
            .books
            .write()
            .get_mut(project)
            .map(|book| book.expire_before(cutoff_ms))
            .unwrap_or_default();
        drop(connection);
        Ok(expired)
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

/// Milliseconds since the Unix epoch, for the time a tombstone records.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
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

    async fn forget(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Forgotten>, StoreError> {
        let (store, project, identity) = (self.clone(), project.to_owned(), identity.clone());
        tokio::task::spawn_blocking(move || EmbeddedStore::forget(&store, &project, &identity))
            .await?
    }

    async fn expire(&self, project: &str, cutoff_ms: i64) -> Result<Expired, StoreError> {
        let (store, project) = (self.clone(), project.to_owned());
        tokio::task::spawn_blocking(move || EmbeddedStore::expire(&store, &project, cutoff_ms))
            .await?
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
            ip: None,
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
                    duplicates: 0,
                    tombstoned: 0,
                }
            );
            // A replay of the same events (a crash before the cursor moved would cause one).
            let replay = store.apply(&[("shop", &a), ("shop", &b)], 5).unwrap();
            assert_eq!(
                replay,
                ApplyOutcome {
                    stored: 0,
                    duplicates: 2,
                    tombstoned: 0,
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

    fn identify(n: u128, at_ms: i64, anonymous: &str, user: &str) -> Event {
        let mut traits = serde_json::Map::new();
        traits.insert("persona".into(), "buyer".into());
        Event {
            event_id: Uuid::from_u128(n),
            at_ms,
            received_ms: at_ms,
            who: Who {
                anonymous_id: Some(anonymous.into()),
                user_id: Some(user.into()),
            },
            body: Body::Identify { traits },
            ip: Some("203.0.113.0".parse().unwrap()),
        }
    }

    /// What reports and the journey endpoint see of `project`.
    fn answers(store: &EmbeddedStore, project: &str) -> (usize, Vec<Option<CustomerView>>) {
        let keys = ["a:x", "u:ann", "a:y", "a:z"].map(|key| IdentityKey(key.to_owned()));
        store.read(project, |book| {
            (
                book.touch_count(),
                keys.iter().map(|key| book.customer(key)).collect(),
            )
        })
    }

    #[test]
    fn a_forgotten_customer_is_erased_on_disk_and_stays_erased() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        // Ann: cookie x, then identified; y is someone else; blog's x is another project's.
        let events = [visit(1, "x"), identify(2, 5, "x", "ann"), visit(3, "y")];
        let blog_x = visit(4, "x");
        let store = EmbeddedStore::open(&path).unwrap();
        let mut batch: Vec<(&str, &Event)> = events.iter().map(|event| ("shop", event)).collect();
        batch.push(("blog", &blog_x));
        store.apply(&batch, 1).unwrap();

        let forgotten = store
            .forget("shop", &IdentityKey::user("ann"))
            .unwrap()
            .expect("ann is known");
        assert_eq!(forgotten.customer_id, IdentityKey::user("ann"));
        assert_eq!(
            forgotten.identities,
            [IdentityKey::user("ann"), IdentityKey::anonymous("x")]
        );
        assert_eq!((forgotten.events, forgotten.complete), (2, true));
        assert_eq!(
            store.forget("shop", &IdentityKey::anonymous("x")).unwrap(),
            None
        );
        assert_eq!(store.read("shop", |book| book.touch_count()), 1, "y stays");
        assert_eq!(
            store.read("blog", |book| book.touch_count()),
            1,
            "other projects stay"
        );

        // Late and replayed events of either identity are dropped; others are stored.
        let late = [
            visit(5, "x"),
            identify(6, 9, "z", "ann"),
            visit(1, "x"),
            visit(7, "z"),
        ];
        let outcome = store
            .apply(
                &late.iter().map(|event| ("shop", event)).collect::<Vec<_>>(),
                2,
            )
            .unwrap();
        assert_eq!(
            outcome,
            ApplyOutcome {
                stored: 1,
                duplicates: 0,
                tombstoned: 3,
            }
        );
        let before_restart = answers(&store, "shop");
        assert_eq!(before_restart.0, 2, "y and the new visitor z");
        assert_eq!(
            before_restart.1[..2],
            [None, None],
            "ann and her cookie are gone"
        );
        drop(store);

        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            answers(&reopened, "shop"),
            before_restart,
            "the same from disk"
        );
        let again = reopened.apply(&[("shop", &late[0])], 3).unwrap();
        assert_eq!(again.tombstoned, 1, "tombstones survive a restart");
    }

    #[test]
    fn expiry_deletes_old_touchpoints_keeps_links_and_matches_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        // x: a visit at 1 and at 100; ann identified x at 5; y visited only at 2.
        let events = [
            visit(1, "x"),
            identify(2, 5, "x", "ann"),
            visit(100, "x"),
            visit(3, "y"),
        ];
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .apply(
                &events
                    .iter()
                    .map(|event| ("shop", event))
                    .collect::<Vec<_>>(),
                1,
            )
            .unwrap();
        let expired = store.expire("shop", 50).unwrap();
        assert_eq!((expired.touches, expired.traits), (2, 1));
        assert_eq!(
            store.expire("shop", 50).unwrap(),
            Expired::default(),
            "idempotent"
        );
        let swept = answers(&store, "shop");
        let ann = swept.1[1].as_ref().expect("ann is still stitched to x");
        assert_eq!(ann.identities.len(), 2);
        assert_eq!(ann.touches.len(), 1, "only the visit at 100 stays");
        assert!(
            ann.traits.is_empty(),
            "traits recorded before the cutoff go"
        );
        assert_eq!(swept.1[2], None, "no event names y any more");
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(answers(&reopened, "shop"), swept);
        let stored_identify: String = reopened
            .connection
            .lock()
            .query_row(
                "SELECT body FROM events WHERE json_extract(body, '$.body.identify') IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(
            !stored_identify.contains("persona") && !stored_identify.contains("203.0.113"),
            "the old identify keeps only the link: {stored_identify}"
        );
    }
}
