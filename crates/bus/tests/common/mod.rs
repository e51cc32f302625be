//! Helpers for the Kafka tests: the shared test broker, random topic names, sample events and
//! draining a consumer.

pub mod tansu;

use std::time::{Duration, Instant};

use scribble_bus::{Delivery, KafkaEventSource};
use scribble_domain::event::{Body, Event, Who};
use serde_json::{json, Map};
use uuid::Uuid;

/// The broker started by `scripts/test-servers start DIR`.
pub fn shared_brokers() -> String {
    std::env::var("SCRIBBLE_TEST_KAFKA_BROKERS").expect(
        "SCRIBBLE_TEST_KAFKA_BROKERS is not set: run `eval \"$(scripts/test-servers start \
         /tmp/scribble-test-servers)\"` first, which starts a Kafka-API broker (tansu) on loopback",
    )
}

/// A topic (and group) name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

/// `count` touchpoints of visitor `anonymous_id`, in event-time order.
pub fn visits(anonymous_id: &str, count: usize) -> Vec<Event> {
    (0..count)
        .map(|step| {
            let mut properties = Map::new();
            properties.insert("url".into(), json!(format!("/page/{step}")));
            properties.insert("order_value".into(), json!(12.5));
            Event {
                event_id: Uuid::new_v4(),
                at_ms: 1_700_000_000_000 + step as i64 * 1000,
                received_ms: 1_700_000_100_000,
                who: Who {
                    anonymous_id: Some(anonymous_id.to_owned()),
                    user_id: None,
                },
                body: Body::Touchpoint {
                    touchpoint: "site_visit".into(),
                    channel: "web".into(),
                    direct: true,
                    properties,
                },
                ip: None,
            }
        })
        .collect()
}

/// Polls `source` until it has handed out `count` deliveries, failing the test after `within`.
pub fn drain(source: &KafkaEventSource, count: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut deliveries = Vec::new();
    while deliveries.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages arrived within {within:?}: {deliveries:?}",
            deliveries.len()
        );
        let batch = source
            .poll_batch(count - deliveries.len(), Duration::from_millis(500))
            .expect("poll failed");
        deliveries.extend(batch);
    }
    deliveries
}

/// Everything `source` hands out during `quiet`: what a test expects to be nothing.
pub fn leftovers(source: &KafkaEventSource, quiet: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + quiet;
    let mut deliveries = Vec::new();
    while Instant::now() < deadline {
        deliveries.extend(
            source
                .poll_batch(100, Duration::from_millis(200))
                .expect("poll failed"),
        );
    }
    deliveries
}

/// The `(project, event)` of each event delivery, in delivery order.
pub fn events_of(deliveries: &[Delivery]) -> Vec<(String, Event)> {
    deliveries
        .iter()
        .filter_map(|delivery| match delivery {
            Delivery::Event { project, event, .. } => Some((project.clone(), event.clone())),
            Delivery::Poison { .. } => None,
        })
        .collect()
}
