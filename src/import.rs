//! `scribble import FILE`: sends an NDJSON or CSV export to a running collector in batches, with
//! a progress bar, and ends with a summary of rejected rows (row number, field, reason).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::cli::{ImportArgs, ImportFormat};

/// Most rejected rows listed in the summary; the rest are counted.
const LISTED_REJECTIONS: usize = 20;

/// One row of the file, as an event in the collector's wire shape, or why it could not be read.
type Row = Result<Value, String>;

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
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
    if args.batch == 0 || args.batch > 10_000 {
        bail!("--batch must be from 1 to 10000");
    }
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/v1/events", args.collector.trim_end_matches('/'));
    let progress = indicatif::ProgressBar::new(rows.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "importing {bar:40} {pos}/{len} rows ({per_sec}, {eta} left)",
        )
        .expect("template"),
    );
    let mut summary = Summary::default();
    let numbered: Vec<(usize, Row)> = rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| (index + 1, row))
        .collect();
    for chunk in numbered.chunks(args.batch) {
        let mut sent_rows = Vec::new();
        let mut batch = Vec::new();
        for (row_number, row) in chunk {
            match row {
                Ok(event) => {
                    sent_rows.push(*row_number);
                    batch.push(event.clone());
                }
                Err(reason) => summary.reject(*row_number, "row", reason),
            }
        }
        if !batch.is_empty() {
            send(
                &client,
                &url,
                &args.write_key,
                &batch,
                &sent_rows,
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
    batch: &[Value],
    rows: &[usize],
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .bearer_auth(write_key)
        .json(&serde_json::json!({ "batch": batch }))
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
        summary.reject(rows.get(index).copied().unwrap_or(0), field, reason);
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
    fn reject(&mut self, row: usize, field: &str, reason: &str) {
        self.rejected += 1;
        if self.listed.len() < LISTED_REJECTIONS {
            self.listed.push(format!("  row {row}: {field}: {reason}"));
        }
    }

    fn print(&self) {
        println!(
            "imported {} events, rejected {} rows",
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
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        rows.push(
            serde_json::from_str::<Value>(&line).map_err(|error| format!("not JSON: {error}")),
        );
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
    for record in reader.records() {
        rows.push(
            record
                .map_err(|error| format!("not CSV: {error}"))
                .map(|record| csv_event(&headers, &record)),
        );
    }
    Ok(rows)
}

/// Turns one CSV record into the wire shape. Empty cells are left out; numbers and booleans in
/// property columns become JSON numbers and booleans.
fn csv_event(headers: &csv::StringRecord, record: &csv::StringRecord) -> Value {
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
    if !traits.is_empty() {
        event.insert("traits".into(), Value::Object(traits));
    }
    Value::Object(event)
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

    #[test]
    fn csv_columns_map_to_fields_traits_and_typed_properties() {
        let headers = csv::StringRecord::from(vec![
            "timestamp",
            "touchpoint",
            "user_id",
            "direct",
            "value",
            "campaign",
            "traits.persona",
            "note",
        ]);
        let record = csv::StringRecord::from(vec![
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
            csv_event(&headers, &record),
            json!({
                "timestamp": "2026-11-01T10:00:00Z", "touchpoint": "purchase", "user_id": "u1", "direct": false,
                "properties": {"value": 99.5, "campaign": "fall"}, "traits": {"persona": "buyer"}
            })
        );
    }
}
