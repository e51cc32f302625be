//! Browser tests: starts the real `scribble serve` (a small demo data set, free ports, a
//! throw-away data directory) and runs `tests/browser/run.mjs` in node, which drives Debian's
//! chromium through playwright-core: the tracker on a test site, and the dashboard against the
//! API's own answers. Screenshots land in `target/browser-artifacts/`.
//!
//! Needs node, `/usr/bin/chromium` (or `SCRIBBLE_CHROMIUM`) and `npm ci` in `tests/browser/`;
//! `scripts/test` installs them. A missing one fails the test rather than skipping it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

const WRITE_KEY: &str = "browser-write-key";
const READ_KEY: &str = "browser-read-key";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` and returns its output; panics with what to install when it cannot start.
fn run(command: &mut Command, what: &str) -> std::process::Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what} ({error}); scripts/test installs it"))
}

fn check_tools(chromium: &Path) {
    let node = run(Command::new("node").arg("--version"), "node");
    assert!(node.status.success(), "node --version failed");
    assert!(
        chromium.exists(),
        "{} is missing: apt-get install chromium (scripts/test does)",
        chromium.display()
    );
    let browser_dir = root().join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        let install = run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&browser_dir),
            "npm",
        );
        assert!(
            install.status.success(),
            "npm ci in tests/browser failed:\n{}",
            String::from_utf8_lossy(&install.stderr)
        );
    }
}

#[test]
fn tracker_and_dashboard_in_chromium() {
    let chromium = std::env::var_os("SCRIBBLE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    check_tools(&chromium);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &[
            "--write-key",
            WRITE_KEY,
            "--read-key",
            READ_KEY,
            "--demo",
            "--demo-customers",
            "2000",
        ],
    );
    let artifacts = root().join("target/browser-artifacts");
    let output = run(
        Command::new("node")
            .arg(root().join("tests/browser/run.mjs"))
            .env("SCRIBBLE_COLLECTOR", &server.collector)
            .env("SCRIBBLE_API", &server.api)
            .env("SCRIBBLE_WRITE_KEY", WRITE_KEY)
            .env("SCRIBBLE_READ_KEY", READ_KEY)
            .env("SCRIBBLE_ARTIFACTS", &artifacts)
            .env("SCRIBBLE_CHROMIUM", &chromium),
        "node",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser tests failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
}
