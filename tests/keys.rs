//! Projects and keys through the real binary: `scribble projects` and `scribble keys` write a
//! projects file that holds only key hashes; a running `scribble serve` picks up new keys,
//! revocations and rate limits from it without a restart; a write key cannot read, a read key
//! cannot write, and a key over its rate limit gets 429 while another project's key goes on.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::Server;

/// Runs `scribble ARGS` without any SCRIBBLE_ setting from the environment.
fn scribble(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scribble"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SCRIBBLE_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the scribble binary")
}

/// Asserts that `scribble ARGS` succeeded; returns its stdout.
fn success(args: &[&str]) -> String {
    let output = scribble(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "scribble {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts that `scribble ARGS` failed; returns its stderr.
fn failure(args: &[&str]) -> String {
    let output = scribble(args);
    assert!(!output.status.success(), "scribble {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The key printed after `label` in the output of `scribble projects add`.
fn printed_key(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
        .to_owned()
}

/// Adds project `name` to `file` with `settings`; returns its write and read keys.
fn add_project(file: &Path, name: &str, settings: &[&str]) -> (String, String) {
    let mut args = vec![
        "projects",
        "add",
        name,
        "--projects-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(settings);
    let stdout = success(&args);
    (
        printed_key(&stdout, "write key"),
        printed_key(&stdout, "read key"),
    )
}

struct Client {
    http: reqwest::blocking::Client,
    server: Server,
}

impl Client {
    /// POSTs `events` site visits with `key`; returns the status, Retry-After and body.
    fn send(&self, key: &str, events: usize) -> (u16, Option<String>, Value) {
        let batch: Vec<Value> = (0..events)
            .map(|n| json!({"touchpoint": "site_visit", "anonymous_id": format!("visitor-{n}")}))
            .collect();
        let reply = self
            .http
            .post(format!("{}/v1/events", self.server.collector))
            .bearer_auth(key)
            .json(&batch)
            .send()
            .unwrap();
        let retry_after = reply
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        (reply.status().as_u16(), retry_after, reply.json().unwrap())
    }

    /// GETs /v1/touchpoints with `key`; returns the status and body.
    fn read(&self, key: &str) -> (u16, Value) {
        let reply = self
            .http
            .get(format!("{}/v1/touchpoints", self.server.api))
            .bearer_auth(key)
            .send()
            .unwrap();
        (reply.status().as_u16(), reply.json().unwrap())
    }
}

/// Waits until `done` holds, up to `limit`; returns how long it took.
fn within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn keys_are_stored_hashed_picked_up_and_revoked_without_a_restart_and_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("projects.json");
    let file_arg = file.to_str().unwrap();
    let (shop_write, shop_read) =
        add_project(&file, "shop", &["--rate-limit", "5", "--burst", "5"]);
    let (blog_write, blog_read) = add_project(&file, "blog", &[]);
    assert!(shop_write.starts_with("scw_") && shop_read.starts_with("scr_"));

    let stored = std::fs::read_to_string(&file).unwrap();
    for key in [&shop_write, &shop_read, &blog_write, &blog_read] {
        assert!(
            !stored.contains(key.as_str()),
            "a key is stored in clear: {stored}"
        );
    }
    assert_eq!(stored.matches("\"sha256\"").count(), 4, "{stored}");

    let (_guard, data_dir) = common::data_dir();
    let client = Client {
        http: reqwest::blocking::Client::new(),
        server: Server::start_with(
            &data_dir,
            &[
                "--projects-file",
                file_arg,
                "--projects-reload-seconds",
                "1",
            ],
        ),
    };

    // Each kind of key opens only its side.
    assert_eq!(client.send(&shop_write, 1).0, 200);
    assert_eq!(client.read(&shop_write).0, 403);
    let (status, _, body) = client.send(&shop_read, 1);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("wrong_key_kind"))
    );
    within(
        Duration::from_secs(10),
        "the shop's event is stored",
        || client.read(&shop_read).1["events"] == 1,
    );
    assert_eq!(client.read(&blog_read).1["events"], 0);

    // Over its rate: the shop's bucket (burst 5) is spent; the blog has no limit.
    assert_eq!(client.send(&shop_write, 5).0, 200);
    let (status, retry_after, body) = client.send(&shop_write, 1);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let wait: u64 = retry_after.expect("Retry-After on a 429").parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(client.send(&blog_write, 50).0, 200);
    within(Duration::from_secs(5), "the shop's bucket refills", || {
        client.send(&shop_write, 1).0 == 200
    });

    // A key issued while the server runs opens the project once the file is read again.
    let created = scribble(&[
        "keys",
        "create",
        "--project",
        "shop",
        "--kind",
        "read",
        "--projects-file",
        file_arg,
    ]);
    assert!(created.status.success());
    let second_read = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    within(Duration::from_secs(60), "the new key works", || {
        client.read(&second_read).0 == 200
    });

    // Revoked: refused by the running server within the reload interval, well under 60 s.
    let listed = success(&[
        "keys",
        "list",
        "--project",
        "shop",
        "--projects-file",
        file_arg,
    ]);
    let first_read_id = &shop_read[..12];
    assert!(listed.contains(first_read_id), "{listed}");
    assert!(
        !listed.contains(&shop_read),
        "keys list shows a whole key: {listed}"
    );
    success(&["keys", "revoke", first_read_id, "--projects-file", file_arg]);
    let took = within(
        Duration::from_secs(60),
        "the revoked key is refused",
        || client.read(&shop_read).0 == 401,
    );
    println!("revocation took effect after {took:?}");
    assert_eq!(client.read(&second_read).0, 200);
    let listed = success(&["keys", "list", "--projects-file", file_arg]);
    let revoked_row = listed
        .lines()
        .find(|line| line.starts_with(first_read_id))
        .unwrap();
    assert!(!revoked_row.ends_with("\t-"), "{revoked_row}");

    let projects = success(&["projects", "list", "--projects-file", file_arg]);
    assert!(projects.contains("5/s, burst 5"), "{projects}");
}

#[test]
fn project_and_key_mistakes_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("projects.json");
    let file_arg = file.to_str().unwrap();
    let missing = failure(&["keys", "list", "--projects-file", file_arg]);
    assert!(
        missing.contains("cannot read the projects file"),
        "{missing}"
    );
    add_project(&file, "shop", &[]);
    let twice = failure(&["projects", "add", "shop", "--projects-file", file_arg]);
    assert!(twice.contains("scribble projects set"), "{twice}");
    let unknown = failure(&[
        "keys",
        "create",
        "--project",
        "nope",
        "--kind",
        "write",
        "--projects-file",
        file_arg,
    ]);
    assert!(unknown.contains("scribble projects list"), "{unknown}");
    let unknown_id = failure(&["keys", "revoke", "scw_nothing", "--projects-file", file_arg]);
    assert!(unknown_id.contains("scribble keys list"), "{unknown_id}");
    let burst_alone = failure(&[
        "projects",
        "set",
        "shop",
        "--burst",
        "5",
        "--projects-file",
        file_arg,
    ]);
    assert!(burst_alone.contains("--rate-limit"), "{burst_alone}");
    let zero = failure(&[
        "projects",
        "set",
        "shop",
        "--rate-limit",
        "0",
        "--projects-file",
        file_arg,
    ]);
    assert!(zero.contains("--rate-limit"), "{zero}");

    success(&[
        "projects",
        "set",
        "shop",
        "--retention-days",
        "30",
        "--keep-full-ip",
        "true",
        "--projects-file",
        file_arg,
    ]);
    let listed = success(&["projects", "list", "--projects-file", file_arg]);
    let shop = listed
        .lines()
        .find(|line| line.starts_with("shop\t"))
        .unwrap();
    assert!(shop.ends_with("\t30\tnone\tkept"), "{shop}");
    success(&[
        "projects",
        "set",
        "shop",
        "--no-retention",
        "--projects-file",
        file_arg,
    ]);
    let listed = success(&["projects", "list", "--projects-file", file_arg]);
    assert!(listed.contains("for ever"), "{listed}");
}

#[test]
fn the_scale_out_collector_and_api_each_refuse_a_revoked_key_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("projects.json");
    let file_arg = file.to_str().unwrap();
    let (write, read) = add_project(&file, "shop", &[]);
    let stack = common::scale_out::Stack::new();
    let client = Client {
        http: reqwest::blocking::Client::new(),
        server: Server::start_scale_out_with(
            &stack,
            &[
                "--projects-file",
                file_arg,
                "--projects-reload-seconds",
                "1",
            ],
        ),
    };
    assert_eq!(client.send(&write, 1).0, 200);
    assert_eq!(client.read(&read).0, 200);
    success(&["keys", "revoke", &write[..12], "--projects-file", file_arg]);
    success(&["keys", "revoke", &read[..12], "--projects-file", file_arg]);
    let collector = within(
        Duration::from_secs(60),
        "the collector refuses the write key",
        || client.send(&write, 1).0 == 401,
    );
    let api = within(
        Duration::from_secs(60),
        "the API refuses the read key",
        || client.read(&read).0 == 401,
    );
    println!("revoked keys refused after {collector:?} (collector) and {api:?} (API)");
}
