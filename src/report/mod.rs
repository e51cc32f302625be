//! Report commands: call a running query API and print a readable table, or the graph as DOT or
//! Mermaid for pasting into docs and notebooks. The analyst reports are in [`analyst`].

mod analyst;

pub use analyst::{attribution, drop_off, funnel, influence, leads, sales_cycle, top_paths};

use anyhow::{anyhow, Context};
use scribble_domain::render::human_duration;
use serde_json::Value;

use crate::cli::{
    ApiClientArgs, GraphFormat, GraphView, JourneyArgs, MetricsArgs, PathsArgs, ReportArgs,
};

fn get(
    client: &ApiClientArgs,
    path: &str,
    params: &[(String, String)],
) -> anyhow::Result<reqwest::blocking::Response> {
    let url = format!("{}{path}", client.api.trim_end_matches('/'));
    let response = reqwest::blocking::Client::new()
        .get(&url)
        .bearer_auth(&client.read_key)
        .query(params)
        .send()
        .with_context(|| {
            format!("cannot reach the query API at {url}; is `scribble serve` running?")
        })?;
    if response.status().is_success() {
        return Ok(response);
    }
    Err(refusal(response))
}

/// The error for a reply the query API refused: its status and the sentence of its error body.
pub(crate) fn refusal(response: reqwest::blocking::Response) -> anyhow::Error {
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    anyhow!(
        "{status}: {}",
        body.get("message")
            .and_then(Value::as_str)
            .unwrap_or("the query API refused the request")
    )
}

fn filter_params(report: &ReportArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut params = Vec::new();
    if let Some(from) = &report.from {
        params.push(("from".into(), from.clone()));
    }
    if let Some(to) = &report.to {
        params.push(("to".into(), to.clone()));
    }
    params.extend(pairs("prop.", &report.properties)?);
    params.extend(pairs("trait.", &report.traits)?);
    Ok(params)
}

/// `NAME=VALUE` flags as `<prefix>NAME=VALUE` query parameters.
fn pairs(prefix: &str, flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("{pair:?}: write filters as NAME=VALUE"))?;
            Ok((format!("{prefix}{key}"), value.to_owned()))
        })
        .collect()
}

pub fn paths(args: PathsArgs) -> anyhow::Result<()> {
    let mut params = filter_params(&args.report)?;
    let view = match args.view {
        GraphView::State => "state",
        GraphView::Positional => "positional",
    };
    params.push(("view".into(), view.into()));
    let options = [
        ("start", args.start),
        ("end", args.end),
        ("steps", args.steps.map(|n| n.to_string())),
        ("top", args.top.map(|n| n.to_string())),
    ];
    for (name, value) in options {
        if let Some(value) = value {
            params.push((name.into(), value));
        }
    }
    if args.collapse {
        params.push(("collapse".into(), "true".into()));
    }
    if args.no_drop_offs {
        params.push(("drop_offs".into(), "false".into()));
    }
    if args.by_channel {
        params.push(("breakdown".into(), "channel".into()));
    }
    let format = match args.format {
        GraphFormat::Dot => Some("dot"),
        GraphFormat::Mermaid => Some("mermaid"),
        GraphFormat::Table | GraphFormat::Json => None,
    };
    if let Some(format) = format {
        params.push(("format".into(), format.into()));
        print!(
            "{}",
            get(&args.report.client, "/v1/paths", &params)?.text()?
        );
        return Ok(());
    }
    let graph: Value = get(&args.report.client, "/v1/paths", &params)?.json()?;
    if args.format == GraphFormat::Json {
        println!("{}", serde_json::to_string_pretty(&graph)?);
        return Ok(());
    }
    print!("{}", graph_table(&graph));
    Ok(())
}

/// The edges of a path graph, busiest first, as an aligned table.
fn graph_table(graph: &Value) -> String {
    let empty = Vec::new();
    let nodes = graph["nodes"].as_array().unwrap_or(&empty);
    let label = |id: &Value| -> String {
        let node = nodes.iter().find(|node| &node["id"] == id);
        match node {
            Some(node) if node["step"].is_u64() => format!(
                "{}. {}",
                node["step"],
                node["label"].as_str().unwrap_or("?")
            ),
            Some(node) => node["label"].as_str().unwrap_or("?").to_owned(),
            None => "?".to_owned(),
        }
    };
    let mut edges: Vec<&Value> = graph["edges"].as_array().unwrap_or(&empty).iter().collect();
    edges.sort_by_key(|edge| std::cmp::Reverse(edge["customers"].as_u64().unwrap_or(0)));
    let mut out = format!(
        "{} view, {} customers\n",
        graph["view"].as_str().unwrap_or("?"),
        graph["customers"]
    );
    out.push_str(&format!(
        "{:<32} {:<32} {:>10} {:>12} {:>10}\n",
        "from", "to", "customers", "transitions", "median"
    ));
    for edge in edges {
        let median = edge["median_seconds"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), human_duration);
        out.push_str(&format!(
            "{:<32} {:<32} {:>10} {:>12} {:>10}\n",
            label(&edge["from"]),
            label(&edge["to"]),
            edge["customers"].as_u64().unwrap_or(0),
            edge["transitions"].as_u64().unwrap_or(0),
            median
        ));
    }
    out
}

pub fn metrics(args: MetricsArgs) -> anyhow::Result<()> {
    let mut params = filter_params(&args.report)?;
    params.push(("goal".into(), args.goal));
    let metrics: Value = get(&args.report.client, "/v1/metrics", &params)?.json()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
        return Ok(());
    }
    print!("{}", metrics_table(&metrics));
    Ok(())
}

/// Scalar metrics one per line; lists (such as loops) one item per line below their name.
fn metrics_table(metrics: &Value) -> String {
    let mut out = String::new();
    let Some(fields) = metrics.as_object() else {
        return out;
    };
    for (name, value) in fields {
        match value {
            Value::Array(items) => {
                out.push_str(&format!("{name}:\n"));
                for item in items {
                    out.push_str(&format!("  {item}\n"));
                }
            }
            Value::Number(number) if number.is_f64() => out.push_str(&format!(
                "{name:<40} {:.3}\n",
                number.as_f64().unwrap_or(0.0)
            )),
            other => out.push_str(&format!("{name:<40} {other}\n")),
        }
    }
    out
}

pub fn journey(args: JourneyArgs) -> anyhow::Result<()> {
    let path = format!("/v1/customers/{}/journey", urlencode(&args.customer));
    let journey: Value = get(&args.client, &path, &[])?.json()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&journey)?);
        return Ok(());
    }
    println!(
        "customer {}  ({} touchpoints, {} sessions)",
        journey["customer_id"].as_str().unwrap_or("?"),
        journey["touchpoints"],
        journey["sessions"]
    );
    println!("identities: {}", journey["identities"]);
    println!("traits:     {}", journey["traits"]);
    for step in journey["timeline"].as_array().into_iter().flatten() {
        println!(
            "{}  s{:<3} {:<14} {:<9} {:<20} {}",
            step["time"].as_str().unwrap_or("?"),
            step["session"],
            step["stage"].as_str().unwrap_or("-"),
            step["channel"].as_str().unwrap_or("?"),
            step["touchpoint"].as_str().unwrap_or("?"),
            step["properties"]
        );
    }
    Ok(())
}

/// Percent-encodes one path segment.
pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn graph_table_lists_busiest_edges_first_with_readable_times() {
        let graph = json!({
            "view": "state", "customers": 3,
            "nodes": [{"id": 0, "label": "site_visit", "step": null}, {"id": 1, "label": "purchase", "step": null}],
            "edges": [
                {"from": 0, "to": 1, "customers": 1, "transitions": 1, "median_seconds": 7200.0},
                {"from": 0, "to": 0, "customers": 2, "transitions": 3, "median_seconds": null}
            ]
        });
        let table = graph_table(&graph);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "state view, 3 customers");
        assert!(
            lines[2].starts_with("site_visit")
                && lines[2].contains(" 2 ")
                && lines[2].ends_with("-"),
            "{table}"
        );
        assert!(
            lines[3].contains("purchase") && lines[3].ends_with("2.0h"),
            "{table}"
        );
    }

    #[test]
    fn identities_are_encoded_for_the_path() {
        assert_eq!(urlencode("a:cookie 1/2"), "a:cookie%201%2F2");
    }
}
