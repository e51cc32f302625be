//! `scribble import FILE`: sends an NDJSON or CSV export to a running collector in batches, with
//! a progress bar, and ends with a summary of rejected events (file line, field, reason).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context};
use scribble_collector::MAX_EVENTS_PER_REQUEST;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::{ImportArgs, ImportFormat};

/// Most rejections listed in the summary; the rest are counted.
const LISTED_REJECTIONS: usize = 20;

/// One event to send: the line of the file it came from, and the event in the collector's wire
/// shape or why that line could not be read.
type Row = (usize, Result<Value, String>);

/// The body of one request: the collector's `{"batch": [...]}` shape, serialized from borrowed
/// events.
#[derive(Serialize)]
struct Batch<'a> {
    batch: &'a [&'a Value],
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    // Checked before the file is read: a wrong flag should not wait for a large export.
    if args.batch == 0 || args.batch > MAX_EVENTS_PER_REQUEST {
        bail!("--batch must be from 1 to {MAX_EVENTS_PER_REQUEST}");
    }
    let format = match args.format {
        ImportFormat::Auto
            if args
                .file
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("csv")) =>
        {
            ImportFormat::Csv
        }
        ImportFormat::Auto => ImportFormat::Ndjson,
        chosen => chosen,
    };
    let rows = match format {
        ImportFormat::Csv => read_csv(&args.file)?,
        _ => read_ndjson(&args.file)?,
    };
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/v1/events", args.collector.trim_end_matches('/'));
    let progress = indicatif::ProgressBar::new(rows.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "importing {bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
        )
        .expect("template"),
    );
    let mut summary = Summary::default();
    for chunk in rows.chunks(args.batch) {
        let mut sent_lines = Vec::new();
        let mut batch = Vec::new();
        for (line, row) in chunk {
            match row {
                Ok(event) => {
                    sent_lines.push(*line);
                    batch.push(event);
                }
                Err(reason) => summary.reject(*line, "event", reason),
            }
        }
        if !batch.is_empty() {
            send(
                &client,
                &url,
                &args.write_key,
                &batch,
                &sent_lines,
                &mut summary,
            )?;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    summary.print();
    Ok(())
}

fn send(
    client: &reqwest::blocking::Client,
    url: &str,
    write_key: &str,
    batch: &[&Value],
    lines: &[usize],
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .bearer_auth(write_key)
        .json(&Batch { batch })
        .send()
        .with_context(|| {
            format!("cannot reach the collector at {url}; is `scribble serve` running?")
        })?;
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    if !status.is_success() && body.get("rejected").is_none() {
        bail!(
            "the collector refused a batch ({status}): {}",
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        );
    }
    summary.accepted += body.get("accepted").and_then(Value::as_u64).unwrap_or(0) as usize;
    for rejection in body
        .get("rejected")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let index = rejection.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let field = rejection
            .get("field")
            .and_then(Value::as_str)
            .unwrap_or("event");
        let reason = rejection
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("rejected");
        summary.reject(lines.get(index).copied().unwrap_or(0), field, reason);
    }
    Ok(())
}

#[derive(Default)]
struct Summary {
    accepted: usize,
    rejected: usize,
    listed: Vec<String>,
}

impl Summary {
    fn reject(&mut self, line: usize, field: &str, reason: &str) {
        self.rejected += 1;
        if self.listed.len() < LISTED_REJECTIONS {
            self.listed
                .push(format!("  line {line}: {field}: {reason}"));
        }
    }

    fn print(&self) {
        println!(
            "imported {} events, rejected {}",
            self.accepted, self.rejected
        );
        for line in &self.listed {
            println!("{line}");
        }
        if self.rejected > self.listed.len() {
            println!("  ... and {} more", self.rejected - self.listed.len());
        }
    }
}

fn read_ndjson(path: &Path) -> anyhow::Result<Vec<Row>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event =
            serde_json::from_str::<Value>(&line).map_err(|error| format!("not JSON: {error}"));
        rows.push((index + 1, event));
    }
    Ok(rows)
}

/// Columns that are event fields; `traits.X` columns are traits; every other column a property.
const EVENT_COLUMNS: &[&str] = &[
    "event_id",
    "timestamp",
    "type",
    "touchpoint",
    "channel",
    "direct",
    "anonymous_id",
    "user_id",
    "previous_id",
];

fn read_csv(path: &Path) -> anyhow::Result<Vec<Row>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{} has no header row", path.display()))?
        .clone();
    let mut rows = Vec::new();
    let mut line = 1;
    for record in reader.records() {
        line += 1;
        match record {
            Ok(record) => {
                line = record
                    .position()
                    .map_or(line, |position| position.line() as usize);
                rows.extend(
                    csv_events(&headers, &record)
                        .into_iter()
                        .map(|event| (line, event)),
                );
            }
            Err(error) => rows.push((line, Err(format!("not CSV: {error}")))),
        }
    }
    Ok(rows)
}

/// Turns one CSV record into the wire shape. Empty cells are left out; numbers and booleans in
/// property columns become JSON numbers and booleans. Traits on a touchpoint row travel in an
/// identify event sent with it, since only identify events carry traits.
fn csv_events(
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
) -> Vec<Result<Value, String>> {
    let mut event = Map::new();
    let mut properties = Map::new();
    let mut traits = Map::new();
    for (column, cell) in headers.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        if column == "direct" {
            event.insert(
                column.to_owned(),
                cell.parse::<bool>()
                    .map_or_else(|_| Value::from(cell), Value::from),
            );
        } else if EVENT_COLUMNS.contains(&column) {
            event.insert(column.to_owned(), Value::from(cell));
        } else if let Some(name) = column.strip_prefix("traits.") {
            traits.insert(name.to_owned(), typed(cell));
        } else {
            properties.insert(
                column
                    .strip_prefix("properties.")
                    .unwrap_or(column)
                    .to_owned(),
                typed(cell),
            );
        }
    }
    if !properties.is_empty() {
        event.insert("properties".into(), Value::Object(properties));
    }
    let is_identify = event.get("type").and_then(Value::as_str) == Some("identify");
    if traits.is_empty() || is_identify {
        if !traits.is_empty() {
            event.insert("traits".into(), Value::Object(traits));
        }
        return vec![Ok(Value::Object(event))];
    }
    if !event.contains_key("user_id") {
        return vec![
            Ok(Value::Object(event)),
            Err(
                "traits.* columns need a user_id on the row: traits belong to a known customer"
                    .into(),
            ),
        ];
    }
    let mut identify = Map::new();
    identify.insert("type".into(), Value::from("identify"));
    for field in ["timestamp", "user_id", "anonymous_id"] {
        if let Some(value) = event.get(field) {
            identify.insert(field.into(), value.clone());
        }
    }
    identify.insert("traits".into(), Value::Object(traits));
    vec![Ok(Value::Object(event)), Ok(Value::Object(identify))]
}

fn typed(cell: &str) -> Value {
    serde_json::from_str::<Value>(cell)
        .ok()
        .filter(|value| value.is_number() || value.is_boolean())
        .unwrap_or_else(|| Value::from(cell))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn csv_columns_map_to_fields_typed_properties_and_an_identify_for_traits() {
        let headers = record(&[
            "timestamp",
            "touchpoint",
            "user_id",
            "direct",
            "value",
            "campaign",
            "traits.persona",
            "note",
        ]);
        let row = record(&[
            "2026-11-01T10:00:00Z",
            "purchase",
            "u1",
            "false",
            "99.5",
            "fall",
            "buyer",
            "",
        ]);
        assert_eq!(
            csv_events(&headers, &row),
            vec![
                Ok(json!({
                    "timestamp": "2026-11-01T10:00:00Z", "touchpoint": "purchase", "user_id": "u1", "direct": false,
                    "properties": {"value": 99.5, "campaign": "fall"}
                })),
                Ok(json!({
                    "type": "identify", "timestamp": "2026-11-01T10:00:00Z", "user_id": "u1",
                    "traits": {"persona": "buyer"}
                })),
            ]
        );
    }

    #[test]
    fn csv_identify_rows_keep_traits_and_anonymous_rows_cannot_carry_them() {
        let headers = record(&[
            "type",
            "user_id",
            "anonymous_id",
            "touchpoint",
            "traits.persona",
        ]);
        let identify = csv_events(&headers, &record(&["identify", "u1", "", "", "buyer"]));
        assert_eq!(
            identify,
            vec![Ok(
                json!({"type": "identify", "user_id": "u1", "traits": {"persona": "buyer"}})
            )]
        );
        let anonymous = csv_events(&headers, &record(&["", "", "c1", "site_visit", "buyer"]));
        assert_eq!(
            anonymous[0],
            Ok(json!({"anonymous_id": "c1", "touchpoint": "site_visit"}))
        );
        assert!(anonymous[1].as_ref().unwrap_err().contains("user_id"));
    }
}
