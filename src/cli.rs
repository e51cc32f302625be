//! Command-line interface: every flag with its environment variable and default, read once here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scribble_collector::IpNetwork;
use scribble_worker::retention::DEFAULT_SWEEP_INTERVAL;

use crate::targets::{BusTarget, StoreTarget};

/// Scribble: customer-journey analytics. Collects touchpoints (site visits, emails, chats, forms,
/// purchases, support, reviews, ads, store visits), stitches them per customer across identities,
/// and shows the journey as it really is: a scribble with loops, jumps and drop-offs.
///
/// Start here: `scribble serve --demo`, then open the URLs it prints.
#[derive(Debug, Parser)]
#[command(name = "scribble", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line, the
    /// fields of each event and its spans as keys) for log collectors.
    #[arg(long, global = true, env = "SCRIBBLE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Aligned, coloured lines, for people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run collector, worker and query API in one process over the embedded queue and store.
    Serve(ServeArgs),
    /// Same as `serve --demo`: load a generated data set first, then serve it.
    Demo(DemoArgs),
    /// Load an NDJSON or CSV export (CRM, chat logs, email tool) into a running collector.
    Import(ImportArgs),
    /// Print the path graph (the scribble) from a running query API.
    Paths(PathsArgs),
    /// Print scribble metrics: how linear journeys are, loops, time to conversion.
    Metrics(MetricsArgs),
    /// Print one customer's stitched journey.
    Journey(JourneyArgs),
    /// Funnel: how many customers get through a list of steps, and how long each step takes.
    ///
    /// Per step: customers who entered it, went on to the next step and dropped, the conversion
    /// from the previous and the first step, and the median and 90th-percentile time since the
    /// previous step.
    ///
    /// Example: scribble funnel --steps site_visit,form_submit,purchase --window 30d
    Funnel(FunnelArgs),
    /// Drop-off: where the customers who left a funnel went, and what they did before.
    ///
    /// For each step but the last, the customers who entered it and did not go on: how many
    /// ended their journey there, the paths the others took next, and the touchpoints they had
    /// before.
    ///
    /// Example: scribble drop-off --steps site_visit,form_submit,purchase --next-steps 2
    DropOff(DropOffArgs),
    /// Top paths: the most common whole journeys, with the conversion rate of each.
    ///
    /// Example: scribble top-paths --goal purchase --up-to-goal --collapse --limit 10
    TopPaths(TopPathsArgs),
    /// Influence: the touchpoints converters pass through, and the few that lift conversion.
    ///
    /// Moments of impact are touchpoints nearly every converter passes through; moments of
    /// influence are touchpoints few customers see, after which they convert far more often.
    /// Per touchpoint: reach among all customers and among converters before converting, the
    /// conversion rate of the customers it reached, and its lift over the overall rate.
    ///
    /// Example: scribble influence --goal purchase --trait persona=researcher
    Influence(InfluenceArgs),
    /// Attribution: which touchpoints (or channels) get the credit for conversions, under six
    /// models side by side.
    ///
    /// First touch, last touch, linear, time decay, position based, and data-driven (the
    /// Markov-chain removal effect); with --value-property, the conversions' value too.
    ///
    /// Example: scribble attribution --goal purchase --by channel --value-property value
    Attribution(AttributionArgs),
    /// Sales cycle: how long customers take from first touch to conversion, in days and in
    /// touchpoints.
    ///
    /// Example: scribble sales-cycle --goal purchase --breakdown-by trait.persona
    SalesCycle(SalesCycleArgs),
    /// Leads: which leads converted in time, late or not yet, and which went cold without
    /// anyone closing them (zombie leads).
    ///
    /// A customer becomes a lead at their first lead touchpoint (a form, a chat); a conversion
    /// within --within-days is in time. Converted leads also show what they did between the
    /// lead and the conversion.
    ///
    /// Example: scribble leads --leads form_submit,chat_started --within-days 14
    Leads(LeadsArgs),
    /// Forget a customer: erase everything stored about it, through a running query API.
    ///
    /// Erases the whole stitched customer the identity belongs to (all its events, identity
    /// links, traits and journey fragments) and leaves a tombstone for each of its identities,
    /// so events that arrive later naming one of them are dropped. Takes the project's read key.
    ///
    /// Example: scribble forget u:ann@example.com --key $READ_KEY
    Forget(ForgetArgs),
    /// Scale-out: run only the collector, writing to Kafka.
    Collector(CollectorArgs),
    /// Scale-out: run one stream worker, Kafka into ClickHouse (run as many as you like).
    Worker(WorkerArgs),
    /// Scale-out: run only the query API over ClickHouse.
    Api(ApiArgs),
    /// Apply the ClickHouse schema migrations (also done at start by worker and api).
    Migrate(MigrateArgs),
    /// Manage the projects of a projects file: list them, add one, change its settings.
    ///
    /// Running servers read the file again every --projects-reload-seconds, so a change takes
    /// effect without a restart.
    ///
    /// Example: scribble projects add shop --retention-days 395 --rate-limit 500 --burst 2000
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Manage API keys: issue, list and revoke the write and read keys of a project.
    ///
    /// A key is shown once, when it is issued; the projects file keeps only its SHA-256. A
    /// revoked key stops working in every server within --projects-reload-seconds (10 s by
    /// default).
    ///
    /// Example: scribble keys create --project shop --kind write
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// The write key a server and `import` use when none is given: fine on a laptop, never exposed.
pub const DEV_WRITE_KEY: &str = "dev-write-key";
/// The read key a server and the report commands use when none is given.
pub const DEV_READ_KEY: &str = "dev-read-key";

/// Which projects are served and with which keys.
#[derive(Debug, Args, Clone)]
pub struct ProjectArgs {
    /// Name of the project served.
    #[arg(long, env = "SCRIBBLE_PROJECT", default_value = "default")]
    pub project: String,
    /// Write key of the project (ingest only). Change it before exposing the collector.
    #[arg(long, env = "SCRIBBLE_WRITE_KEY", default_value = DEV_WRITE_KEY)]
    pub write_key: String,
    /// Read key of the project (reports only). Change it before exposing the API.
    #[arg(long, env = "SCRIBBLE_READ_KEY", default_value = DEV_READ_KEY)]
    pub read_key: String,
    /// Host that email click links may redirect to (repeat; `*.example.com` allows subdomains).
    #[arg(
        long = "redirect-host",
        env = "SCRIBBLE_REDIRECT_HOSTS",
        value_delimiter = ','
    )]
    pub redirect_hosts: Vec<String>,
    /// JSON file listing the projects, their keys (hashed) and settings, as `scribble projects`
    /// and `scribble keys` write it (see README, Projects and keys). Replaces --project,
    /// --write-key, --read-key and --redirect-host.
    #[arg(long, env = "SCRIBBLE_PROJECTS_FILE")]
    pub projects_file: Option<PathBuf>,
    /// Seconds between two reads of --projects-file: new keys, revocations and settings take
    /// effect within this time, without a restart.
    #[arg(long, env = "SCRIBBLE_PROJECTS_RELOAD_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub projects_reload_seconds: u64,
}

/// The projects file the `projects` and `keys` commands edit.
#[derive(Debug, Args, Clone)]
pub struct ProjectsFileArgs {
    /// The projects file the servers read (created by `scribble projects add` if missing).
    #[arg(long, env = "SCRIBBLE_PROJECTS_FILE")]
    pub projects_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List the projects with their settings and key counts.
    List(ProjectsFileArgs),
    /// Add a project, and issue it one write key and one read key (printed once).
    Add(ProjectAddArgs),
    /// Change a project's settings; settings not given stay as they are.
    Set(ProjectSetArgs),
}

#[derive(Debug, Args)]
pub struct ProjectAddArgs {
    /// Name of the new project (what reports and logs call it).
    pub name: String,
    #[command(flatten)]
    pub file: ProjectsFileArgs,
    #[command(flatten)]
    pub settings: ProjectSettingsArgs,
}

#[derive(Debug, Args)]
pub struct ProjectSetArgs {
    /// Name of the project to change.
    pub name: String,
    #[command(flatten)]
    pub file: ProjectsFileArgs,
    #[command(flatten)]
    pub settings: ProjectSettingsArgs,
    /// Remove the project's rate limit.
    #[arg(long, conflicts_with_all = ["rate_limit", "burst"])]
    pub no_rate_limit: bool,
    /// Keep events for ever (remove the retention period).
    #[arg(long, conflicts_with = "retention_days")]
    pub no_retention: bool,
}

/// A project's settings as flags.
#[derive(Debug, Args)]
pub struct ProjectSettingsArgs {
    /// Store senders' IP addresses whole instead of truncated (IPv4 /24, IPv6 /48).
    #[arg(long, value_name = "true|false")]
    pub keep_full_ip: Option<bool>,
    /// Delete events older than this many days.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: Option<u32>,
    /// Events per second each write key of the project may send (429 above it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Events a write key may send at once above its rate (default: 2 seconds' worth).
    #[arg(long, requires = "rate_limit", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// Host that email click links may redirect to (repeat; replaces the list).
    #[arg(long = "redirect-host")]
    pub redirect_hosts: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the issued keys (ids only; the keys themselves are never stored).
    List(KeysListArgs),
    /// Issue a key and print it once.
    Create(KeysCreateArgs),
    /// Revoke a key by its id; servers refuse it within --projects-reload-seconds.
    Revoke(KeysRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    #[command(flatten)]
    pub file: ProjectsFileArgs,
    /// Only this project's keys.
    #[arg(long)]
    pub project: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    #[command(flatten)]
    pub file: ProjectsFileArgs,
    /// The project the key opens.
    #[arg(long)]
    pub project: String,
    /// `write` keys only send events (collector); `read` keys only read reports (query API).
    #[arg(long, value_enum)]
    pub kind: KeyKindArg,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    #[command(flatten)]
    pub file: ProjectsFileArgs,
    /// The key's id, as `scribble keys list` shows it (e.g. scw_AbCd1234).
    pub id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyKindArg {
    Write,
    Read,
}

/// The event bus. Shared by `serve` and the scale-out commands, so the help names both forms.
#[derive(Debug, Args, Clone)]
pub struct BusArgs {
    /// The event bus: `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`, or `embedded` (`serve` only: a
    /// queue file in --data-dir).
    #[arg(long, env = "SCRIBBLE_BUS", default_value = "embedded", value_parser = BusTarget::from_str)]
    pub bus: BusTarget,
}

/// The store. Shared by `serve` and the scale-out commands, so the help names both forms.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The store: `clickhouse://HOST:PORT/DATABASE` (the HTTP port of ClickHouse, usually 8123),
    /// or `embedded` (`serve` only: a database file in --data-dir).
    #[arg(long, env = "SCRIBBLE_STORE", default_value = "embedded", value_parser = StoreTarget::from_str)]
    pub store: StoreTarget,
}

/// Where the collector listens, and how many requests it takes at once (`serve` and `collector`).
#[derive(Debug, Args, Clone)]
pub struct CollectorAddrArgs {
    /// Address the collector listens on (POST /v1/events, pixel, click, /readyz, /metrics).
    #[arg(
        long,
        env = "SCRIBBLE_COLLECTOR_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub collector_addr: SocketAddr,
    /// Most event requests (/v1/events, /v1/identify, /v1/alias) the collector handles at once;
    /// beyond it, requests are refused at once with 503 overloaded and Retry-After, so an overload
    /// costs neither memory nor the latency of the requests taken. Bodies in flight stay under
    /// this many times 1 MiB.
    #[arg(long, env = "SCRIBBLE_MAX_REQUESTS_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests_in_flight: u32,
}

/// Where the query API listens (`serve` and `api`).
#[derive(Debug, Args, Clone)]
pub struct ApiAddrArgs {
    /// Address the query API listens on (GET /v1/paths, /v1/metrics, /v1/customers/ID/journey,
    /// the dashboard, /readyz, and /metrics for Prometheus).
    #[arg(long, env = "SCRIBBLE_API_ADDR", default_value = "127.0.0.1:8081")]
    pub api_addr: SocketAddr,
}

/// How the query API reads journeys (`serve` and `api`): the stages scribble metrics and the
/// journey timeline use, and the gap that starts a new session.
#[derive(Debug, Args, Clone)]
pub struct JourneyShapeArgs {
    /// JSON file listing the journey stages in order, each with its touchpoints:
    /// `[{"name": "awareness", "touchpoints": ["ad_click", "social_post"]}, ...]`. Default: the
    /// built-in awareness, consideration, purchase, retention and advocacy stages.
    #[arg(long, env = "SCRIBBLE_STAGES_FILE")]
    pub stages_file: Option<PathBuf>,
    /// Minutes of silence after which a customer's next touchpoint starts a new session.
    #[arg(long, env = "SCRIBBLE_SESSION_GAP_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_080))]
    pub session_gap_minutes: u32,
}

/// Which proxies may name the sender of a request (`serve` and `collector`).
#[derive(Debug, Args, Clone)]
pub struct TrustedProxyArgs {
    /// A proxy in front of the collector, as an address or a network (`10.0.0.0/8`), whose
    /// X-Forwarded-For header names the sender: events record the sender's IP address (truncated
    /// unless the project keeps it whole). Repeat, or separate with commas; list every proxy
    /// between the internet and the collector. By default none: the TCP peer is the sender.
    #[arg(
        long = "trusted-proxy",
        env = "SCRIBBLE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "ADDRESS|NETWORK",
        value_parser = IpNetwork::from_str
    )]
    pub trusted_proxies: Vec<IpNetwork>,
}

/// How often a process that writes a store applies the projects' retention periods (`serve`
/// and `worker`).
#[derive(Debug, Args, Clone)]
pub struct RetentionArgs {
    /// Seconds between two retention sweeps, which delete the events older than each project's
    /// retention period (`scribble projects set NAME --retention-days N`); the first runs at
    /// start.
    #[arg(long, env = "SCRIBBLE_RETENTION_SWEEP_SECONDS", default_value_t = DEFAULT_SWEEP_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_sweep_seconds: u64,
}

/// The worker's Kafka consumer group (with --bus kafka): workers of one group share the
/// partitions, and its committed offsets say where a restarted worker resumes.
#[derive(Debug, Args, Clone)]
pub struct GroupArgs {
    /// Kafka consumer group of the worker; run every worker of one deployment in the same group.
    #[arg(
        long,
        env = "SCRIBBLE_WORKER_GROUP",
        default_value = "scribble-workers"
    )]
    pub group: String,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Where the embedded queue and store keep their files.
    #[arg(long, env = "SCRIBBLE_DATA_DIR", default_value = "scribble-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub collector: CollectorAddrArgs,
    #[command(flatten)]
    pub api: ApiAddrArgs,
    #[command(flatten)]
    pub journeys: JourneyShapeArgs,
    #[command(flatten)]
    pub projects: ProjectArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub group: GroupArgs,
    #[command(flatten)]
    pub proxies: TrustedProxyArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Load the generated demo data set before serving (idempotent: ids are deterministic).
    #[arg(long)]
    pub demo: bool,
    /// Customers in the demo data set.
    #[arg(long, default_value_t = 10_000)]
    pub demo_customers: usize,
    /// Seed of the demo data set: the same seed gives the same journeys.
    #[arg(long, default_value_t = 7)]
    pub demo_seed: u64,
}

/// `scribble collector`: only the HTTP collector, writing to Kafka.
#[derive(Debug, Args)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub collector: CollectorAddrArgs,
    #[command(flatten)]
    pub proxies: TrustedProxyArgs,
    #[command(flatten)]
    pub projects: ProjectArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Partitions of the topic if the collector has to create it.
    #[arg(long, env = "SCRIBBLE_PARTITIONS", default_value_t = 12)]
    pub partitions: i32,
}

/// `scribble worker`: one consumer-group member moving events from Kafka into ClickHouse.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub group: GroupArgs,
    /// Most events per ClickHouse insert.
    #[arg(long, env = "SCRIBBLE_BATCH_SIZE", default_value_t = 10_000)]
    pub batch_size: usize,
    /// Address the worker listens on for GET /metrics, /healthz and /readyz (it takes no other
    /// requests). Give each worker on one host its own port.
    #[arg(long, env = "SCRIBBLE_WORKER_ADDR", default_value = "127.0.0.1:8082")]
    pub worker_addr: SocketAddr,
    /// The projects file (as `scribble projects` writes it), read for each project's retention
    /// period: the worker deletes expired events from ClickHouse. Without it nothing expires.
    #[arg(long, env = "SCRIBBLE_PROJECTS_FILE")]
    pub projects_file: Option<PathBuf>,
    /// Seconds between two reads of --projects-file.
    #[arg(long, env = "SCRIBBLE_PROJECTS_RELOAD_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub projects_reload_seconds: u64,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// `scribble api`: only the query API, reading ClickHouse.
#[derive(Debug, Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub api: ApiAddrArgs,
    #[command(flatten)]
    pub journeys: JourneyShapeArgs,
    #[command(flatten)]
    pub projects: ProjectArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `scribble migrate`: apply ClickHouse schema migrations (idempotent).
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl DemoArgs {
    pub fn into_serve(self) -> ServeArgs {
        ServeArgs {
            demo: true,
            ..self.serve
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFormat {
    /// Decide from the file name: .csv is CSV, anything else NDJSON.
    Auto,
    /// One JSON event per line; blank lines are skipped.
    Ndjson,
    /// A header row, then one event per row.
    Csv,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NDJSON (one event per line) or CSV (header row; columns event_id, timestamp, type,
    /// touchpoint, channel, direct, anonymous_id, user_id, previous_id; `traits.X` columns become
    /// traits and any other column a property).
    pub file: PathBuf,
    /// How to read FILE.
    #[arg(long, value_enum, default_value_t = ImportFormat::Auto)]
    pub format: ImportFormat,
    /// Collector base URL.
    #[arg(
        long,
        env = "SCRIBBLE_COLLECTOR_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub collector: String,
    /// Write key of the project to import into.
    #[arg(long, env = "SCRIBBLE_WRITE_KEY", default_value = DEV_WRITE_KEY)]
    pub write_key: String,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// Where a running query API is and the read key to ask it with.
#[derive(Debug, Args, Clone)]
pub struct ApiClientArgs {
    /// Query API base URL.
    #[arg(
        long,
        env = "SCRIBBLE_API_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub api: String,
    /// Read key of the project to report on (or whose customer to forget).
    #[arg(long, visible_alias = "key", env = "SCRIBBLE_READ_KEY", default_value = DEV_READ_KEY)]
    pub read_key: String,
}

/// Flags every report shares: where the API is, the key, the time range and filters.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ApiClientArgs,
    /// Only touchpoints at or after this date or RFC 3339 time.
    #[arg(long)]
    pub from: Option<String>,
    /// Only touchpoints before this date or RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
    /// Only touchpoints with this property value: `--where campaign=fall` (repeat to AND).
    #[arg(long = "where", visible_alias = "prop", value_name = "PROPERTY=VALUE")]
    pub properties: Vec<String>,
    /// Only customers with this trait value: `--trait persona=researcher` (repeat to AND).
    #[arg(long = "trait", value_name = "TRAIT=VALUE")]
    pub traits: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphView {
    /// One node per touchpoint, loops and back-edges kept: the scribble.
    State,
    /// Step by step, acyclic: the Sankey view.
    Positional,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    /// The edges, busiest first, with distinct customers, transitions and median time.
    Table,
    /// The query API's answer as it is.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

#[derive(Debug, Args)]
pub struct PathsArgs {
    #[command(flatten)]
    pub report: ReportArgs,
    /// Which graph to draw.
    #[arg(long, value_enum, default_value_t = GraphView::State)]
    pub view: GraphView,
    /// Follow paths forward from the first time customers hit this touchpoint.
    #[arg(long)]
    pub start: Option<String>,
    /// Follow paths backward from the first time customers hit this touchpoint.
    #[arg(long)]
    pub end: Option<String>,
    /// Most steps per path.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Keep the N busiest touchpoints per step, group the rest as "other" (0: keep all).
    #[arg(long)]
    pub top: Option<usize>,
    /// Merge consecutive repeats of the same touchpoint.
    #[arg(long)]
    pub collapse: bool,
    /// Leave out drop-off nodes.
    #[arg(long)]
    pub no_drop_offs: bool,
    /// Split touchpoints by channel.
    #[arg(long)]
    pub by_channel: bool,
    /// How to print the graph.
    #[arg(long, value_enum, default_value_t = GraphFormat::Table)]
    pub format: GraphFormat,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub report: ReportArgs,
    /// The conversion touchpoint.
    #[arg(long, default_value = "purchase")]
    pub goal: String,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How an analyst report is printed.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TableFormat {
    /// Aligned tables, for reading.
    Table,
    /// The query API's answer as it is.
    Json,
    /// The query API's CSV as it is, for spreadsheets.
    Csv,
}

/// What a comparison compares with.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CompareWith {
    /// The period as long as --from to --to, just before --from.
    PreviousPeriod,
}

/// Flags every analyst report shares: the API, filters, a breakdown or a comparison, and how
/// to print.
#[derive(Debug, Args, Clone)]
pub struct AnalystArgs {
    #[command(flatten)]
    pub report: ReportArgs,
    /// The report per segment: `trait.persona` (the customer's trait) or `prop.utm_source` (the
    /// property on the customer's first touchpoint that has it), largest segments first.
    #[arg(
        long,
        value_name = "trait.NAME|prop.NAME",
        conflicts_with_all = ["compare", "compare_from", "compare_to", "compare_properties", "compare_traits"]
    )]
    pub breakdown_by: Option<String>,
    /// Compare with another period: `previous-period` is as long as --from to --to, just
    /// before --from.
    #[arg(long, value_enum)]
    pub compare: Option<CompareWith>,
    /// Compare with the same report from this date or RFC 3339 time (instead of --from).
    #[arg(long, value_name = "TIME")]
    pub compare_from: Option<String>,
    /// Compare with the same report up to this date or RFC 3339 time (instead of --to).
    #[arg(long, value_name = "TIME")]
    pub compare_to: Option<String>,
    /// Compare with customers' touchpoints having this property value instead (repeat to AND):
    /// `--compare-prop campaign=spring`.
    #[arg(long = "compare-prop", value_name = "PROPERTY=VALUE")]
    pub compare_properties: Vec<String>,
    /// Compare with customers having this trait value instead (repeat to AND):
    /// `--compare-trait persona=bargain`.
    #[arg(long = "compare-trait", value_name = "TRAIT=VALUE")]
    pub compare_traits: Vec<String>,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FunnelOrder {
    /// Steps in order; other touchpoints may come between them.
    Ordered,
    /// Steps in order with nothing between them.
    Strict,
    /// Steps in any order: row k counts customers who did at least k of them.
    Any,
}

/// The funnel itself, shared by `funnel` and `drop-off`.
#[derive(Debug, Args, Clone)]
pub struct FunnelFlags {
    /// The funnel's touchpoints in order, comma-separated; narrow a step by properties with
    /// `touchpoint[key=value;key2=value2]`.
    #[arg(long, value_name = "TOUCHPOINT,...")]
    pub steps: String,
    /// How the steps must follow each other.
    #[arg(long, value_enum, default_value_t = FunnelOrder::Ordered)]
    pub order: FunnelOrder,
    /// Longest time from the first step to the last: `30d`, `12h`, `90m`, `45s` (a bare number
    /// is days).
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Longest time since the previous step, one entry per step, the first empty: `,7d,30d`.
    #[arg(long, value_name = "DURATIONS", allow_hyphen_values = true)]
    pub step_windows: Option<String>,
}

#[derive(Debug, Args)]
pub struct FunnelArgs {
    #[command(flatten)]
    pub funnel: FunnelFlags,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Args)]
pub struct DropOffArgs {
    #[command(flatten)]
    pub funnel: FunnelFlags,
    /// Longest path shown after each step (1 to 10).
    #[arg(long, default_value_t = 3)]
    pub next_steps: usize,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Args)]
pub struct TopPathsArgs {
    /// Conversion touchpoint; adds each path's conversions and conversion rate.
    #[arg(long)]
    pub goal: Option<String>,
    /// Cut each journey at its first goal step (needs --goal).
    #[arg(long)]
    pub up_to_goal: bool,
    /// Merge consecutive repeats of the same touchpoint.
    #[arg(long)]
    pub collapse: bool,
    /// Longest path in steps (0 to 50; default 10); longer paths are cut and marked.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Paths shown (1 to 1000; default 20); the rest are summed as (other).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Args)]
pub struct InfluenceArgs {
    /// The conversion touchpoint.
    #[arg(long, default_value = "purchase")]
    pub goal: String,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AttributeBy {
    Touchpoint,
    Channel,
}

#[derive(Debug, Args)]
pub struct AttributionArgs {
    /// The conversion touchpoint.
    #[arg(long, default_value = "purchase")]
    pub goal: String,
    /// Credit touchpoints or their channels.
    #[arg(long, value_enum, default_value_t = AttributeBy::Touchpoint)]
    pub by: AttributeBy,
    /// Time decay: a touch this many days before the conversion weighs half (default 7).
    #[arg(long, value_name = "DAYS")]
    pub half_life_days: Option<f64>,
    /// Position based: first, middle and last shares summing to 1 (default 0.4,0.2,0.4).
    #[arg(long, value_name = "FIRST,MIDDLE,LAST")]
    pub position_weights: Option<String>,
    /// Property of the conversion holding its value, e.g. `value`.
    #[arg(long, value_name = "PROPERTY")]
    pub value_property: Option<String>,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Args)]
pub struct SalesCycleArgs {
    /// The conversion touchpoint.
    #[arg(long, default_value = "purchase")]
    pub goal: String,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Args)]
pub struct LeadsArgs {
    /// Touchpoints that make a customer a lead, comma-separated (default form_submit,chat_started).
    #[arg(long, value_name = "TOUCHPOINT,...")]
    pub leads: Option<String>,
    /// The conversion touchpoint.
    #[arg(long, default_value = "purchase")]
    pub goal: String,
    /// A conversion this many days after the lead is in time (default 30).
    #[arg(long, value_name = "DAYS")]
    pub within_days: Option<f64>,
    /// The moment the report is about, a date or RFC 3339 time (default now); later steps are
    /// ignored.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub analyst: AnalystArgs,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Any identity of the customer: a user id, `u:<user id>` or `a:<anonymous id>`.
    pub identity: String,
    #[command(flatten)]
    pub client: ApiClientArgs,
}

#[derive(Debug, Args)]
pub struct JourneyArgs {
    /// Any identity of the customer: a user id, `u:<user id>` or `a:<anonymous id>`.
    pub customer: String,
    #[command(flatten)]
    pub client: ApiClientArgs,
    /// Print the JSON answer instead of a timeline.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_well_formed() {
        // Catches, at test time, what clap otherwise reports only when the command runs: two
        // flags of one command with the same name, a default the parser refuses, and the like.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_of_the_scale_out_processes_has_an_environment_variable() {
        // deploy/README.md promises it: containers are configured through their environment.
        let cli = Cli::command();
        for name in ["collector", "worker", "api", "migrate"] {
            let command = cli.find_subcommand(name).expect("a scale-out command");
            for arg in command.get_arguments() {
                if matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_env().is_some(),
                    "scribble {name}: {} has no environment variable",
                    arg.get_id()
                );
            }
        }
    }
}
