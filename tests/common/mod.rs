//! Helpers for end-to-end tests: start the real `scribble` binary on free ports over a
//! throw-away data directory, talk to it over HTTP, and kill it.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WRITE_KEY: &str = "test-write-key";
pub const READ_KEY: &str = "test-read-key";

/// A running `scribble serve`.
pub struct Server {
    child: Child,
    pub collector: String,
    pub api: String,
    http: reqwest::blocking::Client,
}

impl Server {
    /// Starts `scribble serve` over `data_dir` with the test keys and waits until both
    /// listeners are up.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(
            data_dir,
            &[
                "--write-key",
                WRITE_KEY,
                "--read-key",
                READ_KEY,
                "--redirect-host",
                "shop.example",
            ],
        )
    }

    /// Starts `scribble serve` over `data_dir` with `project_args` choosing the projects.
    pub fn start_with(data_dir: &Path, project_args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scribble"))
            .args([
                "serve",
                "--collector-addr",
                "127.0.0.1:0",
                "--api-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(project_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the scribble binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut address = |what: &str| -> String {
            let line = lines
                .next()
                .expect("scribble printed its addresses")
                .expect("utf-8 stdout");
            assert!(
                line.contains(what),
                "unexpected first lines of scribble serve: {line}"
            );
            line.rsplit(' ')
                .next()
                .expect("address at the end")
                .to_owned()
        };
        let collector = address("collector");
        let api = address("query API");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            collector,
            api,
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.get(path_and_query);
            if ready(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path_and_query} never got ready; last answer {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the process to exit (at most 10 s) and returns its status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for scribble") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scribble did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill scribble");
        self.child.wait().expect("reap scribble");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh data directory under the system temp dir.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    (dir, path)
}
