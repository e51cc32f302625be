//! Load shedding: at most `max_requests_in_flight` event requests (`/v1/events`, `/v1/identify`,
//! `/v1/alias`) are read, decoded and queued at once. One more is answered `503 overloaded` with
//! `Retry-After` at once, before its body is read, so a load beyond what the bus takes costs a
//! short reply instead of memory and latency that grow for as long as the overload lasts.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::CollectorError;

/// The requests in flight, shared by every connection of one collector.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// Middleware: runs the request while a place is free (holding it until the reply is ready),
/// else refuses it with [`CollectorError::Overloaded`].
pub(crate) async fn shed_when_full(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_place) = in_flight.permits.clone().try_acquire_owned() else {
        return CollectorError::Overloaded {
            limit: in_flight.limit,
        }
        .into_response();
    };
    next.run(request).await
}
