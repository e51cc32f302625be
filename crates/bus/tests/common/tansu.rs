//! A private tansu broker (Kafka API) for fault tests: its own free loopback port and a SQLite
//! store in its own temporary directory, so pausing it (SIGSTOP) disturbs no other test.
//! Shared with the collector's Kafka tests through `#[path]`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running tansu broker, stopped (and its data removed) when dropped.
pub struct Tansu {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub brokers: String,
    child: Child,
    dir: TempDir,
}

/// `tansu` on `PATH`, else where `cargo install` puts it.
fn tansu_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("tansu"))
        .find(|candidate| candidate.is_file());
    let installed = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/tansu"))
        .filter(|candidate| candidate.is_file());
    on_path.or(installed).expect(
        "the tansu broker is not installed: run `cargo install tansu --version 0.6.0 --locked \
         --features dynostore,libsql` (or `scripts/test-servers start DIR`, which installs it)",
    )
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("no free loopback port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("broker.log")).unwrap();
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("could not start tansu");
        let broker = Self {
            brokers: format!("127.0.0.1:{port}"),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&broker.brokers).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 30 s; log:\n{}",
                broker.brokers,
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        assert!(self.signal("-STOP"), "could not pause tansu");
    }

    /// Lets a paused broker run again (SIGCONT), with all its data.
    pub fn resume(&self) {
        assert!(self.signal("-CONT"), "could not resume tansu");
    }

    /// What the broker printed so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Sends `signal` (as `kill` spells it) to the broker; whether that worked.
    fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // A stopped process does not act on SIGKILL until it runs again.
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
