//! `POST /v1/events`, `/v1/identify` and `/v1/alias`: authenticate, decode the body, validate
//! each event on its own, and durably queue the valid ones in one append.
//!
//! Replies: 200 `{"accepted": n, "rejected": [{"index", "field", "reason"}]}` when at least one
//! event was queued; 400 `all_events_rejected` with the same `rejected` list when none was, so a
//! sender whose every event is wrong sees a failure instead of a success that queued nothing.

use std::net::IpAddr;

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::CONTENT_ENCODING;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use scribble_domain::event::{validate, Event, EventLimits, FieldError};
use scribble_domain::privacy::stored_ip;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::field::Empty;
use tracing::{debug, Span};
use uuid::Uuid;

use crate::auth::{header_key, write_key_match};
use crate::decode::{decompress, split_events};
use crate::metrics::INVALID_EVENT;
use crate::sender::SenderIp;
use crate::{AppState, CollectorConfig, CollectorError};

/// One event of a request that failed validation: its position in the request and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// The reply to a request of which at least one event was queued.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

/// The events of one request, sorted into those to queue and those to report back.
#[derive(Debug, Default)]
pub struct Checked {
    pub valid: Vec<Event>,
    /// In the order of the events' indexes.
    pub rejected: Vec<Rejection>,
}

pub(crate) async fn events(
    State(state): State<AppState>,
    SenderIp(sender): SenderIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, CollectorError> {
    ingest(&state, sender, &headers, body, None).await
}

pub(crate) async fn identify(
    State(state): State<AppState>,
    SenderIp(sender): SenderIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, CollectorError> {
    ingest(&state, sender, &headers, body, Some("identify")).await
}

pub(crate) async fn alias(
    State(state): State<AppState>,
    SenderIp(sender): SenderIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, CollectorError> {
    ingest(&state, sender, &headers, body, Some("alias")).await
}

/// The shared body of the three endpoints; `forced_type` is the `type` every event must have.
/// Every queued event records `sender` as the project stores addresses.
#[tracing::instrument(skip_all, fields(project = Empty, forced_type = ?forced_type, accepted = Empty, rejected = Empty))]
async fn ingest(
    state: &AppState,
    sender: Option<IpAddr>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    forced_type: Option<&'static str>,
) -> Result<Json<Accepted>, CollectorError> {
    let served = state.config.projects.current();
    let key = write_key_match(&served, header_key(headers))?;
    let project = key.project;
    Span::current().record("project", project.name.as_str());
    state.admit(&key)?;
    let body = body.map_err(|rejection| body_error(&rejection, state.config.max_body_bytes))?;
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|value| String::from_utf8_lossy(value.as_bytes()));
    let received_ms = chrono::Utc::now().timestamp_millis();
    let Checked {
        mut valid,
        rejected,
    } = check_body(
        &body,
        encoding.as_deref(),
        forced_type,
        received_ms,
        &state.config,
    )?;
    Span::current().record("accepted", valid.len());
    Span::current().record("rejected", rejected.len());
    state
        .metrics
        .rejected(&project.name, INVALID_EVENT, rejected.len());
    if valid.is_empty() {
        debug!("every event rejected");
        return Err(CollectorError::AllRejected(rejected));
    }
    let ip = sender.map(|ip| stored_ip(ip, project.keep_full_ip));
    for event in &mut valid {
        event.ip = ip;
    }
    state.charge(&key, valid.len());
    state.enqueue(&project.name, &valid).await?;
    debug!("events queued");
    Ok(Json(Accepted {
        accepted: valid.len(),
        rejected,
    }))
}

/// Maps a failure to buffer the body: over the configured limit is the sender's to fix (413);
/// anything else is a broken upload.
fn body_error(rejection: &BytesRejection, limit: usize) -> CollectorError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return CollectorError::BodyTooLarge { limit };
    }
    CollectorError::UnreadableBody(rejection.body_text())
}

/// Decodes a whole body and validates each of its events. Synchronous and bounded by
/// `max_decompressed_bytes`, so it runs inline; the decoded buffers are freed before the append.
pub fn check_body(
    body: &[u8],
    encoding: Option<&str>,
    forced_type: Option<&str>,
    received_ms: i64,
    config: &CollectorConfig,
) -> Result<Checked, CollectorError> {
    let json = decompress(body, encoding, config.max_decompressed_bytes)?;
    let raws = split_events(&json)?;
    let mut checked = Checked::default();
    for (index, raw) in raws.into_iter().enumerate() {
        match check_event(raw, forced_type, received_ms, &config.limits) {
            Ok(event) => checked.valid.push(event),
            Err(FieldError { field, reason }) => checked.rejected.push(Rejection {
                index,
                field,
                reason,
            }),
        }
    }
    Ok(checked)
}

fn check_event(
    raw: &RawValue,
    forced_type: Option<&str>,
    received_ms: i64,
    limits: &EventLimits,
) -> Result<Event, FieldError> {
    // The text is valid JSON already; what can fail here is serde_json's nesting limit (128),
    // which is far past the event depth limit.
    let mut value: Value = serde_json::from_str(raw.get()).map_err(|source| {
        FieldError::new(
            "event",
            format!(
                "cannot be read ({source}); nest at most {} levels",
                limits.max_depth
            ),
        )
    })?;
    if let Some(kind) = forced_type {
        force_type(&mut value, kind)?;
    }
    validate(&value, raw.get().len(), received_ms, Uuid::new_v4, limits)
}

/// Sets `type` to `kind` where the sender left it out; refuses an event that says otherwise.
fn force_type(value: &mut Value, kind: &str) -> Result<(), FieldError> {
    let Some(object) = value.as_object_mut() else {
        // Not an object: validation rejects it with its own sentence.
        return Ok(());
    };
    match object.get("type") {
        None | Some(Value::Null) => {
            object.insert("type".to_owned(), Value::from(kind));
            Ok(())
        }
        Some(Value::String(given)) if given == kind => Ok(()),
        Some(given) => Err(FieldError::new(
            "type",
            format!("is {given} but this endpoint takes only {kind} events; drop the field or post to /v1/events"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use scribble_domain::event::Body;
    use scribble_domain::project::Projects;
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn check(body: &Value, forced_type: Option<&str>) -> Checked {
        let text = body.to_string();
        check_body(
            text.as_bytes(),
            None,
            forced_type,
            NOW,
            &CollectorConfig::new(Projects::default()),
        )
        .unwrap()
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!({ "d": inner }))
    }

    #[test]
    fn valid_events_are_kept_and_invalid_ones_named_by_index() {
        let checked = check(
            &json!([
                {"touchpoint": "site_visit", "anonymous_id": "c1"},
                {"touchpoint": "site_visit"},
                "not an object",
                {"touchpoint": "email_open", "user_id": "u1"},
            ]),
            None,
        );
        assert_eq!(checked.valid.len(), 2);
        assert!(checked.valid.iter().all(|event| event.received_ms == NOW));
        let named: Vec<_> = checked
            .rejected
            .iter()
            .map(|rejection| (rejection.index, rejection.field.as_str()))
            .collect();
        assert_eq!(named, vec![(1, "anonymous_id"), (2, "event")]);
    }

    #[test]
    fn each_event_gets_its_own_id() {
        let visit = json!({"touchpoint": "site_visit", "anonymous_id": "c1"});
        let checked = check(&json!([visit, visit]), None);
        assert_ne!(checked.valid[0].event_id, checked.valid[1].event_id);
    }

    #[test]
    fn size_limit_counts_the_events_own_text() {
        let big = json!({"touchpoint": "x", "anonymous_id": "c", "properties": {"blob": "x".repeat(40_000)}});
        let small = json!({"touchpoint": "x", "anonymous_id": "c"});
        let checked = check(&json!([small, big]), None);
        assert_eq!(checked.valid.len(), 1);
        assert_eq!(checked.rejected[0].index, 1);
        assert!(checked.rejected[0].reason.contains("byte limit"));
    }

    /// An event whose JSON text is exactly `bytes` long.
    fn event_of_size(bytes: usize) -> Value {
        let event = |blob: String| json!({"touchpoint": "x", "anonymous_id": "c", "properties": {"blob": blob}});
        let bare = event(String::new()).to_string().len();
        event("x".repeat(bytes - bare))
    }

    #[test]
    fn the_limits_are_32_kib_and_32_levels_per_event_inclusive() {
        let size = 32 * 1024;
        // The event object is level 1 and its properties level 2, so 31 levels of properties
        // make 32 in all.
        let depth =
            |levels| json!({"touchpoint": "x", "anonymous_id": "c", "properties": nested(levels)});
        let checked = check(
            &json!([
                event_of_size(size),
                event_of_size(size + 1),
                depth(31),
                depth(32)
            ]),
            None,
        );
        assert_eq!(checked.valid.len(), 2, "{:?}", checked.rejected);
        let rejected: Vec<_> = checked
            .rejected
            .iter()
            .map(|rejection| (rejection.index, rejection.reason.as_str()))
            .collect();
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        assert_eq!(rejected[0].0, 1);
        assert!(rejected[0].1.starts_with("32769 bytes"), "{rejected:?}");
        assert_eq!(rejected[1].0, 3);
        assert!(
            rejected[1].1.starts_with("nested 33 levels"),
            "{rejected:?}"
        );
    }

    #[test]
    fn too_deep_events_are_rejected_by_index_below_and_above_serde_limit() {
        for levels in [40, 300] {
            let event =
                json!({"touchpoint": "x", "anonymous_id": "c", "properties": nested(levels)});
            let checked = check(
                &json!([{"touchpoint": "x", "anonymous_id": "c"}, event]),
                None,
            );
            assert_eq!(checked.valid.len(), 1, "{levels}");
            assert_eq!(checked.rejected[0].index, 1);
            assert_eq!(checked.rejected[0].field, "event");
        }
    }

    #[test]
    fn forced_type_is_inserted_or_must_match() {
        let checked = check(
            &json!([
                {"user_id": "u1", "traits": {"persona": "buyer"}},
                {"type": "identify", "user_id": "u2"},
                {"type": "alias", "user_id": "u3", "previous_id": "u4"},
            ]),
            Some("identify"),
        );
        assert_eq!(checked.valid.len(), 2);
        assert!(checked
            .valid
            .iter()
            .all(|event| matches!(event.body, Body::Identify { .. })));
        assert_eq!(checked.rejected[0].index, 2);
        assert_eq!(checked.rejected[0].field, "type");
    }
}
