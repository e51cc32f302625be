//! The `scribble` command line against a running `scribble serve`: `import` of CSV and NDJSON
//! exports (good rows land in reports, bad rows are reported by row number and field), the report
//! commands (`paths`, `metrics`, `journey`) and their error on a bad key, `--help`, and the
//! messages for mistakes a user can make on the command line or with a server that is not there.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use common::{timeline, Server, READ_KEY, WRITE_KEY};

/// Runs the `scribble` binary with `args`; never reads settings from the environment.
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

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

/// Asserts that the command succeeded and returns its stdout.
fn success(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

fn import(server: &Server, file: &Path) -> String {
    success(scribble(&[
        "import",
        file.to_str().unwrap(),
        "--collector",
        &server.collector,
        "--write-key",
        WRITE_KEY,
    ]))
}

/// Runs `scribble ARGS`, asserts that it failed, and returns what it said on stderr.
fn failure(args: &[&str]) -> String {
    let output = scribble(args);
    assert!(
        !output.status.success(),
        "{args:?} succeeded:\n{}",
        stdout(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The summary line of an import about line `line` of the file.
fn rejection(out: &str, line: usize) -> &str {
    let prefix = format!("line {line}:");
    out.lines()
        .find(|text| text.trim_start().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line about line {line}:\n{out}"))
}

/// `host:port` on loopback where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn csv_import_sends_good_rows_and_names_the_bad_row_and_field() {
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm-export.csv");
    // Line 5 (the fourth data row) has a timestamp that is not RFC 3339. Line 6 carries both ids
    // and so stitches cookie-c to carl. Lines 4 and 6 have a user id and a persona, so each also
    // sends an identify carrying the trait.
    std::fs::write(
        &file,
        "timestamp,touchpoint,channel,anonymous_id,user_id,campaign,traits.persona\n\
         2026-10-01T09:00:00Z,ad_click,ads,cookie-c,,fall,\n\
         2026-10-01T09:05:00Z,site_visit,web,cookie-c,,fall,\n\
         2026-10-02T09:00:00Z,email_open,email,,carl,fall,researcher\n\
         yesterday,site_visit,web,,carl,,\n\
         2026-10-02T09:30:00Z,purchase,web,cookie-c,carl,,researcher\n\
         2026-10-03T09:00:00Z,site_visit,web,cookie-d,,spring,\n",
    )
    .unwrap();

    let out = import(&server, &file);
    assert!(out.contains("imported 7 events, rejected 1"), "{out}");
    let bad_row = rejection(&out, 5);
    assert!(bad_row.contains("timestamp"), "{bad_row}");
    assert_eq!(
        out.lines()
            .filter(|line| line.trim_start().starts_with("line "))
            .count(),
        1,
        "only line 5 is rejected:\n{out}"
    );

    let touchpoints = server.wait_until("/v1/touchpoints", |body| body["events"] == 5);
    assert_eq!(touchpoints["customers"], 2);
    let journey = server.wait_until("/v1/customers/carl/journey", |body| {
        body["touchpoints"] == 4
    });
    assert_eq!(journey["identities"], json!(["u:carl", "a:cookie-c"]));
    assert_eq!(journey["traits"], json!({"persona": "researcher"}));
    assert_eq!(
        timeline(&journey, "touchpoint"),
        ["ad_click", "site_visit", "email_open", "purchase"]
    );
    assert_eq!(journey["timeline"][0]["channel"], "ads");
    assert_eq!(
        journey["timeline"][0]["properties"],
        json!({"campaign": "fall"})
    );
    let (status, fall) = server.get("/v1/touchpoints?prop.campaign=fall");
    assert_eq!(status, 200, "{fall}");
    assert_eq!(fall["events"], 3, "the campaign column became a property");
}

#[test]
fn ndjson_import_reports_a_line_of_invalid_json_as_a_rejected_row() {
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat-log.ndjson");
    // Line 1 is blank; the broken event is on line 4 of the file.
    let lines = [
        String::new(),
        json!({"timestamp": "2026-10-01T09:00:00Z", "touchpoint": "chat_started", "anonymous_id": "cookie-n"}).to_string(),
        json!({"timestamp": "2026-10-01T09:03:00Z", "touchpoint": "form_submit", "anonymous_id": "cookie-n"}).to_string(),
        r#"{"timestamp": "2026-10-01T09:04:00Z", "touchpoint": "#.to_owned(),
        json!({"type": "identify", "timestamp": "2026-10-01T09:05:00Z", "user_id": "nina", "anonymous_id": "cookie-n", "traits": {"persona": "buyer"}}).to_string(),
        json!({"timestamp": "2026-10-02T09:00:00Z", "touchpoint": "purchase", "user_id": "nina"}).to_string(),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let out = import(&server, &file);
    assert!(out.contains("imported 4 events, rejected 1"), "{out}");
    let bad_row = rejection(&out, 4);
    assert!(bad_row.contains("not JSON"), "{bad_row}");

    server.wait_until("/v1/touchpoints", |body| body["events"] == 3);
    let journey = server.wait_until("/v1/customers/a:cookie-n/journey", |body| {
        body["customer_id"] == "u:nina"
    });
    assert_eq!(
        timeline(&journey, "touchpoint"),
        ["chat_started", "form_submit", "purchase"]
    );
    assert_eq!(journey["traits"], json!({"persona": "buyer"}));
}

/// A server with two customers: ann (ad click, visit, purchase) and bob (visit, email).
fn server_with_journeys() -> (tempfile::TempDir, Server) {
    let (guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let t = |at: &str, touchpoint: &str, who: (&str, &str)| json!({"timestamp": at, "touchpoint": touchpoint, who.0: who.1});
    let batch = json!({"batch": [
        t("2026-10-01T09:00:00Z", "ad_click", ("user_id", "ann")),
        t("2026-10-01T09:05:00Z", "site_visit", ("user_id", "ann")),
        t("2026-10-02T09:00:00Z", "purchase", ("user_id", "ann")),
        t("2026-10-01T10:00:00Z", "site_visit", ("anonymous_id", "cookie-b")),
        t("2026-10-01T10:30:00Z", "email_open", ("anonymous_id", "cookie-b")),
    ]});
    let (status, reply) = server.post_events(&batch);
    assert_eq!(status, 200, "{reply}");
    server.wait_until("/v1/touchpoints", |body| body["events"] == 5);
    (guard, server)
}

/// `--api` and `--read-key` for a report command against `server`.
fn report_args<'a>(server: &'a Server, key: &'a str) -> [&'a str; 4] {
    ["--api", &server.api, "--read-key", key]
}

#[test]
fn report_commands_print_graphs_metrics_and_journeys() {
    let (_guard, server) = server_with_journeys();
    let api = report_args(&server, READ_KEY);

    let mermaid = success(scribble(
        &[&["paths"], &api[..], &["--format", "mermaid"]].concat(),
    ));
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    assert!(mermaid.contains("ad_click"), "{mermaid}");

    let dot = success(scribble(
        &[&["paths"], &api[..], &["--format", "dot"]].concat(),
    ));
    assert!(dot.starts_with("digraph"), "{dot}");

    let table = success(scribble(&[&["paths"], &api[..]].concat()));
    let header = table.lines().next().unwrap_or_default();
    assert_eq!(header, "state view, 2 customers", "{table}");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("ad_click") && line.contains("site_visit")),
        "{table}"
    );

    let metrics = success(scribble(&[&["metrics"], &api[..]].concat()));
    let conversions = metrics
        .lines()
        .find(|line| line.starts_with("conversions"))
        .unwrap_or_else(|| panic!("no conversions line:\n{metrics}"));
    assert_eq!(
        conversions.split_whitespace().collect::<Vec<_>>(),
        ["conversions", "1"]
    );

    let journey = success(scribble(&[&["journey", "ann"], &api[..]].concat()));
    assert!(journey.starts_with("customer u:ann"), "{journey}");
    let steps: Vec<&str> = journey
        .lines()
        .filter(|line| line.starts_with("2026-"))
        .collect();
    assert_eq!(steps.len(), 3, "{journey}");
    for (line, touchpoint) in steps.iter().zip(["ad_click", "site_visit", "purchase"]) {
        assert!(line.contains(touchpoint), "{touchpoint} in {line}");
    }

    let anonymous = success(scribble(&[&["journey", "a:cookie-b"], &api[..]].concat()));
    assert!(anonymous.contains("email_open"), "{anonymous}");
}

#[test]
fn report_commands_fail_on_a_bad_read_key() {
    let (_guard, server) = server_with_journeys();
    let bad = report_args(&server, "not-the-read-key");
    let commands: [&[&str]; 7] = [
        &["paths"],
        &["paths", "--format", "mermaid"],
        &["metrics"],
        &["journey", "ann"],
        &["funnel", "--steps", "site_visit,purchase"],
        &["top-paths", "--format", "csv"],
        &["attribution", "--format", "json"],
    ];
    for command in commands {
        let output = scribble(&[command, &bad[..]].concat());
        assert!(!output.status.success(), "{command:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("401") || stderr.contains("not known"),
            "{command:?}: {stderr}"
        );
        assert!(
            !stdout(&output).contains("flowchart"),
            "{command:?} printed a report"
        );
    }
}

/// A server for the analyst reports, three customers (day, time):
///
/// ```text
/// ann  (persona researcher)  ad_click 10-01 09:00, site_visit 10-01 09:05, purchase 10-02 09:00 (value 40)
/// bob  (cookie-b, no traits) site_visit 10-01 10:00, email_open 10-01 10:30
/// cara (persona bargain)     email_open 10-03 09:00, site_visit 10-03 09:10, purchase 10-04 09:10 (value 60)
/// ```
fn server_for_analysts() -> (tempfile::TempDir, Server) {
    let (guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let t = |at: &str, touchpoint: &str, who: (&str, &str)| json!({"timestamp": at, "touchpoint": touchpoint, who.0: who.1});
    let mut ann_purchase = t("2026-10-02T09:00:00Z", "purchase", ("user_id", "ann"));
    ann_purchase["properties"] = json!({"value": 40});
    let mut cara_purchase = t("2026-10-04T09:10:00Z", "purchase", ("user_id", "cara"));
    cara_purchase["properties"] = json!({"value": 60});
    let identify = |user: &str, persona: &str| json!({"type": "identify", "timestamp": "2026-10-01T00:00:00Z", "user_id": user, "traits": {"persona": persona}});
    let batch = json!({"batch": [
        t("2026-10-01T09:00:00Z", "ad_click", ("user_id", "ann")),
        t("2026-10-01T09:05:00Z", "site_visit", ("user_id", "ann")),
        ann_purchase,
        identify("ann", "researcher"),
        t("2026-10-01T10:00:00Z", "site_visit", ("anonymous_id", "cookie-b")),
        t("2026-10-01T10:30:00Z", "email_open", ("anonymous_id", "cookie-b")),
        t("2026-10-03T09:00:00Z", "email_open", ("user_id", "cara")),
        t("2026-10-03T09:10:00Z", "site_visit", ("user_id", "cara")),
        cara_purchase,
        identify("cara", "bargain"),
    ]});
    let (status, reply) = server.post_events(&batch);
    assert_eq!(status, 200, "{reply}");
    server.wait_until("/v1/touchpoints", |body| body["events"] == 8);
    server.wait_until("/v1/touchpoints?trait.persona=bargain", |body| {
        body["customers"] == 1
    });
    (guard, server)
}

/// The whitespace-separated fields of the line of `table` starting with `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|line| line.starts_with(first))
        .unwrap_or_else(|| panic!("no line starting with {first:?}:\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn analyst_commands_print_tables_and_the_apis_csv() {
    let (_guard, server) = server_for_analysts();
    let api = report_args(&server, READ_KEY);
    let run = |args: &[&str]| success(scribble(&[args, &api[..]].concat()));

    // Everyone visits; Ann buys 23h55m after her visit, Cara 24h after hers.
    let funnel = run(&["funnel", "--steps", "site_visit,purchase"]);
    assert_eq!(
        funnel.lines().next(),
        Some("3 customers, ordered funnel"),
        "{funnel}"
    );
    assert_eq!(
        row(&funnel, "1. site_visit"),
        [
            "1.",
            "site_visit",
            "3",
            "2",
            "1",
            "100.0%",
            "100.0%",
            "-",
            "-"
        ]
    );
    assert_eq!(
        row(&funnel, "2. purchase"),
        ["2.", "purchase", "2", "2", "0", "66.7%", "66.7%", "24.0h", "24.0h"]
    );
    let csv = run(&[
        "funnel",
        "--steps",
        "site_visit,purchase",
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv,
        "step,label,entered,converted,dropped,conversion_from_previous,conversion_from_first,median_seconds_to_convert,p90_seconds_to_convert\r\n\
         1,site_visit,3,2,1,1,1,,\r\n\
         2,purchase,2,2,0,0.6666666666666666,0.6666666666666666,86250,86370\r\n"
    );
    // Within a day from visit to purchase Cara's exactly 24 hours still count; within 23h59m
    // only Ann's.
    let window = run(&[
        "funnel",
        "--steps",
        "site_visit,purchase",
        "--window",
        "1439m",
    ]);
    assert_eq!(row(&window, "2. purchase")[2], "1", "{window}");

    // Ann's 40 after ad and visit, Cara's 60 after email and visit.
    let attribution = run(&["attribution", "--value-property", "value"]);
    assert_eq!(
        attribution.lines().next(),
        Some("2 conversions of purchase by touchpoint, value 100"),
        "{attribution}"
    );
    // name, first touch, last touch, linear (then time decay, position, data-driven).
    assert_eq!(row(&attribution, "ad_click")[1..4], ["1", "0", "0.5"]);
    assert_eq!(row(&attribution, "site_visit")[1..4], ["0", "2", "1"]);
    let values = attribution
        .split("\nvalue")
        .nth(1)
        .unwrap_or_else(|| panic!("{attribution}"));
    assert_eq!(row(values, "email_open")[1..4], ["60", "0", "30"]);
    let csv = run(&["attribution", "--by", "channel", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with(
            "name,removal_effect,first_touch_conversions,first_touch_value,last_touch_conversions"
        ),
        "{csv}"
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(names, ["ads", "email", "web"]);
    assert_eq!(
        lines[3].split(',').nth(4),
        Some("2"),
        "the web gets both last touches: {csv}"
    );

    let top = run(&["top-paths", "--goal", "purchase"]);
    assert_eq!(
        top.lines().next(),
        Some("3 customers, 2 converted to purchase"),
        "{top}"
    );
    assert_eq!(
        row(&top, "ad_click"),
        [
            "ad_click",
            ">",
            "site_visit",
            ">",
            "purchase",
            "1",
            "1",
            "100.0%"
        ]
    );
    assert_eq!(
        row(&top, "site_visit"),
        ["site_visit", ">", "email_open", "1", "0", "0.0%"]
    );
    // Cut at one step and limited to one path: the other two are summed.
    let cut = run(&["top-paths", "--steps", "1", "--limit", "1"]);
    assert_eq!(
        row(&cut, "ad_click"),
        ["ad_click", ">", "...", "1", "-", "-"]
    );
    assert_eq!(
        row(&cut, "(other"),
        ["(other:", "2", "paths)", "2", "-", "-"]
    );
    let csv = run(&["top-paths", "--goal", "purchase", "--format", "csv"]);
    assert_eq!(
        csv,
        "path,steps,truncated,customers,conversions,conversion_rate\r\n\
         ad_click > site_visit > purchase,3,false,1,1,1\r\n\
         email_open > site_visit > purchase,3,false,1,1,1\r\n\
         site_visit > email_open,2,false,1,0,0\r\n"
    );

    // The other reports, a line each.
    let drop_off = run(&["drop-off", "--steps", "site_visit,purchase"]);
    assert!(
        drop_off.starts_with("1. site_visit: 1 dropped, 0 of them ended there"),
        "{drop_off}"
    );
    assert_eq!(row(&drop_off, "  1. email_open"), ["1.", "email_open", "1"]);
    let influence = run(&["influence"]);
    assert_eq!(
        influence.lines().next(),
        Some("3 customers, 2 converted to purchase (66.7%)"),
        "{influence}"
    );
    let cycle = run(&["sales-cycle"]);
    assert_eq!(
        cycle.lines().next(),
        Some("2 of 3 customers converted to purchase"),
        "{cycle}"
    );
    // Ann exactly a day after her first touch, Cara a day and ten minutes: not "same day".
    assert_eq!(
        row(&cycle, "within a week"),
        ["within", "a", "week", "2", "100.0%"]
    );
    let leads = run(&[
        "leads",
        "--leads",
        "site_visit",
        "--within-days",
        "1",
        "--as-of",
        "2026-10-10",
    ]);
    assert_eq!(
        row(&leads, "converted in time"),
        ["converted", "in", "time", "2"]
    );
    assert_eq!(row(&leads, "zombies"), ["zombies", "(went", "cold)", "1"]);
}

#[test]
fn analyst_commands_compare_two_segments_and_break_down_by_a_trait() {
    let (_guard, server) = server_for_analysts();
    let api = report_args(&server, READ_KEY);
    let run = |args: &[&str]| success(scribble(&[args, &api[..]].concat()));

    // Everyone against the bargain hunters (Cara).
    let compare = [
        "funnel",
        "--steps",
        "site_visit,purchase",
        "--compare-trait",
        "persona=bargain",
    ];
    let table = run(&compare);
    let sections: Vec<&str> = table.split("== ").skip(1).collect();
    assert_eq!(sections.len(), 3, "{table}");
    assert!(
        sections[0].starts_with("a: everything ==\n3 customers"),
        "{table}"
    );
    assert!(
        sections[1].starts_with("b: trait persona=bargain ==\n1 customers"),
        "{table}"
    );
    assert!(
        sections[2].starts_with("difference (b - a) ==\n-2 customers"),
        "{table}"
    );
    assert_eq!(row(sections[2], "1. site_visit")[2..5], ["-2", "-1", "-1"]);
    assert_eq!(
        row(sections[2], "2. purchase")[2..6],
        ["-1", "-1", "0", "33.3%"]
    );
    let json: Value =
        serde_json::from_str(&run(&[&compare[..], &["--format", "json"]].concat())).unwrap();
    assert_eq!(json["difference"]["customers"], -2);
    assert_eq!(json["b"]["filter"]["traits"], json!({"persona": "bargain"}));
    let csv = run(&[&compare[..], &["--format", "csv"]].concat());
    let sides: Vec<&str> = csv.lines().skip(1).map(|line| &line[..1]).collect();
    assert_eq!(sides, ["a", "a", "b", "b"], "{csv}");

    // The previous two days: Ann's ad and visit and Bob's visit and email.
    let previous = run(&[
        "top-paths",
        "--from",
        "2026-10-03",
        "--to",
        "2026-10-05",
        "--compare",
        "previous-period",
    ]);
    assert!(
        previous.contains("== b: from 2026-10-01, to 2026-10-03 =="),
        "{previous}"
    );
    assert!(
        previous.contains("ad_click > site_visit > purchase (only in b)"),
        "{previous}"
    );

    let breakdown = run(&[
        "funnel",
        "--steps",
        "site_visit,purchase",
        "--breakdown-by",
        "trait.persona",
        "--format",
        "csv",
    ]);
    assert_eq!(
        breakdown.split("\r\n").collect::<Vec<_>>(),
        [
            "segment,step,label,entered,converted,dropped,conversion_from_previous,conversion_from_first,median_seconds_to_convert,p90_seconds_to_convert",
            "(none),1,site_visit,1,0,1,1,1,,",
            "(none),2,purchase,0,0,0,0,0,,",
            "bargain,1,site_visit,1,1,0,1,1,,",
            "bargain,2,purchase,1,1,0,1,1,86400,86400",
            "researcher,1,site_visit,1,1,0,1,1,,",
            "researcher,2,purchase,1,1,0,1,1,86100,86100",
            "",
        ]
    );
    let table = run(&["sales-cycle", "--breakdown-by", "trait.persona"]);
    let headings: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with("== "))
        .collect();
    assert_eq!(
        headings,
        [
            "== trait.persona = (none) (1 customers) ==",
            "== trait.persona = bargain (1 customers) ==",
            "== trait.persona = researcher (1 customers) ==",
        ]
    );
}

#[test]
fn analyst_commands_teach_with_examples_and_relay_the_apis_refusals() {
    for command in [
        "funnel",
        "drop-off",
        "top-paths",
        "influence",
        "attribution",
        "sales-cycle",
        "leads",
    ] {
        let help = success(scribble(&[command, "--help"]));
        assert!(
            help.contains(&format!("Example: scribble {command} ")),
            "{command}:\n{help}"
        );
        for flag in [
            "--breakdown-by",
            "--compare",
            "--compare-from",
            "--compare-to",
            "--compare-prop",
            "--compare-trait",
            "--format",
            "--prop",
            "--trait",
            "--from",
            "--to",
        ] {
            assert!(help.contains(flag), "{command} --help lacks {flag}");
        }
    }
    let (_guard, server) = server_for_analysts();
    let api = report_args(&server, READ_KEY);
    let refused = failure(
        &[
            &[
                "funnel",
                "--steps",
                "site_visit,purchase",
                "--window",
                "soon",
            ],
            &api[..],
        ]
        .concat(),
    );
    assert!(
        refused.contains("400") && refused.contains("window: must be a duration"),
        "{refused}"
    );
    let refused = failure(&[&["leads", "--leads", "purchase"], &api[..]].concat());
    assert!(
        refused.contains("goal: purchase is also in leads"),
        "{refused}"
    );
    // A breakdown and a comparison together are refused before asking the API.
    let both = failure(&[
        "sales-cycle",
        "--breakdown-by",
        "trait.persona",
        "--compare-trait",
        "persona=x",
        "--api",
        "http://127.0.0.1:1",
    ]);
    assert!(both.contains("cannot be used with"), "{both}");
}

#[test]
fn help_describes_serve_and_its_flags() {
    let top = success(scribble(&["--help"]));
    assert!(top.contains("--demo"), "{top}");
    for command in ["serve", "import", "paths", "metrics", "journey"] {
        assert!(top.contains(command), "{command} in {top}");
    }
    for command in ["demo", "collector", "worker", "api", "migrate"] {
        assert!(
            top.lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "{command} listed in {top}"
        );
    }
    let serve = success(scribble(&["serve", "--help"]));
    for flag in ["--demo", "--data-dir", "--collector-addr", "--api-addr"] {
        assert!(serve.contains(flag), "{flag} in {serve}");
    }
}

#[test]
fn projects_file_serves_several_projects_apart_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("projects.json");
    std::fs::write(
        &file,
        json!({"projects": [
            {"name": "shop", "write_keys": ["shop-write-key"], "read_keys": ["shop-read-key"]},
            {"name": "blog", "write_keys": ["blog-write-key"], "read_keys": ["blog-read-key"]}
        ]})
        .to_string(),
    )
    .unwrap();
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start_with(&data_dir, &["--projects-file", file.to_str().unwrap()]);
    let http = reqwest::blocking::Client::new();
    let reply = http
        .post(format!("{}/v1/events", server.collector))
        .bearer_auth("shop-write-key")
        .json(&json!({"touchpoint": "site_visit", "anonymous_id": "c1"}))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    let touchpoints = |key: &str| -> Value {
        http.get(format!("{}/v1/touchpoints", server.api))
            .bearer_auth(key)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while touchpoints("shop-read-key")["events"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "shop never saw its event"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(touchpoints("blog-read-key")["events"], 0);

    std::fs::write(
        &file,
        json!({"projects": [{"name": "shop", "write_keys": ["same-key-twice"], "read_keys": ["same-key-twice"]}]})
            .to_string(),
    )
    .unwrap();
    let stderr = failure(&[
        "serve",
        "--collector-addr",
        "127.0.0.1:0",
        "--api-addr",
        "127.0.0.1:0",
        "--projects-file",
        file.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(stderr.contains("projects[0].read_keys[0]"), "{stderr}");
}

#[test]
fn command_line_mistakes_are_refused_with_what_to_change() {
    let kafka = "kafka://127.0.0.1:9092/events";
    let clickhouse = "clickhouse://127.0.0.1:8123/scribble";
    let cases: [(&[&str], &str); 12] = [
        (&["collector"], "pass --bus kafka://"),
        (&["worker", "--store", clickhouse], "pass --bus kafka://"),
        (&["worker", "--bus", kafka], "pass --store clickhouse://"),
        (&["api"], "pass --store clickhouse://"),
        (&["migrate"], "pass --store clickhouse://"),
        (&["serve", "--bus", kafka], "not a supported pair"),
        (&["serve", "--bus", "kafka://127.0.0.1/events"], "HOST:PORT"),
        (
            &["migrate", "--store", "clickhouse://127.0.0.1:8123/1db"],
            "not starting with a digit",
        ),
        (
            &[
                "worker",
                "--bus",
                kafka,
                "--store",
                clickhouse,
                "--batch-size",
                "0",
            ],
            "--batch-size must be at least 1",
        ),
        (
            &["collector", "--bus", kafka, "--partitions", "0"],
            "--partitions must be at least 1",
        ),
        (
            &["paths", "--where", "campaign"],
            "write filters as NAME=VALUE",
        ),
        (
            &["serve", "--session-gap-minutes", "0"],
            "--session-gap-minutes",
        ),
    ];
    for (args, expected) in cases {
        let stderr = failure(args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn import_checks_its_batch_size_before_reading_the_file() {
    for batch in ["0", "10001"] {
        let stderr = failure(&["import", "no-such-export.ndjson", "--batch", batch]);
        assert!(
            stderr.contains("--batch must be from 1 to 10000"),
            "--batch {batch}: {stderr}"
        );
    }
}

#[test]
fn servers_that_are_not_there_are_named_with_the_flag_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(
        &file,
        r#"{"touchpoint": "site_visit", "anonymous_id": "c1"}"#,
    )
    .unwrap();
    let nowhere = format!("http://{}", closed_port());
    let stderr = failure(&["import", file.to_str().unwrap(), "--collector", &nowhere]);
    assert!(stderr.contains("cannot reach the collector"), "{stderr}");
    let stderr = failure(&["metrics", "--api", &nowhere]);
    assert!(stderr.contains("cannot reach the query API"), "{stderr}");
    let store = format!("clickhouse://{}/scribble", closed_port());
    let stderr = failure(&["migrate", "--store", &store]);
    assert!(
        stderr.contains("cannot reach ClickHouse") && stderr.contains("--store"),
        "{stderr}"
    );
}

#[test]
fn stages_file_and_session_gap_shape_the_journey_and_bad_stage_files_are_refused() {
    let (guard, data_dir) = common::data_dir();
    let stages = guard.path().join("stages.json");
    std::fs::write(
        &stages,
        r#"[{"name": "look", "touchpoints": ["site_visit"]}, {"name": "buy", "touchpoints": ["purchase"]}]"#,
    )
    .unwrap();
    let mut args: Vec<&str> = common::TEST_PROJECT_ARGS.to_vec();
    args.extend([
        "--stages-file",
        stages.to_str().unwrap(),
        "--session-gap-minutes",
        "5",
    ]);
    let server = Server::start_with(&data_dir.join("data"), &args);
    // A visit, an email 2 minutes later, a purchase 10 minutes after that: two sessions of a
    // 5-minute gap (one of the default 30), and stages from the file.
    let events = json!([
        {"touchpoint": "site_visit", "anonymous_id": "c1", "timestamp": "2026-11-02T10:00:00Z"},
        {"touchpoint": "email_open", "anonymous_id": "c1", "timestamp": "2026-11-02T10:02:00Z"},
        {"touchpoint": "purchase", "anonymous_id": "c1", "timestamp": "2026-11-02T10:12:00Z"},
    ]);
    let (status, reply) = server.post_events(&events);
    assert_eq!(status, 200, "{reply}");
    let journey = server.wait_until("/v1/customers/a:c1/journey", |body| {
        body["touchpoints"] == 3
    });
    assert_eq!(journey["sessions"], 2);
    let stage_of_each: Vec<Value> = journey["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["stage"].clone())
        .collect();
    assert_eq!(stage_of_each, [json!("look"), Value::Null, json!("buy")]);
    drop(server);

    std::fs::write(
        &stages,
        r#"[{"name": "look", "touchpoints": ["site_visit"]}, {"name": "look"}]"#,
    )
    .unwrap();
    // Refused at start, before serve opens its data or listens.
    let stderr = failure(&["serve", "--stages-file", stages.to_str().unwrap()]);
    assert!(stderr.contains("is not a stages file"), "{stderr}");
    assert!(stderr.contains("listed twice"), "{stderr}");
}
