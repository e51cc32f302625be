//! The Kafka worker against a real Kafka-API broker and a real ClickHouse: a message that is not
//! an event goes to the dead-letter topic with its reason, and the worker moves on to store the
//! events around it.
//!
//! Needs `SCRIBBLE_TEST_KAFKA_BROKERS` and `SCRIBBLE_TEST_CLICKHOUSE_URL` (from
//! `eval "$(scripts/test-servers start DIR)"`); the topic, group and database are the test's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scribble_bus::{
    ensure_topic, DeadLetters, EventSink, KafkaConfig, KafkaConsumerConfig, KafkaEventSource,
    KafkaSink, REASON_HEADER,
};
use scribble_domain::event::{Body, Event, Who};
use scribble_domain::stitch::JourneyFilter;
use scribble_store::{ClickHouseConfig, ClickHouseStore, JourneyStore};
use scribble_telemetry::{MetricsRegistry, Samples};
use scribble_worker::{kafka, WorkerConfig, WorkerMetrics};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `eval \"$(scripts/test-servers start DIR)\"` first")
    })
}

fn visit(n: u128) -> Event {
    Event {
        event_id: Uuid::from_u128(n),
        at_ms: 1_767_225_600_000 + n as i64 * 1000,
        received_ms: 1_767_225_600_000,
        who: Who {
            anonymous_id: Some("cookie-1".into()),
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
async fn poison_goes_to_the_dead_letters_and_the_worker_moves_on() {
    let brokers = required_env("SCRIBBLE_TEST_KAFKA_BROKERS");
    let suffix = Uuid::new_v4().simple().to_string();
    let topic = format!("worker-test-{suffix}");
    ensure_topic(&brokers, &topic, 1).await.unwrap();
    let database = format!("scribble_test_{suffix}");
    let url = required_env("SCRIBBLE_TEST_CLICKHOUSE_URL");
    let store = ClickHouseStore::connect(&ClickHouseConfig {
        url: url.clone(),
        database: database.clone(),
    })
    .await
    .unwrap();
    store.migrate().await.unwrap();

    // Two events, a message that is not one, two more events: all on the one partition.
    let sink = KafkaSink::new(&KafkaConfig::new(&brokers, &topic)).unwrap();
    sink.append("shop", &[visit(1), visit(2)]).await.unwrap();
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
    sink.append("shop", &[visit(3), visit(4)]).await.unwrap();

    let source = KafkaEventSource::subscribe(&KafkaConsumerConfig {
        brokers: brokers.clone(),
        topic: topic.clone(),
        group: format!("worker-test-{suffix}"),
    })
    .unwrap();
    let dead_letters = DeadLetters::connect(&KafkaConfig::new(&brokers, &topic))
        .await
        .unwrap();
    let store = Arc::new(store);
    let registry = MetricsRegistry::new();
    let metrics = WorkerMetrics::register_kafka(&registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(kafka::run(
        Arc::new(source),
        Arc::new(dead_letters),
        store.clone(),
        WorkerConfig::default(),
        metrics,
        async move {
            let _ = stopped.await;
        },
    ));

    let deadline = Instant::now() + PATIENCE;
    loop {
        let stored = store
            .journeys("shop", &JourneyFilter::default())
            .await
            .unwrap()
            .event_count();
        if stored == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {stored} of 4 events stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("dead-letter-reader-{suffix}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader
        .subscribe(&[&DeadLetters::topic_for(&topic)])
        .unwrap();
    let letter = loop {
        assert!(Instant::now() < deadline, "no dead letter arrived");
        if let Some(message) = reader.poll(Duration::from_millis(500)) {
            break message.unwrap().detach();
        }
    };
    assert_eq!(letter.payload(), Some(&b"{not an envelope"[..]));
    let reason = letter
        .headers()
        .and_then(|headers| {
            headers
                .iter()
                .find(|header| header.key == REASON_HEADER)
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        })
        .expect("a reason header");
    assert!(reason.contains("not an event envelope"), "{reason}");
    // The worker counts a step just after it is done: the dead letter and the events may be
    // seen a moment before their counters move.
    loop {
        let samples = Samples::parse(&registry.encode());
        let dead_letters = samples.count("scribble_worker_dead_letters_total", &[]);
        let stored = samples.count("scribble_worker_events_stored_total", &[]);
        if (dead_letters, stored) == (1.0, 4.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics say {dead_letters} dead letters and {stored} events stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.send(()).unwrap();
    worker.await.unwrap();
    clickhouse::Client::default()
        .with_url(&url)
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .unwrap();
}
