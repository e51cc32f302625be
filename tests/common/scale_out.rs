//! Scale-out test plumbing: for each test a Kafka-API broker of its own (tansu, which
//! `scripts/test` installs), a fresh topic, and a fresh database on the ClickHouse `scripts/test`
//! started.

use std::time::Duration;

#[path = "../../crates/bus/tests/common/tansu.rs"]
mod tansu;

pub use tansu::Tansu;

/// How long a test waits for a new worker's first events to show: a fresh consumer group forms
/// in about 3 s; a worker taking over a killed member's partitions waits out its 10 s session.
pub const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// The value of an environment variable `scripts/test` sets; fails the test (never skips it)
/// when it is missing.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, which starts ClickHouse and a Kafka-API broker")
    })
}

/// A fresh topic and database for one test; the database is dropped, and a broker the stack
/// started stopped, when the test ends.
pub struct Stack {
    pub clickhouse: String,
    pub database: String,
    pub topic: String,
    /// `kafka://BROKERS/TOPIC`, for `--bus`.
    pub bus: String,
    /// `clickhouse://HOST:PORT/DATABASE`, for `--store`.
    pub store: String,
    /// The workers' consumer group, for `--group`: its own per test, so no member of an earlier
    /// test's group (a killed worker whose session has not expired) holds up the join.
    pub group: String,
    /// The broker [`Stack::new`] started for this test.
    own_broker: Option<Tansu>,
}

impl Stack {
    /// A topic on a tansu broker of its own and a database on the ClickHouse of `scripts/test`.
    ///
    /// One broker per test: twice, a full test run (once in CI) left the broker these tests
    /// shared running but answering every request with a storage error after one of them
    /// ended, and every later Kafka test failed. Rounds of the same tests alone never did it.
    pub fn new() -> Self {
        let broker = Tansu::start();
        let mut stack = Self::with_brokers(&broker.brokers);
        stack.own_broker = Some(broker);
        stack
    }

    /// The broker [`Stack::new`] started for this test, to pause and resume it.
    pub fn broker(&self) -> &Tansu {
        self.own_broker
            .as_ref()
            .expect("a stack made by Stack::new, which starts its own broker")
    }

    /// A topic on `brokers` and a database on the ClickHouse of `scripts/test`.
    pub fn with_brokers(brokers: &str) -> Self {
        let clickhouse = required_env("SCRIBBLE_TEST_CLICKHOUSE_URL");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("scribble_test_{suffix}");
        let topic = format!("scribble-test-{suffix}");
        let store = format!(
            "clickhouse://{}/{database}",
            clickhouse.trim_start_matches("http://")
        );
        Self {
            clickhouse,
            database,
            bus: format!("kafka://{brokers}/{topic}"),
            topic,
            store,
            group: format!("scribble-test-{suffix}"),
            own_broker: None,
        }
    }
}

impl Drop for Stack {
    /// Drops the database, passed or failed. The topics go with their broker: a private one
    /// per test.
    fn drop(&mut self) {
        let _ = reqwest::blocking::Client::new()
            .post(&self.clickhouse)
            .body(format!("DROP DATABASE IF EXISTS {}", self.database))
            .send();
    }
}
