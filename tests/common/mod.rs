//! Helpers for end-to-end tests: start the real `scribble` binary on free ports over a
//! throw-away data directory, talk to it over HTTP, and kill it.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod scale_out;
pub mod scenario;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scribble_telemetry::Samples;
use serde_json::{json, Value};

use scale_out::Stack;

pub const WRITE_KEY: &str = "test-write-key";
pub const READ_KEY: &str = "test-read-key";

/// A running Scribble: one `scribble serve`, or the scale-out trio of `collector`, `worker` and
/// `api` processes.
pub struct Server {
    processes: Vec<Child>,
    pub collector: String,
    pub api: String,
    /// The `scribble worker` process's metrics and health listener, when this server has one.
    pub worker: Option<String>,
    http: reqwest::blocking::Client,
}

/// The test keys and redirect host, as `serve`/`collector`/`api` flags.
pub const TEST_PROJECT_ARGS: &[&str] = &[
    "--write-key",
    WRITE_KEY,
    "--read-key",
    READ_KEY,
    "--redirect-host",
    "shop.example",
];

/// Starts `scribble ARGS` and returns it once it printed `ready_lines` lines on stdout (the
/// addresses it listens on), with those lines.
pub fn spawn_scribble(args: &[&str], ready_lines: usize) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scribble"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the scribble binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let printed: Vec<String> = (0..ready_lines)
        .map(|_| {
            lines
                .next()
                .unwrap_or_else(|| panic!("scribble {args:?} exited before it was ready"))
                .expect("utf-8 stdout")
        })
        .collect();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, printed)
}

/// Starts one `scribble worker` in the consumer group of `stack`.
pub fn start_worker(stack: &Stack) -> Child {
    start_worker_with_url(stack).0
}

/// [`start_worker`], with the base URL of the worker's metrics and health listener.
pub fn start_worker_with_url(stack: &Stack) -> (Child, String) {
    let (child, lines) = spawn_scribble(
        &[
            "worker",
            "--bus",
            &stack.bus,
            "--store",
            &stack.store,
            "--group",
            &stack.group,
            "--batch-size",
            "500",
            "--worker-addr",
            "127.0.0.1:0",
        ],
        2,
    );
    (child, url_of(&lines[0], "worker"))
}

/// The URL at the end of a "... listening on http://ADDR" line.
fn url_of(line: &str, what: &str) -> String {
    assert!(
        line.contains(what) && line.contains("listening on"),
        "unexpected line from scribble: {line}"
    );
    line.rsplit(' ')
        .next()
        .expect("address at the end")
        .to_owned()
}

impl Server {
    /// Starts `scribble serve` over `data_dir` with the test keys and waits until both
    /// listeners are up.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, TEST_PROJECT_ARGS)
    }

    /// Starts `scribble serve` over `data_dir` with `project_args` choosing the projects.
    pub fn start_with(data_dir: &Path, project_args: &[&str]) -> Server {
        let data_dir = data_dir.to_str().expect("utf-8 path");
        let mut args = vec![
            "serve",
            "--collector-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
        ];
        args.extend_from_slice(project_args);
        let (child, lines) = spawn_scribble(&args, 2);
        Server::new(
            vec![child],
            url_of(&lines[0], "collector"),
            url_of(&lines[1], "query API"),
        )
    }

    /// Starts the scale-out processes over the topic, database and group of `stack`: a
    /// collector, one worker and a query API.
    pub fn start_scale_out(stack: &Stack) -> Server {
        let mut server = Self::start_scale_out_without_worker(stack);
        let (worker, url) = start_worker_with_url(stack);
        server.processes.push(worker);
        server.worker = Some(url);
        server
    }

    /// The collector and the query API of the scale-out stack, with no worker yet.
    pub fn start_scale_out_without_worker(stack: &Stack) -> Server {
        Self::start_scale_out_with(stack, TEST_PROJECT_ARGS)
    }

    /// The collector and the query API of the scale-out stack with `project_args` choosing the
    /// projects, and no worker.
    pub fn start_scale_out_with(stack: &Stack, project_args: &[&str]) -> Server {
        let (bus, store) = (stack.bus.as_str(), stack.store.as_str());
        let mut collector_args = vec![
            "collector",
            "--collector-addr",
            "127.0.0.1:0",
            "--bus",
            bus,
            "--partitions",
            "3",
        ];
        collector_args.extend_from_slice(project_args);
        let (collector, collector_lines) = spawn_scribble(&collector_args, 1);
        let mut api_args = vec!["api", "--api-addr", "127.0.0.1:0", "--store", store];
        api_args.extend_from_slice(project_args);
        let (api, api_lines) = spawn_scribble(&api_args, 1);
        Server::new(
            vec![collector, api],
            url_of(&collector_lines[0], "collector"),
            url_of(&api_lines[0], "query API"),
        )
    }

    /// Makes `process` part of this server, so it is killed with it.
    pub fn adopt(&mut self, process: Child) {
        self.processes.push(process);
    }

    fn new(processes: Vec<Child>, collector: String, api: String) -> Server {
        Server {
            processes,
            collector,
            api,
            worker: None,
            http: reqwest::blocking::Client::new(),
        }
    }

    pub fn post_events(&self, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/events", self.collector))
            .bearer_auth(WRITE_KEY)
            .json(body)
            .send()
            .expect("POST /v1/events");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// `GET {base}/metrics` of one of this server's listeners, read back.
    pub fn scrape(&self, base: &str) -> Samples {
        let response = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "{base}/metrics");
        Samples::parse(&response.text().expect("a metrics text"))
    }

    /// `GET {base}{path}` without a key: the status and the body as text.
    pub fn get_text(&self, base: &str, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{base}{path}"))
            .send()
            .expect("GET a service endpoint");
        let status = response.status().as_u16();
        (status, response.text().unwrap_or_default())
    }

    pub fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.api))
            .bearer_auth(READ_KEY)
            .send()
            .expect("GET query API");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Polls `path_and_query` until `ready` accepts the answer; the worker writes in the
    /// background, so reports catch up shortly after the collector's reply. Fails after 10 s.
    pub fn wait_until(&self, path_and_query: &str, ready: impl Fn(&Value) -> bool) -> Value {
        self.wait_up_to(Duration::from_secs(10), path_and_query, ready)
    }

    /// [`Server::wait_until`] with a longer patience, for recoveries that take a while (a
    /// consumer group moving a dead worker's partitions, a restarted ClickHouse).
    pub fn wait_up_to(
        &self,
        patience: Duration,
        path_and_query: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let (_, body) = self.get(path_and_query);
            if ready(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path_and_query} never got ready; last answer {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asserts that each customer of `acknowledged` has exactly the events of its batch in its
    /// journey: none lost, none counted twice, none extra.
    pub fn assert_each_acknowledged_event_once(&self, acknowledged: &Acknowledged) {
        for (customer, ids) in acknowledged {
            let (status, journey) = self.get(&format!("/v1/customers/a:{customer}/journey"));
            assert_eq!(status, 200, "{customer}: {journey}");
            let stored = timeline(&journey, "event_id");
            let distinct: HashSet<&str> = stored.iter().copied().collect();
            assert_eq!(
                stored.len(),
                distinct.len(),
                "{customer}: an event counted twice"
            );
            for id in ids {
                assert!(
                    distinct.contains(id.as_str()),
                    "acknowledged event {id} of {customer} lost"
                );
            }
            assert_eq!(
                distinct.len(),
                ids.len(),
                "{customer}: events it was never sent"
            );
        }
    }

    /// SIGTERM to the first process, then waits for it to exit (at most 10 s) and returns its
    /// status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let child = &mut self.processes[0];
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait for scribble") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scribble did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        for child in &mut self.processes {
            child.kill().expect("kill scribble");
            child.wait().expect("reap scribble");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Each acknowledged batch: the one anonymous customer it was about and its event ids.
pub type Acknowledged = Vec<(String, Vec<String>)>;

/// `field` of every step of a journey answer, in timeline order.
pub fn timeline<'a>(journey: &'a Value, field: &str) -> Vec<&'a str> {
    journey["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|step| step[field].as_str().expect("a string field"))
        .collect()
}

/// `size` events of one anonymous customer with fresh ids, as a request body, and their ids.
pub fn batch(customer: &str, size: usize) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..size)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let events = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"event_id": id, "touchpoint": if i % 2 == 0 { "site_visit" } else { "email_open" }, "anonymous_id": customer}))
        .collect();
    (ids, Value::Array(events))
}

/// A fresh data directory under the system temp dir.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    (dir, path)
}
