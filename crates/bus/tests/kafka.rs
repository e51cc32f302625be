//! The Kafka side of the bus against a real Kafka-API broker (tansu): events appended through
//! `KafkaSink` come back from `KafkaEventSource` as sent, commits decide where a group resumes,
//! and a paused broker makes appends fail fast and readiness drop, without losing what was
//! acknowledged.
//!
//! Most tests use the broker of `scripts/test-servers` (`SCRIBBLE_TEST_KAFKA_BROKERS`), each on
//! its own topic and group; the fault test starts a private broker so pausing it disturbs nobody.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::tansu::Tansu;
use common::{drain, events_of, leftovers, shared_brokers, unique, visits};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scribble_bus::{
    ensure_topic, BusError, DeadLetters, Delivery, EventSink, KafkaConfig, KafkaConsumerConfig,
    KafkaEventSource, KafkaSink, REASON_HEADER,
};
use scribble_domain::event::Event;
use uuid::Uuid;

const ARRIVAL: Duration = Duration::from_secs(30);

/// A fresh topic with 3 partitions on `brokers`, and a sink producing to it.
async fn topic_and_sink(brokers: &str) -> (String, KafkaSink) {
    let topic = unique("events");
    ensure_topic(brokers, &topic, 3).await.unwrap();
    let sink = KafkaSink::new(&KafkaConfig::new(brokers, &topic)).unwrap();
    (topic, sink)
}

fn consumer(brokers: &str, topic: &str, group: &str) -> KafkaEventSource {
    KafkaEventSource::subscribe(&KafkaConsumerConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        group: group.to_owned(),
    })
    .unwrap()
}

/// How often each event id was delivered, with the project and event of its last delivery.
fn by_id(deliveries: &[Delivery]) -> HashMap<Uuid, (usize, String, Event)> {
    let mut seen: HashMap<Uuid, (usize, String, Event)> = HashMap::new();
    for (project, event) in events_of(deliveries) {
        let entry = seen
            .entry(event.event_id)
            .or_insert((0, project.clone(), event.clone()));
        entry.0 += 1;
        assert_eq!(
            (&entry.1, &entry.2),
            (&project, &event),
            "redelivered differently"
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_are_consumed_as_sent_and_garbage_is_poison() {
    let brokers = shared_brokers();
    let (topic, sink) = topic_and_sink(&brokers).await;
    let alice = visits("alice", 4);
    let bob = visits("bob", 3);
    sink.append("shop", &alice).await.unwrap();
    sink.append("blog", &bob).await.unwrap();
    assert!(sink.is_ready(), "ready after acknowledged deliveries");

    let plain: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    plain
        .send(
            FutureRecord::<str, [u8]>::to(&topic).payload(b"{not an envelope"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();

    let source = consumer(&brokers, &topic, &unique("group"));
    let deliveries = tokio::task::block_in_place(|| drain(&source, 8, ARRIVAL));

    let poison: Vec<_> = deliveries
        .iter()
        .filter_map(|delivery| match delivery {
            Delivery::Poison {
                payload, reason, ..
            } => Some((payload.clone(), reason.clone())),
            Delivery::Event { .. } => None,
        })
        .collect();
    assert_eq!(poison.len(), 1, "{deliveries:?}");
    assert_eq!(poison[0].0, b"{not an envelope");
    assert!(poison[0].1.contains("not an event envelope"), "{poison:?}");

    let received = events_of(&deliveries);
    for (project, visitor) in [("shop", &alice), ("blog", &bob)] {
        let mine: Vec<&(String, Event)> = received
            .iter()
            .filter(|(_, event)| event.who.anonymous_id == visitor[0].who.anonymous_id)
            .collect();
        let sent: Vec<(String, Event)> = visitor
            .iter()
            .map(|event| (project.to_owned(), event.clone()))
            .collect();
        assert_eq!(
            mine.into_iter().cloned().collect::<Vec<_>>(),
            sent,
            "one visitor's events arrive complete, decoded and in order"
        );
    }
    let partitions_of_alice: Vec<i32> = deliveries
        .iter()
        .filter(|delivery| matches!(delivery, Delivery::Event { event, .. } if event.who == alice[0].who))
        .map(Delivery::partition)
        .collect();
    assert!(
        partitions_of_alice
            .windows(2)
            .all(|pair| pair[0] == pair[1]),
        "one visitor stays on one partition: {partitions_of_alice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_events_land_where_librdkafka_puts_their_key() {
    let brokers = shared_brokers();
    let (topic, sink) = topic_and_sink(&brokers).await;
    let deadline = Instant::now() + ARRIVAL;
    while sink.known_partitions().is_none() {
        assert!(
            Instant::now() < deadline,
            "the sink never learned the partition count"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sink.known_partitions(), Some(3));
    // Each visitor twice: once packed by the sink, which picks the partition itself, and once
    // as a keyed one-event message of the earlier format, which librdkafka's partitioner routes.
    let visitors: Vec<Event> = (0..40)
        .flat_map(|n| visits(&format!("visitor-{n}"), 2))
        .collect();
    let (packed, keyed): (Vec<Event>, Vec<Event>) = visitors
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .unzip();
    sink.append("shop", &packed).await.unwrap();
    let plain: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("partitioner", "consistent_random")
        .create()
        .unwrap();
    for event in &keyed {
        let key = scribble_bus::message_key("shop", event);
        let payload =
            serde_json::to_vec(&serde_json::json!({"project": "shop", "event": event})).unwrap();
        plain
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    let source = consumer(&brokers, &topic, &unique("group"));
    let deliveries = tokio::task::block_in_place(|| drain(&source, 80, ARRIVAL));
    let mut partitions: HashMap<String, Vec<i32>> = HashMap::new();
    for delivery in &deliveries {
        if let Delivery::Event { event, .. } = delivery {
            let visitor = event.who.anonymous_id.clone().unwrap();
            partitions
                .entry(visitor)
                .or_default()
                .push(delivery.partition());
        }
    }
    assert_eq!(partitions.len(), 40);
    for (visitor, seen) in &partitions {
        assert_eq!(seen.len(), 2, "{visitor}: {seen:?}");
        assert_eq!(
            seen[0], seen[1],
            "{visitor}: packed and keyed partitions differ"
        );
    }
    let used: std::collections::HashSet<i32> = partitions.values().map(|seen| seen[0]).collect();
    assert_eq!(used.len(), 3, "40 visitors spread over all partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_after_its_commit() {
    let brokers = shared_brokers();
    let (topic, sink) = topic_and_sink(&brokers).await;
    let group = unique("group");
    let first = visits("carol", 3);
    sink.append("shop", &first).await.unwrap();

    let source = consumer(&brokers, &topic, &group);
    tokio::task::block_in_place(|| {
        let deliveries = drain(&source, first.len(), ARRIVAL);
        source.commit(&deliveries).unwrap();
    });
    drop(source);

    let second = visits("dave", 2);
    sink.append("shop", &second).await.unwrap();
    let resumed = consumer(&brokers, &topic, &group);
    let deliveries = tokio::task::block_in_place(|| {
        let mut deliveries = drain(&resumed, second.len(), ARRIVAL);
        deliveries.extend(leftovers(&resumed, Duration::from_secs(2)));
        deliveries
    });
    let ids: Vec<Uuid> = events_of(&deliveries)
        .iter()
        .map(|(_, event)| event.event_id)
        .collect();
    let expected: Vec<Uuid> = second.iter().map(|event| event.event_id).collect();
    assert_eq!(
        ids, expected,
        "only what came after the commit: {deliveries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_the_messages_the_group_has_not_committed() {
    let brokers = shared_brokers();
    let (topic, sink) = topic_and_sink(&brokers).await;
    // One message per append: each visitor's events share a partition.
    for visitor in ["gus", "hal", "ivy"] {
        sink.append("shop", &visits(visitor, 2)).await.unwrap();
    }
    let source = consumer(&brokers, &topic, &unique("group"));
    tokio::task::block_in_place(|| {
        let lag = || source.lag(Duration::from_secs(5)).unwrap();
        let deliveries = drain(&source, 6, ARRIVAL);
        let read = lag();
        assert_eq!(read.partitions, 3, "the only member has every partition");
        assert_eq!(read.messages, 3, "read but not committed");
        source.commit(&deliveries[..2]).unwrap();
        assert_eq!(lag().messages, 2);
        source.commit(&deliveries).unwrap();
        assert_eq!(lag().messages, 0);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_deliveries_go_to_the_next_consumer_of_the_group() {
    let brokers = shared_brokers();
    let (topic, sink) = topic_and_sink(&brokers).await;
    let group = unique("group");
    let sent = visits("erin", 4);
    sink.append("shop", &sent).await.unwrap();

    let first = consumer(&brokers, &topic, &group);
    let seen = tokio::task::block_in_place(|| drain(&first, sent.len(), ARRIVAL));
    drop(first);

    let second = consumer(&brokers, &topic, &group);
    let again = tokio::task::block_in_place(|| drain(&second, sent.len(), ARRIVAL));
    assert_eq!(events_of(&again), events_of(&seen));
    assert_eq!(
        events_of(&again),
        sent.iter()
            .map(|event| ("shop".to_owned(), event.clone()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_in_flight_bound_is_busy() {
    let brokers = shared_brokers();
    let topic = unique("events");
    ensure_topic(&brokers, &topic, 1).await.unwrap();
    let config = KafkaConfig {
        max_in_flight_bytes: 1024,
        ..KafkaConfig::new(&brokers, &topic)
    };
    let sink = KafkaSink::new(&config).unwrap();
    let outcome = sink.append("shop", &visits("frank", 10)).await;
    assert!(matches!(outcome, Err(BusError::Busy)), "{outcome:?}");
    sink.append("shop", &visits("frank", 1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_payload_reason_and_origin() {
    let brokers = shared_brokers();
    let topic = unique("events");
    let dead_letters = DeadLetters::connect(&KafkaConfig::new(&brokers, &topic))
        .await
        .unwrap();
    dead_letters
        .send(b"\x00garbage", "not an event envelope", 2, 41)
        .await
        .unwrap();

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader
        .subscribe(&[&DeadLetters::topic_for(&topic)])
        .unwrap();
    let deadline = Instant::now() + ARRIVAL;
    let message = tokio::task::block_in_place(|| loop {
        assert!(Instant::now() < deadline, "no dead letter arrived");
        if let Some(received) = reader.poll(Duration::from_millis(500)) {
            break received.unwrap().detach();
        }
    });
    assert_eq!(message.payload(), Some(&b"\x00garbage"[..]));
    let headers = message.headers().expect("dead letter without headers");
    let header = |key: &str| {
        headers
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    assert_eq!(
        header(REASON_HEADER).as_deref(),
        Some("not an event envelope")
    );
    assert_eq!(header("scribble-source-partition").as_deref(), Some("2"));
    assert_eq!(header("scribble-source-offset").as_deref(), Some("41"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_fails_appends_fast_and_loses_nothing_acknowledged() {
    let broker = Tansu::start();
    let (topic, sink) = topic_and_sink(&broker.brokers).await;
    let before = visits("gina", 5);
    sink.append("shop", &before).await.unwrap();
    assert!(sink.is_ready());

    broker.pause();
    let started = Instant::now();
    let outcome = sink.append("shop", &visits("gina-paused", 2)).await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(BusError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(
        took < Duration::from_millis(6500),
        "failed only after {took:?}"
    );
    assert!(!sink.is_ready(), "not ready after a failed delivery");

    broker.resume();
    let after = visits("gina", 5);
    let deadline = Instant::now() + ARRIVAL;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match sink.append("shop", &after).await {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline => {
                eprintln!("append after resume failed ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("appends did not recover: {error}\n{}", broker.log()),
        }
    }
    assert!(
        sink.is_ready(),
        "ready again after an acknowledged delivery"
    );

    let source = consumer(&broker.brokers, &topic, &unique("group"));
    let acknowledged: Vec<&Event> = before.iter().chain(&after).collect();
    let deliveries = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + ARRIVAL;
        let mut deliveries = Vec::new();
        while !acknowledged
            .iter()
            .all(|event| by_id(&deliveries).contains_key(&event.event_id))
        {
            assert!(
                Instant::now() < deadline,
                "acknowledged events missing; got {deliveries:?}"
            );
            deliveries.extend(source.poll_batch(100, Duration::from_millis(500)).unwrap());
        }
        deliveries.extend(leftovers(&source, Duration::from_secs(2)));
        deliveries
    });
    let seen = by_id(&deliveries);
    for event in &before {
        let (count, project, received) = &seen[&event.event_id];
        assert_eq!((project.as_str(), received), ("shop", event));
        assert_eq!(*count, 1, "acknowledged once, delivered once");
    }
    for event in &after {
        let (count, project, received) = &seen[&event.event_id];
        assert_eq!((project.as_str(), received), ("shop", event));
        if attempts == 1 {
            assert_eq!(*count, 1, "acknowledged once, delivered once");
        }
    }
}
