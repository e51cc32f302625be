//! The processes under load and the faults done to them: `scribble serve` over a data directory
//! (embedded), or `scribble collector`, workers and `scribble api` over a fresh topic and database
//! of the servers `scripts/test-servers` started (scale-out), whose ClickHouse and tansu are
//! stopped and started again here (their pid files are rewritten, so `scripts/test-servers stop`
//! still finds them). Every process is watched by the [`MemoryWatch`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::memory::{MemoryWatch, Peak};

pub const PROJECT: &str = "load";
pub const WRITE_KEY: &str = "load-write-key";
pub const READ_KEY: &str = "load-read-key";
/// Partitions of the scale-out topic: two per worker at most two workers.
const PARTITIONS: &str = "4";
/// How long a stopped server may take to exit, and a started one to answer.
const SERVER_PATIENCE: Duration = Duration::from_secs(60);

/// A free loopback port, so a restarted process listens where the load already sends.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/load-and-fault, or start the servers with `eval \"$(scripts/test-servers start DIR)\"` first")
    })
}

/// A child process that is killed (SIGKILL) when dropped, so a run that fails half-way leaves
/// no process behind.
struct Process(Child);

impl Process {
    fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, then reap: no shutdown code runs.
    fn kill(&mut self, memory: &MemoryWatch) {
        memory.forget(self.0.id());
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `scribble ARGS` with its log in `log`, and waits until it printed `ready_lines`
/// lines (the addresses it listens on, or that the worker consumes).
fn spawn_scribble(args: &[String], ready_lines: usize, log: &Path) -> Process {
    let log_path = log;
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open a process log");
    let mut child = Process(
        Command::new(env!("CARGO_BIN_EXE_scribble"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the scribble binary"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("piped stdout")).lines();
    for _ in 0..ready_lines {
        match lines.next() {
            Some(Ok(_)) => {}
            _ => panic!(
                "scribble {args:?} exited before it was ready; its log:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            ),
        }
    }
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// `kill -SIGNAL pid`; whether it was delivered.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether `pid` still runs (a zombie waiting to be reaped no longer holds anything).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// A directory for the logs of one stack's processes, kept after the run (they are small, and
/// the first thing to read when an event is lost).
fn log_dir(stack: &str) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("load-and-fault")
        .join(format!("{stack}-{stamp}"));
    std::fs::create_dir_all(&dir).expect("a log directory");
    dir
}

/// `scribble serve` on fixed ports over one data directory.
pub struct Embedded {
    dir: tempfile::TempDir,
    logs: PathBuf,
    collector_port: u16,
    api_port: u16,
    serve: Process,
}

impl Embedded {
    pub fn start(memory: &MemoryWatch) -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a data directory");
        let (collector_port, api_port) = (free_port(), free_port());
        let logs = log_dir("embedded");
        let serve = Self::spawn(dir.path(), &logs, collector_port, api_port, memory);
        Self {
            dir,
            logs,
            collector_port,
            api_port,
            serve,
        }
    }

    fn spawn(
        dir: &Path,
        logs: &Path,
        collector_port: u16,
        api_port: u16,
        memory: &MemoryWatch,
    ) -> Process {
        let args: Vec<String> = [
            "serve",
            "--collector-addr",
            &format!("127.0.0.1:{collector_port}"),
            "--api-addr",
            &format!("127.0.0.1:{api_port}"),
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--project",
            PROJECT,
            "--write-key",
            WRITE_KEY,
            "--read-key",
            READ_KEY,
        ]
        .map(String::from)
        .to_vec();
        let serve = spawn_scribble(&args, 2, &logs.join("serve.log"));
        memory.watch("serve", serve.id(), Peak::HighWaterMark);
        serve
    }

    pub fn events_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.collector_port)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The embedded store's database file.
    pub fn store_file(&self) -> PathBuf {
        self.dir.path().join("data/store.db")
    }

    /// Where the process's log is.
    pub fn logs(&self) -> &Path {
        &self.logs
    }

    /// SIGKILL to `serve` (the collector, queue, worker and store are all in it).
    pub fn kill(&mut self, memory: &MemoryWatch) {
        self.serve.kill(memory);
    }

    /// Starts `serve` again over the same data directory and ports.
    pub fn restart(&mut self, memory: &MemoryWatch) {
        self.serve = Self::spawn(
            self.dir.path(),
            &self.logs,
            self.collector_port,
            self.api_port,
            memory,
        );
    }
}

/// The ClickHouse and tansu `scripts/test-servers` started, which this run may stop and start.
pub struct TestServers {
    pub clickhouse_url: String,
    pub brokers: String,
    dir: PathBuf,
}

/// A server of `scripts/test-servers`, named as its pid file is.
#[derive(Debug, Clone, Copy)]
pub enum TestServer {
    ClickHouse,
    Broker,
}

impl TestServer {
    pub fn role(self) -> &'static str {
        match self {
            Self::ClickHouse => "clickhouse",
            Self::Broker => "tansu",
        }
    }

    fn pid_file(self) -> &'static str {
        match self {
            Self::ClickHouse => "clickhouse.pid",
            Self::Broker => "kafka.pid",
        }
    }
}

impl TestServers {
    pub fn from_env() -> Self {
        Self {
            clickhouse_url: required_env("SCRIBBLE_TEST_CLICKHOUSE_URL"),
            brokers: required_env("SCRIBBLE_TEST_KAFKA_BROKERS"),
            dir: PathBuf::from(required_env("SCRIBBLE_TEST_SERVERS_DIR")),
        }
    }

    pub fn pid(&self, server: TestServer) -> u32 {
        let path = self.dir.join(server.pid_file());
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("no process id in {}", path.display()))
    }

    /// SIGTERM to `server`, then waits until it is gone (SIGKILL if it takes too long).
    pub fn stop(&self, server: TestServer, memory: &MemoryWatch) {
        let pid = self.pid(server);
        memory.forget(pid);
        assert!(signal(pid, "-TERM"), "could not stop {}", server.role());
        let deadline = Instant::now() + SERVER_PATIENCE;
        while alive(pid) {
            if Instant::now() > deadline {
                signal(pid, "-KILL");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes `server` (SIGSTOP): its connections stay open, nothing is answered, no data is lost.
    pub fn pause(&self, server: TestServer) {
        assert!(
            signal(self.pid(server), "-STOP"),
            "could not pause {}",
            server.role()
        );
    }

    /// Lets a paused `server` run again (SIGCONT).
    pub fn resume(&self, server: TestServer) {
        assert!(
            signal(self.pid(server), "-CONT"),
            "could not resume {}",
            server.role()
        );
    }

    /// Starts `server` again as `scripts/test-servers` did, detached (it outlives this run, and
    /// `scripts/test-servers stop` ends it), records its pid and waits until it answers.
    pub fn start(&self, server: TestServer, memory: &MemoryWatch) {
        let dir = self.dir.display();
        let command = match server {
            TestServer::ClickHouse => format!(
                "clickhouse-server --config-file={dir}/clickhouse/config.xml >>{dir}/clickhouse/stdout.log 2>&1 & echo $!"
            ),
            TestServer::Broker => {
                let url = format!("tcp://{}", self.brokers);
                format!(
                    "cd {dir}/kafka || exit 1; tansu broker --listener-url {url} --advertised-listener-url {url} \
                     --storage-engine sqlite://tansu.db >>broker.log 2>&1 & echo $!"
                )
            }
        };
        let started = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", server.role()));
        let pid: u32 = String::from_utf8_lossy(&started.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} did not start", server.role()));
        std::fs::write(self.dir.join(server.pid_file()), pid.to_string()).expect("pid file");
        let deadline = Instant::now() + SERVER_PATIENCE;
        while !self.answers(server) {
            assert!(
                Instant::now() < deadline,
                "{} did not come back",
                server.role()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        memory.watch(server.role(), pid, Peak::HighWaterMark);
    }

    fn answers(&self, server: TestServer) -> bool {
        match server {
            TestServer::ClickHouse => {
                reqwest::blocking::get(format!("{}/?query=SELECT%201", self.clickhouse_url))
                    .is_ok_and(|reply| reply.status().is_success())
            }
            TestServer::Broker => std::net::TcpStream::connect(&self.brokers).is_ok(),
        }
    }
}

/// Where the scale-out processes of one run send, store, listen and log.
struct Layout {
    bus: String,
    store: String,
    group: String,
    collector_port: u16,
    api_port: u16,
    logs: PathBuf,
}

impl Layout {
    fn project_args() -> [String; 6] {
        [
            "--project",
            PROJECT,
            "--write-key",
            WRITE_KEY,
            "--read-key",
            READ_KEY,
        ]
        .map(String::from)
    }

    fn spawn_collector(&self, memory: &MemoryWatch) -> Process {
        let mut args: Vec<String> = [
            "collector",
            "--collector-addr",
            &format!("127.0.0.1:{}", self.collector_port),
            "--bus",
            &self.bus,
            "--partitions",
            PARTITIONS,
        ]
        .map(String::from)
        .to_vec();
        args.extend(Self::project_args());
        let collector = spawn_scribble(&args, 1, &self.logs.join("collector.log"));
        memory.watch("collector", collector.id(), Peak::HighWaterMark);
        collector
    }

    fn spawn_api(&self, memory: &MemoryWatch) -> Process {
        let mut args: Vec<String> = [
            "api",
            "--api-addr",
            &format!("127.0.0.1:{}", self.api_port),
            "--store",
            &self.store,
        ]
        .map(String::from)
        .to_vec();
        args.extend(Self::project_args());
        let api = spawn_scribble(&args, 1, &self.logs.join("api.log"));
        memory.watch("api", api.id(), Peak::HighWaterMark);
        api
    }

    fn spawn_worker(&self, index: usize, memory: &MemoryWatch) -> Process {
        let args: Vec<String> = [
            "worker",
            "--worker-addr",
            "127.0.0.1:0",
            "--bus",
            &self.bus,
            "--store",
            &self.store,
            "--group",
            &self.group,
        ]
        .map(String::from)
        .to_vec();
        let role = ScaleOut::worker_role(index);
        // Ready once it printed where it listens and that it consumes: a worker that cannot reach
        // the broker at start exits in between.
        let worker = spawn_scribble(&args, 2, &self.logs.join(format!("{role}.log")));
        memory.watch(&role, worker.id(), Peak::HighWaterMark);
        worker
    }
}

/// The scale-out processes over their own topic, database and consumer group.
pub struct ScaleOut {
    pub servers: TestServers,
    pub topic: String,
    pub database: String,
    layout: Layout,
    // Held so they run as long as the stack, and are killed with it.
    _collector: Process,
    _api: Process,
    workers: Vec<Process>,
}

impl ScaleOut {
    pub fn start(servers: TestServers, workers: usize, memory: &MemoryWatch) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let topic = format!("scribble-load-{suffix}");
        let database = format!("scribble_load_{suffix}");
        let layout = Layout {
            bus: format!("kafka://{}/{topic}", servers.brokers),
            store: format!(
                "clickhouse://{}/{database}",
                servers.clickhouse_url.trim_start_matches("http://")
            ),
            group: format!("{topic}-workers"),
            collector_port: free_port(),
            api_port: free_port(),
            logs: log_dir("scale-out"),
        };
        for server in [TestServer::ClickHouse, TestServer::Broker] {
            memory.watch(server.role(), servers.pid(server), Peak::Sampled);
        }
        let collector = layout.spawn_collector(memory);
        // The API applies the migrations before it listens, so the workers find the schema.
        let api = layout.spawn_api(memory);
        let workers = (0..workers)
            .map(|index| layout.spawn_worker(index, memory))
            .collect();
        Self {
            servers,
            topic,
            database,
            layout,
            _collector: collector,
            _api: api,
            workers,
        }
    }

    pub fn worker_role(index: usize) -> String {
        format!("worker-{}", index + 1)
    }

    pub fn events_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.layout.collector_port)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.api_port)
    }

    /// Where the processes' logs are.
    pub fn logs(&self) -> &Path {
        &self.layout.logs
    }

    /// SIGKILL to worker `index`.
    pub fn kill_worker(&mut self, index: usize, memory: &MemoryWatch) {
        self.workers[index].kill(memory);
    }

    /// Starts worker `index` again in the same consumer group.
    pub fn restart_worker(&mut self, index: usize, memory: &MemoryWatch) {
        self.workers[index] = self.layout.spawn_worker(index, memory);
    }

    /// Stops the processes, then drops the database and deletes the topics. In that order:
    /// tansu 0.6.0 answers a fetch from a deleted topic by panicking in its storage task, after
    /// which it fails every request.
    pub fn clean_up(self) {
        let Self {
            servers,
            topic,
            database,
            _collector,
            _api,
            workers,
            ..
        } = self;
        drop((_collector, _api, workers));
        let _ = reqwest::blocking::Client::new()
            .post(&servers.clickhouse_url)
            .body(format!("DROP DATABASE IF EXISTS {database}"))
            .send();
        let dead_letters = scribble_bus::DeadLetters::topic_for(&topic);
        delete_topics(&servers.brokers, &[topic, dead_letters]);
    }
}

fn delete_topics(brokers: &str, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    let _ = runtime.block_on(admin.delete_topics(&names, &options));
}
