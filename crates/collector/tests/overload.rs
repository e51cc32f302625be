//! Load shedding over real HTTP: a collector whose bus holds every append until the test lets it
//! go. Once its requests in flight reach the bound, the next one is refused at once with
//! `503 overloaded` and `Retry-After`; when the bus moves again, the held requests are answered
//! and new ones are taken.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use scribble_bus::{BusError, EventSink};
use scribble_collector::{router, serve, CollectorConfig};
use scribble_domain::event::Event;
use scribble_domain::project::{Project, Projects};
use scribble_telemetry::MetricsRegistry;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const WRITE_KEY: &str = "w-shop";

/// A bus that takes an append only when the test hands it a pass.
struct HeldBus {
    passes: Semaphore,
    waiting: AtomicUsize,
}

impl EventSink for HeldBus {
    // What `#[async_trait]` makes of `async fn append`, written out so the test needs no macro.
    fn append<'sink, 'project, 'events, 'future>(
        &'sink self,
        _project: &'project str,
        _events: &'events [Event],
    ) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'future>>
    where
        'sink: 'future,
        'project: 'future,
        'events: 'future,
    {
        Box::pin(async move {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            self.passes.acquire().await.expect("open").forget();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// A collector of project "shop" over `bus` taking at most `limit` event requests at once; its
/// base URL.
async fn start(bus: Arc<HeldBus>, limit: usize) -> String {
    let mut config = CollectorConfig::new(Projects {
        projects: vec![Project {
            name: "shop".into(),
            write_keys: vec![WRITE_KEY.into()],
            ..Project::default()
        }],
    });
    config.max_requests_in_flight = limit;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::new(config), bus, &MetricsRegistry::new());
    tokio::spawn(serve(listener, app, std::future::pending()));
    base
}

async fn post_visit(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .post(format!("{base}/v1/events"))
        .bearer_auth(WRITE_KEY)
        .json(&json!({"touchpoint": "site_visit", "anonymous_id": "c1"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_collector_answers_503_overloaded_at_once_and_recovers() {
    let bus = Arc::new(HeldBus {
        passes: Semaphore::new(0),
        waiting: AtomicUsize::new(0),
    });
    let base = start(bus.clone(), 2).await;
    let client = reqwest::Client::new();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move { post_visit(&client, &base).await.status() })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.waiting.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the two requests never reached the bus"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let refused = post_visit(&client, &base).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    // Only the event routes are bounded: the process still answers its probes.
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    bus.passes.add_permits(3);
    for request in held {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(post_visit(&client, &base).await.status(), StatusCode::OK);
}
