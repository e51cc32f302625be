//! What a stack stored, read straight from its store (not through the code under test): how many
//! times each event id is there as reports see it, and the events the query API counts.
//!
//! - Embedded: the rows of the `events` table of `store.db` (the store writes an id once; a
//!   second row would be a second event to every report).
//! - ClickHouse: rows of `events` under `FINAL`, which folds rows of one sorting key
//!   `(project, at_ms, event_id)` as background merges eventually do. A replayed or re-sent event
//!   is an exact copy and folds; one id under two event times would stay two rows and count
//!   twice in reports, so that is what a duplicate is here. Raw rows before folding are reported
//!   too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::stacks::{PROJECT, READ_KEY};

/// Where a stack keeps its events.
pub enum Store {
    Embedded { file: PathBuf },
    ClickHouse { url: String, database: String },
}

/// Each stored event id and how many times reports see it.
pub struct Stored {
    pub copies: HashMap<Uuid, u32>,
    /// Rows in the table, before any folding (equal to the copies' sum for the embedded store).
    pub rows: u64,
}

impl Store {
    /// Events stored so far, cheap enough to poll while the pipeline drains: rows of the
    /// embedded store (which writes an id once; [`Store::read`] checks that), distinct ids in
    /// ClickHouse.
    pub fn stored_events(&self) -> Option<u64> {
        match self {
            // Rows are only appended during a run, so the last row id is the count.
            Self::Embedded { file } => open(file)?
                .query_row("SELECT COALESCE(MAX(rowid), 0) FROM events", [], |row| {
                    row.get(0)
                })
                .ok(),
            Self::ClickHouse { url, database } => clickhouse(
                url,
                &format!(
                    "SELECT uniqExact(event_id) FROM {database}.events WHERE project = '{PROJECT}'"
                ),
            )?
            .trim()
            .parse()
            .ok(),
        }
    }

    /// Every stored id with its copies.
    pub fn read(&self) -> Stored {
        match self {
            Self::Embedded { file } => {
                let connection = open(file).expect("the embedded store file");
                let mut statement = connection
                    .prepare(
                        "SELECT json_extract(body, '$.event_id') FROM events WHERE project = ?1",
                    )
                    .expect("query the embedded store");
                let mut copies: HashMap<Uuid, u32> = HashMap::new();
                let mut rows = 0;
                let ids = statement
                    .query_map([PROJECT], |row| row.get::<_, String>(0))
                    .expect("read the embedded store");
                for id in ids {
                    let id = id.expect("an event id");
                    *copies.entry(id.parse().expect("a UUID")).or_default() += 1;
                    rows += 1;
                }
                Stored { copies, rows }
            }
            Self::ClickHouse { url, database } => {
                let folded = clickhouse(
                    url,
                    &format!(
                        "SELECT event_id, count() FROM {database}.events FINAL WHERE project = '{PROJECT}' \
                         GROUP BY event_id FORMAT TabSeparated"
                    ),
                )
                .expect("read ClickHouse");
                let copies = folded
                    .lines()
                    .map(|line| {
                        let (id, count) = line.split_once('\t').expect("id and count");
                        (id.parse().expect("a UUID"), count.parse().expect("a count"))
                    })
                    .collect();
                let rows = clickhouse(
                    url,
                    &format!("SELECT count() FROM {database}.events WHERE project = '{PROJECT}'"),
                )
                .expect("count ClickHouse rows")
                .trim()
                .parse()
                .expect("a row count");
                Stored { copies, rows }
            }
        }
    }
}

fn open(file: &PathBuf) -> Option<Connection> {
    let connection = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    connection.busy_timeout(Duration::from_secs(10)).ok()?;
    Some(connection)
}

/// The text answer to `sql`, or `None` while ClickHouse does not answer.
fn clickhouse(url: &str, sql: &str) -> Option<String> {
    let reply = reqwest::blocking::Client::new()
        .post(url)
        .body(sql.to_owned())
        .timeout(Duration::from_secs(60))
        .send()
        .ok()?;
    if !reply.status().is_success() {
        return None;
    }
    reply.text().ok()
}

/// The number of events the query API's reports count (`GET /v1/touchpoints`), if it answers.
pub fn events_in_reports(api_url: &str) -> Option<u64> {
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{api_url}/v1/touchpoints"))
        .bearer_auth(READ_KEY)
        .timeout(Duration::from_secs(60))
        .send()
        .ok()?
        .json()
        .ok()?;
    answer["events"].as_u64()
}
