//! A ClickHouse database of its own for a test (feature `test-support`): created with a random
//! name on the server `SCRIBBLE_TEST_CLICKHOUSE_URL` names (for example from
//! `eval "$(scripts/test-servers start DIR)"`), and dropped when the test ends, also when it
//! fails.

use std::sync::Arc;

use uuid::Uuid;

use crate::{ClickHouseConfig, ClickHouseStore};

/// The ClickHouse server of the tests; panics with what to run when it is not set.
fn server_url() -> String {
    std::env::var("SCRIBBLE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!(
            "SCRIBBLE_TEST_CLICKHOUSE_URL is not set: these tests need a real ClickHouse. \
             Start one with `eval \"$(scripts/test-servers start /tmp/scribble-servers)\"` \
             and run the tests again in that shell."
        )
    })
}

/// A ClickHouse store over a database of its own, dropped when this goes out of scope.
pub struct TestDatabase {
    pub store: Arc<ClickHouseStore>,
    pub url: String,
    pub name: String,
}

impl TestDatabase {
    /// A store over a new database, without its schema.
    pub async fn new() -> Self {
        let url = server_url();
        let name = format!("scribble_test_{}", Uuid::new_v4().simple());
        let config = ClickHouseConfig {
            url: url.clone(),
            database: name.clone(),
        };
        let store = ClickHouseStore::connect(&config)
            .await
            .unwrap_or_else(|error| panic!("cannot reach ClickHouse at {url}: {error}"));
        Self {
            store: Arc::new(store),
            url,
            name,
        }
    }

    /// A store over a new database with every migration applied.
    pub async fn migrated() -> Self {
        let database = Self::new().await;
        database.store.migrate().await.unwrap();
        database
    }

    /// A plain client of the server, for looking at the tables directly.
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_validation(false)
    }

    /// The rows of `table` in this database.
    pub async fn count(&self, table: &str) -> u64 {
        self.client()
            .query(&format!("SELECT count() FROM {}.{table}", self.name))
            .fetch_one()
            .await
            .unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (client, name) = (self.client(), self.name.clone());
        // The test's runtime cannot block on async work from inside `drop`: run the DROP on a
        // thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime")
                .block_on(
                    client
                        .query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(),
                )
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
