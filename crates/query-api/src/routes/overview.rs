//! `GET /v1/overview`: customers, events and conversions per hour, day or week, the time series a
//! dashboard opens with (see [`scribble_domain::overview`]).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scribble_domain::overview::{overview, Interval};
use tracing::instrument;

use super::{compute, AppState, Reader};
use crate::error::ApiError;
use crate::params::filter_query;

/// Parameters: `interval` (`hour`, `day`, `week`) [day], `goal` [purchase], `format`
/// (`json`, `csv`) [json], and the filters.
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn overview_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let mut params = reader.params;
    let mut take = |name: &str| {
        let index = params.iter().position(|(key, _)| key == name)?;
        Some(params.remove(index).1)
    };
    let interval = match take("interval") {
        None => Interval::Day,
        Some(text) => Interval::parse(&text)
            .ok_or_else(|| ApiError::invalid("interval", "must be hour, day or week"))?,
    };
    let goal = match take("goal") {
        None => "purchase".to_owned(),
        Some(goal) if goal.trim().is_empty() => {
            return Err(ApiError::invalid(
                "goal",
                "must not be empty; leave it out instead",
            ))
        }
        Some(goal) => goal,
    };
    let csv = match take("format").as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "must be json or csv")),
    };
    let filter = filter_query(params)?;
    let set = state
        .store
        .journeys_without_properties(&reader.project, &filter)
        .await?;
    let answer = compute(move || overview(&set, &goal, interval))
        .await?
        .map_err(|error| ApiError::invalid("interval", error.to_string()))?;
    if csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            answer.to_csv(),
        )
            .into_response());
    }
    Ok(Json(answer).into_response())
}
