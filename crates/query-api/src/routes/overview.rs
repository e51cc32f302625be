//! `GET /v1/overview`: customers, events and conversions per hour, day or week, the time series a
//! dashboard opens with (see [`scribble_domain::overview`]).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scribble_domain::overview::overview;
use tracing::instrument;

use super::{compute, AppState, Reader};
use crate::error::ApiError;
use crate::params::{overview_query, OverviewQuery, TableFormat};

/// Parameters: see [`overview_query`].
#[instrument(skip_all, fields(project = %reader.project))]
pub(super) async fn overview_report(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Response, ApiError> {
    let OverviewQuery {
        interval,
        goal,
        format,
        filter,
    } = overview_query(reader.params)?;
    let set = state
        .store
        .journeys_without_properties(&reader.project, &filter)
        .await?;
    let answer = compute(move || overview(&set, &goal, interval))
        .await?
        .map_err(|error| ApiError::invalid("interval", error.to_string()))?;
    if format == TableFormat::Csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            answer.to_csv(),
        )
            .into_response());
    }
    Ok(Json(answer).into_response())
}
