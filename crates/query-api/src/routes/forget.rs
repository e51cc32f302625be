//! `DELETE /v1/customers/{id}`: erases the customer any of whose identities is `id`, in the
//! store the API reads (see `JourneyStore::forget`): its events, identity links, traits and
//! journey fragments, after a tombstone for each of its identities, so late or replayed events
//! naming one are dropped by the workers instead of bringing the customer back.
//!
//! It takes the project's read key, like the reports: write keys are public (every page that
//! tracks visitors carries one), so they must not be able to erase anything.
//!
//! Replies: 200 with what was erased, 202 with the same body when the store accepted the
//! erasure but its deletes were still running when the API stopped waiting (ClickHouse
//! mutations; they finish in the background, and the tombstones already hold), 404
//! `unknown_customer` when no customer has the identity.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scribble_domain::event::IdentityKey;
use serde_json::json;
use tracing::field::Empty;
use tracing::{info, instrument, Span};

use super::{customer_id, AppState, Reader};
use crate::error::ApiError;
use crate::params::no_parameters;

#[instrument(skip_all, fields(project = %reader.project, customer = Empty))]
pub(super) async fn forget_customer(
    State(state): State<AppState>,
    reader: Reader,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = customer_id(id)?;
    Span::current().record("customer", id.as_str());
    no_parameters(reader.params)?;
    let forgotten = state
        .store
        .forget(&reader.project, &IdentityKey::parse(&id))
        .await?
        .ok_or(ApiError::UnknownCustomer(id))?;
    info!(
        identities = forgotten.identities.len(),
        events = forgotten.events,
        complete = forgotten.complete,
        "customer erased"
    );
    let status = if forgotten.complete {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = json!({
        "customer_id": forgotten.customer_id.0,
        "identities": forgotten.identities.iter().map(|key| key.0.as_str()).collect::<Vec<_>>(),
        "events": forgotten.events,
        "complete": forgotten.complete,
    });
    Ok((status, Json(body)).into_response())
}
