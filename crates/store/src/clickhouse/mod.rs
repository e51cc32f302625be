//! The ClickHouse store, for the scale-out deployment: every accepted event is one row of the
//! `events` table, written with RowBinary inserts over HTTP.
//!
//! Each insert also keeps every visitor's touchpoints together as one sorted row ([`fragments`]).
//! Path graphs are computed in ClickHouse ([`paths`]): filtering, grouping those rows per
//! customer (through the identity overrides of [`identities`]) and counting edges all run in one
//! query, and only the counted nodes and edges come back. A customer's timeline reads only that customer's rows.
//! Other reports still load a project's rows into a fresh [`JourneyBook`], the same stitching
//! code the embedded store runs, so both stores give the same answers for the same events.
//!
//! The SQL here must run on ClickHouse 18.16 (Debian's package, used by the tests) as well as on
//! current ClickHouse (the production images): no window functions, `LowCardinality`,
//! `DateTime64`, `Map` or JSON columns. The client runs with validation off, because validation
//! sends a setting the old server rejects; the row struct below must therefore match the table
//! column for column, in order, which the round trip against a real server in
//! `tests/clickhouse.rs` checks.

use std::collections::HashSet;

use ::clickhouse::{Client, Row};
use async_trait::async_trait;
use scribble_domain::event::{scalar_properties, scalar_text, Body, Event, IdentityKey, Who};
use scribble_domain::journey::JourneySet;
use scribble_domain::paths::{GraphView, PathGraph, PathOptions};
use scribble_domain::stitch::{CustomerView, Expired, JourneyBook, JourneyFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serde_repr::{Deserialize_repr, Serialize_repr};
use tracing::{info, instrument};
use uuid::Uuid;

use crate::{Forgotten, JourneyStore, StoreError};

mod fragments;
mod identities;
mod journeys;
mod paths;
mod privacy;
mod row_binary;

/// Where the ClickHouse store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// HTTP endpoint of the server, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding Scribble's tables: ASCII letters, digits and `_`, not starting with a
    /// digit. [`ClickHouseStore::migrate`] creates it when missing.
    pub database: String,
}

/// Statements that run before every migration check, so that the bookkeeping table exists.
/// `{db}` stands for the configured database. They are idempotent by construction.
const BOOTSTRAP: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS {db}",
    "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
         version UInt32,
         applied_at DateTime DEFAULT now()
     ) ENGINE = MergeTree() ORDER BY version",
];

/// Version 1: the raw events.
///
/// `ReplacingMergeTree` ordered by `(project, at_ms, event_id)`: a replayed event is an exact
/// copy of its first row, so both share the sorting key (and the partition) and background
/// merges keep one of them. Merges happen eventually, not at once, so readers must still
/// tolerate duplicates: the journey book drops repeated event ids. Leading with `project` and
/// `at_ms` keeps one project's rows together and lets a time range skip granules; the monthly
/// partition on event time (UTC, so independent of the server's time zone) lets a range skip
/// whole parts. `kind` is an `Enum8`, so the server refuses an unknown kind. `properties` and
/// `traits` hold the JSON text of their objects (`{}` when the kind has none): neither `Map`
/// nor JSON columns exist on ClickHouse 18.16. `prop_keys` and `prop_values` repeat the
/// top-level scalar properties as parallel arrays, values as filters compare them, so a
/// property filter needs no JSON parsing. (They joined version 1 before any release: 18.16
/// has no `ADD COLUMN IF NOT EXISTS` to add them idempotently later.)
const EVENTS_V1: &str = "CREATE TABLE IF NOT EXISTS {db}.events (
         project String,
         event_id UUID,
         kind Enum8('touchpoint' = 1, 'identify' = 2, 'alias' = 3),
         at_ms Int64,
         received_ms Int64,
         anonymous_id String,
         user_id String,
         previous_id String,
         touchpoint String,
         channel String,
         direct UInt8,
         properties String,
         traits String,
         prop_keys Array(String),
         prop_values Array(String)
     ) ENGINE = ReplacingMergeTree()
     PARTITION BY toYYYYMM(toDateTime(intDiv(at_ms, 1000), 'UTC'))
     ORDER BY (project, at_ms, event_id)";

/// Version 2: identity links and their resolution (see [`identities`]), and traits by identity
/// for trait filters. Links and traits are written with their events; replays write identical
/// rows, which the replacing engines fold.
const IDENTITIES_V2: &[Step] = &[
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS {db}.identity_links (
         project String,
         identity String,
         linked String
     ) ENGINE = ReplacingMergeTree() ORDER BY (project, identity, linked)",
    ),
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS {db}.identity_overrides (
         project String,
         identity String,
         customer String,
         version UInt64
     ) ENGINE = ReplacingMergeTree(version) ORDER BY (project, identity)",
    ),
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS {db}.traits (
         project String,
         identity String,
         key String,
         value String,
         scalar UInt8,
         at_ms Int64,
         event_id String
     ) ENGINE = ReplacingMergeTree() ORDER BY (project, identity, key, at_ms, event_id)",
    ),
];

/// One statement of a migration.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// SQL that is idempotent by itself (`IF NOT EXISTS`).
    Sql(&'static str),
    /// `ALTER TABLE {db}.<table> ADD COLUMN <column> <definition>` unless the column exists:
    /// ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`. New columns go last, so the row
    /// structs add their field last too.
    AddColumn {
        table: &'static str,
        column: &'static str,
        definition: &'static str,
    },
}

/// Every schema version with its statements, in order; `{db}` stands for the configured
/// database. Steps must be idempotent, so that two processes migrating at once, or a migration
/// interrupted before it was recorded, do no harm when run again. Append new versions; never
/// edit an applied one.
const MIGRATIONS: &[(u32, &[Step])] = &[
    (1, &[Step::Sql(EVENTS_V1)]),
    (2, IDENTITIES_V2),
    (3, fragments::FRAGMENTS_V3),
    (4, privacy::PRIVACY_V4),
];

/// The store over a ClickHouse server. Cheap to share behind an `Arc`.
pub struct ClickHouseStore {
    client: Client,
    database: String,
    known_labels: fragments::KnownLabels,
    tombstones: privacy::TombstoneCache,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("database", &self.database)
            .finish()
    }
}

impl ClickHouseStore {
    /// Checks the configuration and that the server answers. Creates nothing: call
    /// [`migrate`](Self::migrate) before the first insert or read.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Self, StoreError> {
        if !is_plain_identifier(&config.database) {
            return Err(StoreError::InvalidDatabaseName(config.database.clone()));
        }
        // Validation sends a setting ClickHouse 18.16 rejects; see the module doc.
        let client = Client::default()
            .with_url(&config.url)
            .with_validation(false);
        let version: String = client.query("SELECT version()").fetch_one().await?;
        info!(url = %config.url, database = %config.database, version, "connected to ClickHouse");
        Ok(Self {
            client,
            database: config.database.clone(),
            known_labels: fragments::KnownLabels::default(),
            tombstones: privacy::TombstoneCache::default(),
        })
    }

    /// Creates the database and the bookkeeping table when missing, then applies every version
    /// of `MIGRATIONS` not recorded yet, in order. Returns the versions applied by this call:
    /// empty when the schema was already current.
    #[instrument(skip_all, fields(database = %self.database))]
    pub async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        for statement in BOOTSTRAP {
            self.client.query(&self.sql(statement)).execute().await?;
        }
        let recorded: HashSet<u32> = self
            .client
            .query(&self.sql("SELECT DISTINCT version FROM {db}.schema_migrations"))
            .fetch_all::<u32>()
            .await?
            .into_iter()
            .collect();
        let mut applied = Vec::new();
        for &(version, statements) in MIGRATIONS {
            if recorded.contains(&version) {
                continue;
            }
            for step in statements {
                self.apply_step(step).await?;
            }
            self.client
                .query(&self.sql("INSERT INTO {db}.schema_migrations (version) VALUES (?)"))
                .bind(version)
                .execute()
                .await?;
            info!(version, "schema migration applied");
            applied.push(version);
        }
        Ok(applied)
    }

    /// Writes `events` as `(project, event)` pairs in one INSERT. ClickHouse wants few large
    /// inserts (each one makes a part on disk), so callers pass whole batches. Writing an event
    /// again (a replay after a crash) is harmless: readers drop repeated event ids. Events
    /// naming an identity of a forgotten customer are dropped ([`privacy`]).
    #[instrument(skip_all, fields(database = %self.database, events = events.len()))]
    pub async fn insert(&self, events: &[(&str, &Event)]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let tombstones = self.tombstones().await?;
        let alive = tombstones.alive(events);
        if alive.len() < events.len() {
            info!(
                dropped = events.len() - alive.len(),
                "events naming forgotten customers dropped"
            );
        }
        self.write(&alive).await?;
        self.erase_late_arrivals(&tombstones, &alive).await
    }

    /// Writes `events` to the events table and everything derived from them.
    async fn write(&self, events: &[(&str, &Event)]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Unescaped: `insert` would quote `db.events` as one name; the parts are plain
        // identifiers (checked in `connect`).
        let mut insert = self
            .client
            .insert_unescaped::<EventRow>(&self.sql("{db}.events"))
            .await?;
        let mut links = Vec::new();
        let mut traits = Vec::new();
        for &(project, event) in events {
            insert.write(&EventRow::from_event(project, event)).await?;
            links.extend(identities::links_of(project, event));
            traits.extend(TraitRow::of(project, event));
        }
        insert.end().await?;
        self.insert_rows("{db}.traits", &traits).await?;
        self.insert_rows("{db}.identity_links", &links).await?;
        self.resolve_identities(&links).await?;
        self.extend_fragments(events).await
    }

    /// Runs one migration step, idempotently.
    async fn apply_step(&self, step: &Step) -> Result<(), StoreError> {
        let (table, column, definition) = match *step {
            Step::Sql(statement) => {
                return Ok(self.client.query(&self.sql(statement)).execute().await?);
            }
            Step::AddColumn {
                table,
                column,
                definition,
            } => (table, column, definition),
        };
        if self.has_column(table, column).await? {
            return Ok(());
        }
        let alter = format!("ALTER TABLE {{db}}.{table} ADD COLUMN {column} {definition}");
        match self.client.query(&self.sql(&alter)).execute().await {
            Ok(()) => Ok(()),
            // Another process migrating at the same time added it first.
            Err(_) if self.has_column(table, column).await? => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    async fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        let found: u64 = self
            .client
            .query(
                "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
            )
            .bind(&self.database)
            .bind(table)
            .bind(column)
            .fetch_one()
            .await?;
        Ok(found > 0)
    }

    async fn insert_rows<R: ::clickhouse::RowOwned + ::clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[R],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert_unescaped::<R>(&self.sql(table)).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// `statement` with `{db}` replaced by the database name, which `connect` checked to be a
    /// plain identifier.
    fn sql(&self, statement: &str) -> String {
        statement.replace("{db}", &self.database)
    }

    /// The rows of `project` a journey book needs to answer for touchpoints in
    /// `[from_ms, to_ms)`. Touchpoints outside the range are left out unless they carry both an
    /// anonymous and a user id: those join identities, so they decide who a customer is (and
    /// its name) even when their own touch is out of range. Identify and alias rows are always
    /// read, for stitching and traits.
    async fn rows(
        &self,
        project: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<EventRow>, StoreError> {
        let mut sql = self.sql("SELECT ?fields FROM {db}.events WHERE project = ?");
        let bounds = time_bounds("at_ms", from_ms, to_ms);
        if !bounds.is_empty() {
            sql.push_str(&format!(
                " AND (kind != 'touchpoint' OR (anonymous_id != '' AND user_id != '') OR ({}))",
                bounds.join(" AND ")
            ));
        }
        Ok(self
            .client
            .query(&sql)
            .bind(project)
            .fetch_all::<EventRow>()
            .await?)
    }

    /// Every identity of the customer `identity` belongs to (itself included), from the
    /// resolved overrides.
    async fn customer_identities(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Vec<String>, StoreError> {
        let mut members: Vec<String> = self
            .client
            .query(&self.sql(
                "SELECT identity FROM (
                     SELECT identity, argMax(customer, version) AS resolved
                     FROM {db}.identity_overrides WHERE project = ? GROUP BY identity)
                 WHERE resolved = (
                     SELECT argMax(customer, version) FROM {db}.identity_overrides
                     WHERE project = ? AND identity = ?)",
            ))
            .bind(project)
            .bind(project)
            .bind(&identity.0)
            .fetch_all()
            .await?;
        if !members.contains(&identity.0) {
            members.push(identity.0.clone());
        }
        Ok(members)
    }

    /// The rows of `project` naming any of `identities`.
    async fn rows_of(
        &self,
        project: &str,
        identities: &[String],
    ) -> Result<Vec<EventRow>, StoreError> {
        Ok(self
            .client
            .query(&self.sql(
                "SELECT ?fields FROM {db}.events WHERE project = ? AND (
                     (user_id != '' AND has(?, concat('u:', user_id)))
                     OR (anonymous_id != '' AND has(?, concat('a:', anonymous_id)))
                     OR (kind = 'alias' AND has(?, concat('u:', previous_id))))",
            ))
            .bind(project)
            .bind(identities)
            .bind(identities)
            .bind(identities)
            .fetch_all::<EventRow>()
            .await?)
    }
}

/// Stitches `rows` in a fresh journey book. CPU-bound: run it off the async threads.
fn book_of(rows: Vec<EventRow>) -> Result<JourneyBook, StoreError> {
    let mut book = JourneyBook::new();
    for row in rows {
        book.add(&row.into_event()?);
    }
    Ok(book)
}

#[async_trait]
impl JourneyStore for ClickHouseStore {
    async fn journeys(
        &self,
        project: &str,
        filter: &JourneyFilter,
    ) -> Result<JourneySet, StoreError> {
        let rows = self.rows(project, filter.from_ms, filter.to_ms).await?;
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || Ok(book_of(rows)?.journeys(&filter))).await?
    }

    async fn journeys_without_properties(
        &self,
        project: &str,
        filter: &JourneyFilter,
    ) -> Result<JourneySet, StoreError> {
        match self.compact_journeys(project, filter).await? {
            Some(set) => Ok(set),
            None => self.journeys(project, filter).await,
        }
    }

    async fn segments(
        &self,
        project: &str,
        filter: &JourneyFilter,
        dimension: &scribble_domain::stitch::Dimension,
    ) -> Result<Vec<(String, JourneySet)>, StoreError> {
        let rows = self.rows(project, filter.from_ms, filter.to_ms).await?;
        let (filter, dimension) = (filter.clone(), dimension.clone());
        tokio::task::spawn_blocking(move || Ok(book_of(rows)?.segments(&filter, &dimension)))
            .await?
    }

    async fn path_graph(
        &self,
        project: &str,
        filter: &JourneyFilter,
        view: GraphView,
        options: &PathOptions,
    ) -> Result<PathGraph, StoreError> {
        self.count_path_graph(project, filter, view, options).await
    }

    async fn customer(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<CustomerView>, StoreError> {
        let identities = self.customer_identities(project, identity).await?;
        let rows = self.rows_of(project, &identities).await?;
        let identity = identity.clone();
        tokio::task::spawn_blocking(move || Ok(book_of(rows)?.customer(&identity))).await?
    }

    async fn forget(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Forgotten>, StoreError> {
        self.forget_customer(project, identity).await
    }

    async fn expire(&self, project: &str, cutoff_ms: i64) -> Result<Expired, StoreError> {
        self.expire_before(project, cutoff_ms).await
    }

    async fn check_reachable(&self) -> Result<(), StoreError> {
        self.client.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    }
}

/// Whether `name` can stand in SQL unquoted as a database name: ASCII letters, digits and `_`,
/// not starting with a digit. [`ClickHouseStore::connect`] refuses other names; callers may ask
/// first to fail earlier.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `kind` column; the discriminants are the `Enum8` values of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(i8)]
enum Kind {
    Touchpoint = 1,
    Identify = 2,
    Alias = 3,
}

/// One row of `events`, field for field in column order (the client does not check it).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct EventRow {
    project: String,
    #[serde(with = "::clickhouse::serde::uuid")]
    event_id: Uuid,
    kind: Kind,
    at_ms: i64,
    received_ms: i64,
    /// Empty when the event has none; validated ids are never empty.
    anonymous_id: String,
    user_id: String,
    previous_id: String,
    touchpoint: String,
    channel: String,
    direct: u8,
    properties: String,
    traits: String,
    prop_keys: Vec<String>,
    prop_values: Vec<String>,
    /// The sender's address as the collector recorded it; empty when unknown. Added by
    /// version 4, hence last.
    ip: String,
}

/// One row of `traits`: a trait an identify event set on its first identity.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct TraitRow {
    project: String,
    identity: String,
    key: String,
    /// The value as trait filters compare it; empty when it is not a scalar.
    value: String,
    scalar: u8,
    at_ms: i64,
    event_id: String,
}

impl TraitRow {
    fn of(project: &str, event: &Event) -> Vec<TraitRow> {
        let Body::Identify { traits } = &event.body else {
            return Vec::new();
        };
        let Some(identity) = event.identities().into_iter().next() else {
            return Vec::new();
        };
        traits
            .iter()
            .map(|(key, value)| {
                let text = scalar_text(value);
                TraitRow {
                    project: project.to_owned(),
                    identity: identity.0.clone(),
                    key: key.clone(),
                    scalar: u8::from(text.is_some()),
                    value: text.unwrap_or_default(),
                    at_ms: event.at_ms,
                    event_id: event.event_id.to_string(),
                }
            })
            .collect()
    }
}

impl EventRow {
    /// The row storing `event` of `project`; [`into_event`](Self::into_event) is its inverse.
    fn from_event(project: &str, event: &Event) -> Self {
        let mut row = Self {
            project: project.to_owned(),
            event_id: event.event_id,
            kind: Kind::Touchpoint,
            at_ms: event.at_ms,
            received_ms: event.received_ms,
            anonymous_id: event.who.anonymous_id.clone().unwrap_or_default(),
            user_id: event.who.user_id.clone().unwrap_or_default(),
            previous_id: String::new(),
            touchpoint: String::new(),
            channel: String::new(),
            direct: 0,
            properties: EMPTY_OBJECT.to_owned(),
            traits: EMPTY_OBJECT.to_owned(),
            prop_keys: Vec::new(),
            prop_values: Vec::new(),
            ip: event.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        match &event.body {
            Body::Touchpoint {
                touchpoint,
                channel,
                direct,
                properties,
            } => {
                row.touchpoint.clone_from(touchpoint);
                row.channel.clone_from(channel);
                row.direct = u8::from(*direct);
                row.properties = json_text(properties);
                for (key, text) in scalar_properties(properties) {
                    row.prop_keys.push(key.to_owned());
                    row.prop_values.push(text);
                }
            }
            Body::Identify { traits } => {
                row.kind = Kind::Identify;
                row.traits = json_text(traits);
            }
            Body::Alias { previous_id } => {
                row.kind = Kind::Alias;
                row.previous_id.clone_from(previous_id);
            }
        }
        row
    }

    /// The event this row stores; fails only on JSON text this module did not write. An
    /// address that does not parse (written by something else) reads as none.
    fn into_event(self) -> Result<Event, StoreError> {
        let body = match self.kind {
            Kind::Touchpoint => Body::Touchpoint {
                touchpoint: self.touchpoint,
                channel: self.channel,
                direct: self.direct != 0,
                properties: serde_json::from_str(&self.properties)?,
            },
            Kind::Identify => Body::Identify {
                traits: serde_json::from_str(&self.traits)?,
            },
            Kind::Alias => Body::Alias {
                previous_id: self.previous_id,
            },
        };
        Ok(Event {
            event_id: self.event_id,
            at_ms: self.at_ms,
            received_ms: self.received_ms,
            who: Who {
                anonymous_id: non_empty(self.anonymous_id),
                user_id: non_empty(self.user_id),
            },
            body,
            ip: self.ip.parse().ok(),
        })
    }
}

/// `text` as a ClickHouse string literal, for SQL sent through `Client::query`: that client
/// reads `?` as a bind placeholder and `??` as a literal `?`, so question marks are doubled.
pub(crate) fn string_literal(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('?', "??");
    format!("'{escaped}'")
}

/// `items` as a ClickHouse array literal of strings.
pub(crate) fn string_array(items: &[String]) -> String {
    let literals: Vec<String> = items.iter().map(|item| string_literal(item)).collect();
    format!("[{}]", literals.join(","))
}

/// SQL conditions keeping the times in `column` within `[from_ms, to_ms)`; none when open.
pub(super) fn time_bounds(column: &str, from_ms: Option<i64>, to_ms: Option<i64>) -> Vec<String> {
    [
        from_ms.map(|from| format!("{column} >= {from}")),
        to_ms.map(|to| format!("{column} < {to}")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Most identities one `IN` lookup names: a worker batch may name tens of thousands, and the
/// server refuses query text over 256 KiB (its default `max_query_size`).
pub(super) const LOOKUP_CHUNK: usize = 2_000;

/// `items` as a ClickHouse tuple of strings, for `IN`, which can use the primary key.
pub(crate) fn string_tuple(items: &[String]) -> String {
    let literals: Vec<String> = items.iter().map(|item| string_literal(item)).collect();
    format!("({})", literals.join(","))
}

const EMPTY_OBJECT: &str = "{}";

fn json_text(object: &Map<String, Value>) -> String {
    serde_json::to_string(object).expect("a JSON object with string keys always serialises")
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(n: u128, who: Who, body: Body) -> Event {
        Event {
            event_id: Uuid::from_u128(n),
            at_ms: 1_767_225_600_000 + n as i64,
            received_ms: 1_767_225_600_500 + n as i64,
            who,
            body,
            ip: None,
        }
    }

    #[test]
    fn every_kind_of_event_survives_the_row_round_trip() {
        let Value::Object(properties) =
            json!({"url": "https://x.test/", "value": 12.5, "nested": {"a": [1, true, null]}})
        else {
            unreachable!()
        };
        let Value::Object(traits) = json!({"persona": "researcher", "age": 41}) else {
            unreachable!()
        };
        let events = [
            event(
                1,
                Who {
                    anonymous_id: Some("anon-1".into()),
                    user_id: None,
                },
                Body::Touchpoint {
                    touchpoint: "site_visit".into(),
                    channel: "web".into(),
                    direct: true,
                    properties,
                },
            ),
            event(
                2,
                Who {
                    anonymous_id: None,
                    user_id: Some("cust-1".into()),
                },
                Body::Touchpoint {
                    touchpoint: "review_read".into(),
                    channel: "review".into(),
                    direct: false,
                    properties: Map::new(),
                },
            ),
            event(
                3,
                Who {
                    anonymous_id: Some("anon-1".into()),
                    user_id: Some("cust-1".into()),
                },
                Body::Identify { traits },
            ),
            event(
                4,
                Who {
                    anonymous_id: None,
                    user_id: Some("cust-1".into()),
                },
                Body::Alias {
                    previous_id: "crm-1".into(),
                },
            ),
        ];
        for (index, mut original) in events.into_iter().enumerate() {
            if index % 2 == 0 {
                original.ip = Some(if index == 0 {
                    "203.0.113.0".parse().unwrap()
                } else {
                    "2001:db8:1234::".parse().unwrap()
                });
            }
            let row = EventRow::from_event("shop", &original);
            assert_eq!(row.project, "shop");
            assert_eq!(row.into_event().unwrap(), original);
        }
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(string_literal(r"it's a \ test"), r"'it\'s a \\ test'");
        assert_eq!(string_array(&["a".into(), "b'".into()]), r"['a','b\'']");
        assert_eq!(string_tuple(&["a".into(), "b'".into()]), r"('a','b\'')");
        assert_eq!(string_literal("why?"), "'why??'");
    }

    #[test]
    fn only_plain_identifiers_pass_as_database_names() {
        for good in ["scribble", "_x", "scribble_test_0a1b"] {
            assert!(is_plain_identifier(good), "{good}");
        }
        for bad in ["", "1abc", "a-b", "a.b", "a b", "a`b", "é"] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn migrations_are_numbered_upwards_from_one() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
        let expected: Vec<u32> = (1..=MIGRATIONS.len() as u32).collect();
        assert_eq!(versions, expected);
    }
}
