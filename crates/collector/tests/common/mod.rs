//! A real collector on a loopback port: over a real embedded queue in a temporary directory, or
//! over any other event sink.

use std::future::Future;
use std::sync::Arc;

use scribble_bus::{EmbeddedQueue, EventSink, QueuedEvent};
use scribble_collector::{router, serve, CollectorConfig};
use scribble_domain::project::{Project, Projects};
use scribble_telemetry::{MetricsRegistry, Samples};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WRITE_KEY: &str = "w-shop";
pub const READ_KEY: &str = "r-shop";

pub struct TestServer {
    pub base: String,
    pub queue: Arc<EmbeddedQueue>,
    /// Does not follow redirects, so tests see the collector's own 302s.
    pub client: reqwest::Client,
    /// Dropping it (with the server) starts the graceful shutdown too.
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("queue.db")).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let (base, task) = spawn(queue.clone(), async {
            let _ = stopped.await;
        })
        .await;
        Self {
            base,
            queue,
            client: client(),
            stop,
            task,
            _dir: dir,
        }
    }

    /// Asks the server to stop and waits for `serve` to return.
    pub async fn shut_down(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.expect("server task panicked")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A POST to `path` carrying the write key as a bearer token.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(WRITE_KEY)
    }

    /// Sends `body` as JSON to `path` with the write key.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post(path).json(body).send().await.unwrap()
    }

    /// The collector's `/metrics`, read back.
    pub async fn metrics(&self) -> Samples {
        scrape(&self.client, &self.base).await
    }

    pub fn queued(&self) -> Vec<QueuedEvent> {
        self.queue.read_after(0, 100).unwrap()
    }
}

/// A collector over `sink` that serves until the test ends: its base URL and a client that does
/// not follow redirects.
pub async fn start_over(sink: Arc<dyn EventSink>) -> (String, reqwest::Client) {
    let (base, _task) = spawn(sink, std::future::pending()).await;
    (base, client())
}

/// Serves the collector of project "shop" (keys [`WRITE_KEY`] and [`READ_KEY`]; clicks may go to
/// shop.example and hosts under news.example) over `sink` on a loopback port until `shutdown`.
async fn spawn(
    sink: Arc<dyn EventSink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (String, JoinHandle<std::io::Result<()>>) {
    let config = CollectorConfig::new(Projects {
        projects: vec![Project {
            name: "shop".into(),
            write_keys: vec![WRITE_KEY.into()],
            read_keys: vec![READ_KEY.into()],
            redirect_hosts: vec!["shop.example".into(), "*.news.example".into()],
            ..Project::default()
        }],
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::new(config), sink, &MetricsRegistry::new());
    let task = tokio::spawn(serve(listener, app, shutdown));
    (base, task)
}

/// `GET {base}/metrics`, read back; fails the test unless it is the Prometheus text format.
pub async fn scrape(client: &reqwest::Client, base: &str) -> Samples {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Samples::parse(&response.text().await.unwrap())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
