//! The collector over real HTTP backed by Kafka: a private tansu broker, a `KafkaSink`, a server
//! on a loopback port. Accepted batches are consumable from the topic; while the broker is paused
//! the collector answers 503 `bus_unavailable` with `Retry-After` in bounded time, and `/readyz`
//! follows the broker.

#[path = "../../bus/tests/common/tansu.rs"]
mod tansu;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use scribble_bus::{
    ensure_topic, Delivery, KafkaConfig, KafkaConsumerConfig, KafkaEventSource, KafkaSink,
};
use scribble_collector::{router, serve, CollectorConfig};
use scribble_domain::project::{Project, Projects};
use scribble_telemetry::{MetricsRegistry, Samples};
use serde_json::{json, Value};
use tansu::Tansu;
use tokio::net::TcpListener;

const WRITE_KEY: &str = "w-shop";

/// Starts the collector over `sink`; returns its base URL. The server lives as long as the test.
async fn start_collector(sink: Arc<KafkaSink>) -> String {
    let config = CollectorConfig::new(Projects {
        projects: vec![Project {
            name: "shop".into(),
            write_keys: vec![WRITE_KEY.into()],
            read_keys: vec![],
            redirect_hosts: vec![],
            ..Project::default()
        }],
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::new(config), sink, &MetricsRegistry::new());
    tokio::spawn(serve(listener, app, std::future::pending()));
    base
}

/// Polls `/readyz` until it answers `want`, failing the test after `within`.
async fn wait_for_readiness(client: &reqwest::Client, base: &str, want: StatusCode) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = client.get(format!("{base}/readyz")).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        if status == want {
            return serde_json::from_str(&text).unwrap_or(Value::String(text));
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} ({text}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reach_kafka_and_a_paused_broker_gives_a_fast_retryable_503() {
    let broker = Tansu::start();
    let topic = format!("events-{}", uuid::Uuid::new_v4().simple());
    ensure_topic(&broker.brokers, &topic, 3).await.unwrap();
    let sink = Arc::new(KafkaSink::new(&KafkaConfig::new(&broker.brokers, &topic)).unwrap());
    let base = start_collector(sink).await;
    let client = reqwest::Client::new();
    let ready = wait_for_readiness(&client, &base, StatusCode::OK).await;
    assert_eq!(ready, Value::String("ready".into()));

    let batch = json!({"batch": [
        {"touchpoint": "site_visit", "anonymous_id": "v1"},
        {"touchpoint": "email_open", "anonymous_id": "v1"},
        {"type": "identify", "anonymous_id": "v1", "user_id": "u1"},
    ]});
    let accepted = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(WRITE_KEY)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.json::<Value>().await.unwrap()["accepted"], 3);

    let source = KafkaEventSource::subscribe(&KafkaConsumerConfig {
        brokers: broker.brokers.clone(),
        topic: topic.clone(),
        group: format!("group-{}", uuid::Uuid::new_v4().simple()),
    })
    .unwrap();
    let deliveries = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut deliveries = Vec::new();
        while deliveries.len() < 3 {
            assert!(Instant::now() < deadline, "got only {deliveries:?}");
            deliveries.extend(source.poll_batch(3, Duration::from_millis(500)).unwrap());
        }
        deliveries
    });
    let consumed: Vec<(String, Option<String>)> = deliveries
        .iter()
        .map(|delivery| match delivery {
            Delivery::Event { project, event, .. } => {
                (project.clone(), event.who.anonymous_id.clone())
            }
            Delivery::Poison { reason, .. } => panic!("poison from the collector: {reason}"),
        })
        .collect();
    assert_eq!(
        consumed,
        vec![("shop".to_owned(), Some("v1".to_owned())); 3]
    );

    broker.pause();
    let started = Instant::now();
    let refused = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(WRITE_KEY)
        .json(&json!({"touchpoint": "site_visit", "anonymous_id": "v2"}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        took < Duration::from_millis(6500),
        "answered after {took:?}"
    );
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "bus_unavailable"
    );
    let not_ready = wait_for_readiness(&client, &base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(not_ready["error"], "bus_unavailable");
    // librdkafka keeps the refused event and goes on trying to deliver it.
    let paused = scrape(&client, &base).await;
    let in_flight_bytes = "scribble_collector_kafka_in_flight_bytes";
    assert!(paused.count(in_flight_bytes, &[]) > 0.0, "{paused:?}");
    assert!(paused.count("scribble_collector_kafka_in_flight_messages", &[]) >= 1.0);
    assert_eq!(
        paused.count("scribble_collector_events_accepted_total", &[]),
        3.0
    );
    assert_eq!(
        paused.count(
            "scribble_collector_events_rejected_total",
            &[("reason", "bus_unavailable")]
        ),
        1.0
    );

    broker.resume();
    wait_for_readiness(&client, &base, StatusCode::OK).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape(&client, &base).await.count(in_flight_bytes, &[]) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the held event was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The collector's `/metrics`, read back.
async fn scrape(client: &reqwest::Client, base: &str) -> Samples {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    Samples::parse(&response.text().await.unwrap())
}
