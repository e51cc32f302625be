//! What every analyst report shares once its parameters are decoded: reading the journeys the
//! query selects (all of them, per segment of a breakdown, or the two sides of a comparison),
//! computing the report on a blocking thread, and rendering the answer as JSON or CSV.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use scribble_domain::compare::difference;
use scribble_domain::event::format_time;
use scribble_domain::journey::JourneySet;
use scribble_domain::render::to_csv;
use scribble_domain::stitch::JourneyFilter;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{compute, AppState};
use crate::error::ApiError;
use crate::params::{ReadsStepProperties, ReportQuery, Split, TableFormat};

/// A report the analyst endpoints serve: its JSON is its `Serialize`, fields in the report's
/// order.
pub(super) trait Table: Serialize + Send + 'static {
    /// The report as CSV, header row first.
    fn csv(&self) -> String;
}

/// Computes one report from a journey set and the report's options.
pub(super) type Compute<O, R> = fn(&JourneySet, &O) -> Result<R, ApiError>;

/// One segment of a breakdown answer.
#[derive(Serialize)]
struct Segment<'a, R> {
    value: &'a str,
    customers: usize,
    report: &'a R,
}

/// A breakdown answer.
#[derive(Serialize)]
struct Breakdown<'a, R> {
    breakdown_by: &'a str,
    segments: Vec<Segment<'a, R>>,
}

/// One side of a comparison answer.
#[derive(Serialize)]
struct Side<'a, R> {
    filter: FilterView,
    report: &'a R,
}

/// A comparison answer.
#[derive(Serialize)]
struct Comparison<'a, R> {
    a: Side<'a, R>,
    b: Side<'a, R>,
    difference: Value,
}

/// Answers `query` over `project`'s journeys with `report`:
/// - whole: the report, as JSON or its CSV;
/// - breakdown: `{"breakdown_by", "segments": [{"value", "customers", "report"}]}`, or the
///   reports' CSV rows after a leading `segment` column;
/// - comparison: `{"a": {"filter", "report"}, "b": {..}, "difference"}` (see
///   [`difference`]), or both reports' CSV rows after a leading `side` column (`a`, `b`).
pub(super) async fn answer<O, R>(
    state: &AppState,
    project: &str,
    query: ReportQuery<O>,
    report: Compute<O, R>,
) -> Result<Response, ApiError>
where
    O: ReadsStepProperties + Send + 'static,
    R: Table,
{
    let reads_step_properties = query.options.reads_step_properties();
    let journeys = |filter: JourneyFilter| async move {
        if reads_step_properties {
            state.store.journeys(project, &filter).await
        } else {
            state
                .store
                .journeys_without_properties(project, &filter)
                .await
        }
    };
    let ReportQuery {
        options,
        filter,
        format,
        split,
    } = query;
    let body = match split {
        Split::Whole => {
            let set = journeys(filter.clone()).await?;
            compute(move || -> Result<Body, ApiError> {
                let answer = report(&set, &options)?;
                match format {
                    TableFormat::Csv => Ok(Body::Csv(answer.csv())),
                    TableFormat::Json => Body::json(&answer),
                }
            })
            .await??
        }
        Split::Breakdown(breakdown) => {
            let segments = state
                .store
                .segments(project, &filter, &breakdown.dimension)
                .await?;
            compute(move || -> Result<Body, ApiError> {
                let reports = segments
                    .iter()
                    .map(|(value, set)| {
                        Ok((value.as_str(), set.journeys.len(), report(set, &options)?))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                if format == TableFormat::Csv {
                    // Without segments there are no rows, but the header is still the report's.
                    let header = report(&JourneySet::default(), &options)?.csv();
                    let parts = reports
                        .iter()
                        .map(|(value, _, report)| (*value, report.csv()));
                    return Ok(Body::Csv(prefixed_csv("segment", &header, parts)?));
                }
                let segments = reports
                    .iter()
                    .map(|(value, customers, report)| Segment {
                        value,
                        customers: *customers,
                        report,
                    })
                    .collect();
                Body::json(&Breakdown {
                    breakdown_by: &breakdown.parameter,
                    segments,
                })
            })
            .await??
        }
        Split::Compare(filter_b) => {
            let (set_a, set_b) =
                tokio::try_join!(journeys(filter.clone()), journeys(filter_b.clone()),)?;
            compute(move || -> Result<Body, ApiError> {
                let (a, b) = (report(&set_a, &options)?, report(&set_b, &options)?);
                if format == TableFormat::Csv {
                    let header = a.csv();
                    let parts = [("a", a.csv()), ("b", b.csv())];
                    return Ok(Body::Csv(prefixed_csv("side", &header, parts)?));
                }
                let difference = difference(&to_value(&a)?, &to_value(&b)?);
                Body::json(&Comparison {
                    a: Side {
                        filter: FilterView::of(&filter),
                        report: &a,
                    },
                    b: Side {
                        filter: FilterView::of(&filter_b),
                        report: &b,
                    },
                    difference,
                })
            })
            .await??
        }
    };
    Ok(body.into_response())
}

fn to_value(report: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(report).map_err(|error| ApiError::Internal(error.to_string()))
}

/// An answer built on the blocking thread: JSON text, or CSV.
enum Body {
    Json(Vec<u8>),
    Csv(String),
}

impl Body {
    fn json(answer: &impl Serialize) -> Result<Body, ApiError> {
        serde_json::to_vec(answer)
            .map(Body::Json)
            .map_err(|error| ApiError::Internal(error.to_string()))
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response {
        match self {
            Body::Json(bytes) => {
                ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
            }
            Body::Csv(text) => {
                ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response()
            }
        }
    }
}

/// One CSV of several reports: `header`'s columns after a leading `column`, then each part's rows
/// after its value in that column.
fn prefixed_csv<'a>(
    column: &str,
    header: &str,
    parts: impl IntoIterator<Item = (&'a str, String)>,
) -> Result<String, ApiError> {
    let unreadable = |error: csv::Error| ApiError::Internal(format!("report CSV: {error}"));
    fn reader(text: &str) -> csv::Reader<&[u8]> {
        csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes())
    }
    let mut columns = vec![column.to_owned()];
    let mut header = reader(header);
    columns.extend(
        header
            .headers()
            .map_err(unreadable)?
            .iter()
            .map(str::to_owned),
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (value, text) in parts {
        for record in reader(&text).records() {
            let record = record.map_err(unreadable)?;
            let mut row = vec![value.to_owned()];
            row.extend(record.iter().map(str::to_owned));
            rows.push(row);
        }
    }
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    Ok(to_csv(&columns, rows))
}

/// A filter as a comparison shows it: times in RFC 3339, filters as objects (a key given
/// twice shows its values as a list).
#[derive(Debug, Serialize)]
struct FilterView {
    from: Option<String>,
    to: Option<String>,
    properties: Map<String, Value>,
    traits: Map<String, Value>,
}

impl FilterView {
    fn of(filter: &JourneyFilter) -> Self {
        let pairs = |pairs: &[(String, String)]| {
            let mut object = Map::new();
            for (key, value) in pairs {
                match object.get_mut(key) {
                    None => {
                        object.insert(key.clone(), Value::from(value.as_str()));
                    }
                    Some(Value::Array(values)) => values.push(Value::from(value.as_str())),
                    Some(first) => *first = json!([first.clone(), value]),
                }
            }
            object
        };
        Self {
            from: filter.from_ms.map(format_time),
            to: filter.to_ms.map(format_time),
            properties: pairs(&filter.properties),
            traits: pairs(&filter.traits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_csv_keeps_quoted_fields_whole_and_defuses_the_prefix() {
        let header = "step,label\r\n";
        let a = "step,label\r\n1,\"visit, \"\"pricing\"\"\r\nline two\"\r\n".to_owned();
        let b = "step,label\r\n2,'=SUM(A1)\r\n".to_owned();
        let csv = prefixed_csv("segment", header, [("=cmd", a), ("plain", b)]).unwrap();
        assert_eq!(
            csv,
            "segment,step,label\r\n\
             '=cmd,1,\"visit, \"\"pricing\"\"\r\nline two\"\r\n\
             plain,2,'=SUM(A1)\r\n"
        );
    }

    #[test]
    fn filters_show_times_and_repeated_keys() {
        let filter = JourneyFilter {
            from_ms: Some(0),
            to_ms: None,
            properties: vec![
                ("campaign".into(), "fall".into()),
                ("campaign".into(), "spring".into()),
            ],
            traits: vec![("persona".into(), "researcher".into())],
        };
        assert_eq!(
            serde_json::to_value(FilterView::of(&filter)).unwrap(),
            json!({
                "from": "1970-01-01T00:00:00.000Z", "to": null,
                "properties": {"campaign": ["fall", "spring"]},
                "traits": {"persona": "researcher"},
            })
        );
    }
}
