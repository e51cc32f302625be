//! A real collector on a loopback port over a real embedded queue in a temporary directory.

use std::sync::Arc;

use scribble_bus::{EmbeddedQueue, QueuedEvent};
use scribble_collector::{router, serve, CollectorConfig};
use scribble_domain::project::{Project, Projects};
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
        let config = CollectorConfig::new(Projects {
            projects: vec![Project {
                name: "shop".into(),
                write_keys: vec![WRITE_KEY.into()],
                read_keys: vec![READ_KEY.into()],
                redirect_hosts: vec!["shop.example".into(), "*.news.example".into()],
            }],
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(Arc::new(config), queue.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base,
            queue,
            client,
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

    pub fn queued(&self) -> Vec<QueuedEvent> {
        self.queue.read_after(0, 100).unwrap()
    }
}
