//! Scale-out test plumbing: the servers `scripts/test` started, and a fresh topic and database
//! per test.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use scribble_bus::DeadLetters;

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

/// A fresh topic and database for one test; the database is dropped when the test ends.
pub struct Stack {
    pub clickhouse: String,
    pub database: String,
    pub brokers: String,
    pub topic: String,
    /// `kafka://BROKERS/TOPIC`, for `--bus`.
    pub bus: String,
    /// `clickhouse://HOST:PORT/DATABASE`, for `--store`.
    pub store: String,
    /// The workers' consumer group, for `--group`: its own per test, so no member of an earlier
    /// test's group (a killed worker whose session has not expired) holds up the join.
    pub group: String,
}

impl Stack {
    /// A topic on the broker of `scripts/test` and a database on its ClickHouse.
    pub fn new() -> Self {
        Self::with_brokers(&required_env("SCRIBBLE_TEST_KAFKA_BROKERS"))
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
            brokers: brokers.to_owned(),
            topic,
            store,
            group: format!("scribble-test-{suffix}"),
        }
    }
}

impl Drop for Stack {
    /// Drops the database and deletes the topic and its dead-letter topic, passed or failed.
    fn drop(&mut self) {
        let _ = reqwest::blocking::Client::new()
            .post(&self.clickhouse)
            .body(format!("DROP DATABASE IF EXISTS {}", self.database))
            .send();
        let Ok(admin) = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create::<AdminClient<DefaultClientContext>>()
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let dead_letters = DeadLetters::topic_for(&self.topic);
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(5)))
            .request_timeout(Some(Duration::from_secs(5)));
        let _ = runtime.block_on(admin.delete_topics(&[&self.topic, &dead_letters], &options));
    }
}
