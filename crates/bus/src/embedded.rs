//! The embedded durable queue. Appends from many requests are grouped into one SQLite
//! transaction by a single writer thread (group commit): each caller's future resolves only after
//! the transaction holding its events is committed with `synchronous=FULL`, so an acknowledged
//! event survives `kill -9` and power loss, while one fsync serves every request waiting at the
//! time. Readers follow the committed sequence number through a watch channel.

use std::path::Path;
use std::sync::Mutex;
use std::thread;

use rusqlite::{params, Connection};
use scribble_domain::event::Event;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error};

use async_trait::async_trait;

use crate::{BusError, EventSink};

/// How many append requests may wait for the writer before callers are made to wait.
const PENDING_REQUESTS: usize = 4096;
/// Most events one group commit takes, so a burst does not hold every caller for one huge fsync.
const MAX_GROUP_EVENTS: usize = 20_000;

/// One event read back from the queue, with its position.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub seq: u64,
    pub project: String,
    pub event: Event,
}

struct AppendRequest {
    project: String,
    events: Vec<String>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The embedded queue: cheap to share behind an `Arc`.
pub struct EmbeddedQueue {
    requests: mpsc::Sender<AppendRequest>,
    committed: watch::Receiver<u64>,
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("committed", &*self.committed.borrow())
            .finish()
    }
}

fn open_connection(path: &Path) -> Result<Connection, BusError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

impl EmbeddedQueue {
    /// Opens (creating if needed) the queue file at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, BusError> {
        let writer = open_connection(path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 project TEXT NOT NULL,
                 event TEXT NOT NULL
             );",
        )?;
        let last: u64 =
            writer.query_row("SELECT COALESCE(MAX(seq), 0) FROM entries", [], |row| {
                row.get(0)
            })?;
        let reader = open_connection(path)?;
        let (requests, inbox) = mpsc::channel(PENDING_REQUESTS);
        let (announce, committed) = watch::channel(last);
        thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || write_groups(writer, inbox, announce))
            .expect("spawn the queue writer thread");
        Ok(Self {
            requests,
            committed,
            reader: Mutex::new(reader),
        })
    }

    /// Appends `events` of `project` and returns once they are committed to disk, with the
    /// sequence number of the last one.
    pub async fn append(&self, project: &str, events: &[Event]) -> Result<u64, BusError> {
        let encoded = events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        let (done, committed) = oneshot::channel();
        let request = AppendRequest {
            project: project.to_owned(),
            events: encoded,
            done,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| BusError::Closed)?;
        match committed.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(message)) => Err(BusError::Commit(message)),
            Err(_) => Err(BusError::Closed),
        }
    }

    /// A receiver of the last committed sequence number; it changes after every group commit.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Up to `limit` events with a sequence number above `after`, in order. Blocking.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<QueuedEvent>, BusError> {
        let reader = self.reader.lock().expect("queue reader lock");
        let mut statement = reader.prepare_cached(
            "SELECT seq, project, event FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after, limit as i64], |row| {
            Ok((
                row.get::<_, u64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, project, text) = row?;
            events.push(QueuedEvent {
                seq,
                project,
                event: serde_json::from_str(&text)?,
            });
        }
        Ok(events)
    }

    /// Drops entries up to and including `seq`, once the store has durably taken them. Blocking.
    pub fn truncate_through(&self, seq: u64) -> Result<usize, BusError> {
        let reader = self.reader.lock().expect("queue reader lock");
        Ok(reader.execute("DELETE FROM entries WHERE seq <= ?1", params![seq])?)
    }

    /// Number of entries not yet truncated. Blocking.
    pub fn depth(&self) -> Result<u64, BusError> {
        let reader = self.reader.lock().expect("queue reader lock");
        Ok(reader.query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))?)
    }
}

#[async_trait]
impl EventSink for EmbeddedQueue {
    async fn append(&self, project: &str, events: &[Event]) -> Result<(), BusError> {
        EmbeddedQueue::append(self, project, events).await.map(drop)
    }

    fn is_ready(&self) -> bool {
        !self.requests.is_closed()
    }
}

/// The writer thread: waits for a request, takes every other waiting one (up to a bound), writes
/// them in one transaction, and answers them all after the commit.
fn write_groups(
    mut connection: Connection,
    mut inbox: mpsc::Receiver<AppendRequest>,
    announce: watch::Sender<u64>,
) {
    while let Some(first) = inbox.blocking_recv() {
        let mut group = vec![first];
        let mut events = group[0].events.len();
        while events < MAX_GROUP_EVENTS {
            let Ok(next) = inbox.try_recv() else { break };
            events += next.events.len();
            group.push(next);
        }
        match commit_group(&mut connection, &group) {
            Ok(last_seqs) => {
                let newest = last_seqs.iter().copied().max().unwrap_or(0);
                debug!(requests = group.len(), events, newest, "group committed");
                // Announce before answering, so that whoever got an answer also sees the new
                // committed position.
                announce.send_if_modified(|current| {
                    let changed = newest > *current;
                    *current = (*current).max(newest);
                    changed
                });
                for (request, seq) in group.into_iter().zip(last_seqs) {
                    let _ = request.done.send(Ok(seq));
                }
            }
            Err(failure) => {
                error!(error = %failure, requests = group.len(), "group commit failed");
                for request in group {
                    let _ = request.done.send(Err(failure.to_string()));
                }
            }
        }
    }
}

fn commit_group(
    connection: &mut Connection,
    group: &[AppendRequest],
) -> rusqlite::Result<Vec<u64>> {
    let transaction = connection.transaction()?;
    let mut last_seqs = Vec::with_capacity(group.len());
    {
        let mut insert =
            transaction.prepare_cached("INSERT INTO entries (project, event) VALUES (?1, ?2)")?;
        for request in group {
            for event in &request.events {
                insert.execute(params![request.project, event])?;
            }
            last_seqs.push(transaction.last_insert_rowid() as u64);
        }
    }
    transaction.commit()?;
    Ok(last_seqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribble_domain::event::{Body, Who};
    use uuid::Uuid;

    fn visit(n: u128) -> Event {
        Event {
            event_id: Uuid::from_u128(n),
            at_ms: n as i64,
            received_ms: n as i64,
            who: Who {
                anonymous_id: Some(format!("c{n}")),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_events_read_back_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        {
            let queue = std::sync::Arc::new(EmbeddedQueue::open(&path).unwrap());
            let writers: Vec<_> = (0..8u128)
                .map(|writer| {
                    let queue = queue.clone();
                    tokio::spawn(async move {
                        let events: Vec<Event> = (0..10).map(|i| visit(writer * 100 + i)).collect();
                        queue.append("demo", &events).await.unwrap()
                    })
                })
                .collect();
            for writer in writers {
                writer.await.unwrap();
            }
            assert_eq!(*queue.committed().borrow(), 80);
        }
        let reopened = EmbeddedQueue::open(&path).unwrap();
        let events = reopened.read_after(0, 1000).unwrap();
        assert_eq!(events.len(), 80);
        assert!(events.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        assert_eq!(reopened.read_after(75, 1000).unwrap().len(), 5);
        assert_eq!(reopened.truncate_through(40).unwrap(), 40);
        assert_eq!(reopened.depth().unwrap(), 40);
        // Sequence numbers keep growing after a truncation, so cursors stay valid.
        let seq = reopened.append("demo", &[visit(999)]).await.unwrap();
        assert_eq!(seq, 81);
    }
}
