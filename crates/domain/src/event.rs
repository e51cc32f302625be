//! Touchpoint events and identity calls: the validated model and the rules that turn a sender's
//! JSON into it. Every rule failure names the field it is about, so a sender knows what to change.
//!
//! Wire shape (one JSON object per event):
//! `{"type": "touchpoint" | "identify" | "alias", "event_id": UUID?, "timestamp": RFC 3339?,
//!   "touchpoint": name, "channel": name?, "direct": bool?, "anonymous_id"?, "user_id"?,
//!   "previous_id"? (alias), "properties": {..}?, "traits": {..}? (identify)}`.
//! `type` defaults to `touchpoint` (Segment's `track` is read as `touchpoint` too); `timestamp`
//! defaults to the receive time.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Size and shape limits applied to each event.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Largest accepted event, in bytes of its JSON text.
    pub max_event_bytes: usize,
    /// Deepest accepted nesting of objects and arrays, counting the event object itself as 1.
    pub max_depth: usize,
    /// How far ahead of the receive time an event time may lie (clock skew of senders).
    pub max_future_ms: i64,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: 32 * 1024,
            max_depth: 32,
            max_future_ms: 24 * 3600 * 1000,
        }
    }
}

/// Why a value was refused (an event, or a project setting such as stages): the field and a
/// sentence about what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Who an event is about. At least one of the two is set on touchpoints and identifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Who {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Externally tagged (`{"touchpoint": {...}}`) rather than internally: serde decodes that form
// without buffering, which matters when the worker decodes every queued event.
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// One interaction with the brand or about it.
    Touchpoint {
        touchpoint: String,
        channel: String,
        direct: bool,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        properties: Map<String, Value>,
    },
    /// Ties `anonymous_id` (if any) to `user_id` and records customer traits.
    Identify {
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        traits: Map<String, Value>,
    },
    /// Declares `previous_id` and `user_id` to be the same customer.
    Alias { previous_id: String },
}

/// A validated event, as queued and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Uuid,
    /// Event time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Receive time at the collector, milliseconds since the Unix epoch.
    pub received_ms: i64,
    pub who: Who,
    pub body: Body,
    /// The sender's IP address as the collector recorded it: truncated (see
    /// [`crate::privacy`]) unless the project keeps full addresses. `None` for events that came
    /// without one (older queued events, imports of stored data, the demo set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

impl Event {
    /// The wire shape a sender would post to get this event: the inverse of [`validate`]. The IP
    /// address is left out: the collector records it, senders do not set it.
    pub fn to_wire(&self) -> Value {
        let mut wire = Map::new();
        wire.insert("event_id".into(), Value::from(self.event_id.to_string()));
        wire.insert("timestamp".into(), Value::from(format_time(self.at_ms)));
        if let Some(anonymous) = &self.who.anonymous_id {
            wire.insert("anonymous_id".into(), Value::from(anonymous.as_str()));
        }
        if let Some(user) = &self.who.user_id {
            wire.insert("user_id".into(), Value::from(user.as_str()));
        }
        match &self.body {
            Body::Touchpoint {
                touchpoint,
                channel,
                direct,
                properties,
            } => {
                wire.insert("type".into(), Value::from("touchpoint"));
                wire.insert("touchpoint".into(), Value::from(touchpoint.as_str()));
                wire.insert("channel".into(), Value::from(channel.as_str()));
                wire.insert("direct".into(), Value::from(*direct));
                wire.insert("properties".into(), Value::Object(properties.clone()));
            }
            Body::Identify { traits } => {
                wire.insert("type".into(), Value::from("identify"));
                wire.insert("traits".into(), Value::Object(traits.clone()));
            }
            Body::Alias { previous_id } => {
                wire.insert("type".into(), Value::from("alias"));
                wire.insert("previous_id".into(), Value::from(previous_id.as_str()));
            }
        }
        Value::Object(wire)
    }

    /// The identities this event names, as namespaced keys (see [`IdentityKey`]).
    pub fn identities(&self) -> Vec<IdentityKey> {
        let mut keys = Vec::with_capacity(3);
        if let Some(user) = &self.who.user_id {
            keys.push(IdentityKey::user(user));
        }
        if let Some(anonymous) = &self.who.anonymous_id {
            keys.push(IdentityKey::anonymous(anonymous));
        }
        if let Body::Alias { previous_id } = &self.body {
            keys.push(IdentityKey::user(previous_id));
        }
        keys
    }
}

/// An identity with its namespace: `u:` for user ids, `a:` for anonymous ids, so that an
/// anonymous cookie id can never collide with a customer id of the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKey(pub String);

impl IdentityKey {
    pub fn user(id: &str) -> Self {
        Self(format!("u:{id}"))
    }
    pub fn anonymous(id: &str) -> Self {
        Self(format!("a:{id}"))
    }
    /// Parses the `u:`/`a:` form, or treats bare text as a user id.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("u:") || text.starts_with("a:") {
            Self(text.to_owned())
        } else {
            Self::user(text)
        }
    }
    pub fn is_user(&self) -> bool {
        self.0.starts_with("u:")
    }
    /// The id without its namespace.
    pub fn bare(&self) -> &str {
        &self.0[2..]
    }
    /// The order in which identities name a customer: user ids before anonymous ids, then the
    /// smallest text; a customer is named by the first of its identities in this order.
    pub fn naming_order(&self) -> (bool, &str) {
        naming_order(&self.0)
    }

    /// The start of [`naming_order`](Self::naming_order) as a number ordered the same way where
    /// it differs: see [`naming_prefix`].
    pub fn naming_prefix(&self) -> u64 {
        naming_prefix(&self.0)
    }
}

/// [`IdentityKey::naming_order`] of an identity key's text (`u:` or `a:` and the id), for
/// callers that hold the text borrowed.
pub fn naming_order(key: &str) -> (bool, &str) {
    (!key.starts_with("u:"), key.get(2..).unwrap_or_default())
}

/// [`IdentityKey::naming_prefix`] of an identity key's text: the anonymous flag in the top bit,
/// then the first seven bytes of the bare id, zero-padded (a shorter id sorts first, as it does
/// as text). Equal prefixes say nothing. Sorting a million customers by this first, and by name
/// only on a tie, keeps most comparisons off the heap.
pub fn naming_prefix(key: &str) -> u64 {
    let (anonymous, bare) = naming_order(key);
    let mut bytes = [0u8; 8];
    bytes[0] = u8::from(anonymous) << 7;
    for (slot, byte) in bytes[1..].iter_mut().zip(bare.bytes()) {
        *slot = byte;
    }
    u64::from_be_bytes(bytes)
}

/// Formats epoch milliseconds as RFC 3339 (UTC, milliseconds).
pub fn format_time(at_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| at_ms.to_string())
}

/// Parses RFC 3339 into epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The channel a well-known touchpoint belongs to when the sender does not say.
pub fn default_channel(touchpoint: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("site_", "web"),
        ("page_", "web"),
        ("email_", "email"),
        ("newsletter_", "email"),
        ("chat_", "chat"),
        ("form_", "form"),
        ("ad_", "ads"),
        ("social_", "social"),
        ("review_", "review"),
        ("support_", "support"),
        ("store_", "store"),
        ("call_", "phone"),
        ("phone_", "phone"),
        ("purchase", "web"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| touchpoint.starts_with(prefix))
        .map_or("other", |(_, channel)| channel)
}

/// Whether touchpoints on `channel` are brand-controlled when the sender does not say: reviews,
/// social posts and word of mouth are indirect.
pub fn default_direct(channel: &str) -> bool {
    !matches!(channel, "review" | "social" | "word_of_mouth" | "referral")
}

const MAX_NAME_CHARS: usize = 64;
const MAX_ID_CHARS: usize = 256;

/// Validates one event. `raw_len` is the size of its JSON text; `received_ms` the receive time;
/// `fallback_id` makes the id to assign when the sender sets none (called only then: drawing a
/// random id costs a few percent of a collector's time). Pure: the caller supplies the clock
/// and the randomness.
pub fn validate(
    raw: &Value,
    raw_len: usize,
    received_ms: i64,
    fallback_id: impl FnOnce() -> Uuid,
    limits: &EventLimits,
) -> Result<Event, FieldError> {
    if raw_len > limits.max_event_bytes {
        return Err(FieldError::new(
            "event",
            format!("{raw_len} bytes is over the {} byte limit per event; move bulky data out of properties", limits.max_event_bytes),
        ));
    }
    let depth = nesting_depth(raw);
    if depth > limits.max_depth {
        return Err(FieldError::new(
            "event",
            format!(
                "nested {depth} levels deep, over the limit of {}; flatten properties",
                limits.max_depth
            ),
        ));
    }
    let Some(object) = raw.as_object() else {
        return Err(FieldError::new("event", "must be a JSON object"));
    };
    let kind = optional_str(object, "type")?.unwrap_or("touchpoint");
    let event_id = match object.get("event_id") {
        None | Some(Value::Null) => fallback_id(),
        Some(Value::String(text)) => Uuid::parse_str(text)
            .map_err(|_| FieldError::new("event_id", "not a UUID; omit it to have one assigned"))?,
        Some(_) => return Err(FieldError::new("event_id", "must be a UUID string")),
    };
    let at_ms = match object.get("timestamp") {
        None | Some(Value::Null) => received_ms,
        Some(Value::String(text)) => parse_time(text).ok_or_else(|| {
            FieldError::new("timestamp", "not RFC 3339; send e.g. 2026-11-24T09:30:00Z")
        })?,
        Some(_) => return Err(FieldError::new("timestamp", "must be an RFC 3339 string")),
    };
    if at_ms > received_ms + limits.max_future_ms {
        let hours = limits.max_future_ms as f64 / 3_600_000.0;
        return Err(FieldError::new(
            "timestamp",
            format!("more than {hours} hours in the future; check the sender's clock"),
        ));
    }
    let who = Who {
        anonymous_id: identity(object, "anonymous_id")?,
        user_id: identity(object, "user_id")?,
    };
    let body = match kind {
        "touchpoint" | "track" => {
            let touchpoint = name(object, "touchpoint")?.ok_or_else(|| {
                FieldError::new(
                    "touchpoint",
                    "required: the name of the interaction, e.g. site_visit",
                )
            })?;
            let channel =
                name(object, "channel")?.unwrap_or_else(|| default_channel(&touchpoint).to_owned());
            let direct = match object.get("direct") {
                None | Some(Value::Null) => default_direct(&channel),
                Some(Value::Bool(direct)) => *direct,
                Some(_) => return Err(FieldError::new("direct", "must be true or false")),
            };
            require_someone(&who)?;
            Body::Touchpoint {
                touchpoint,
                channel,
                direct,
                properties: json_object(object, "properties")?,
            }
        }
        "identify" => {
            if who.user_id.is_none() {
                return Err(FieldError::new(
                    "user_id",
                    "required on identify: the known customer id",
                ));
            }
            Body::Identify {
                traits: json_object(object, "traits")?,
            }
        }
        "alias" => {
            if who.user_id.is_none() {
                return Err(FieldError::new(
                    "user_id",
                    "required on alias: the id to merge into",
                ));
            }
            let previous_id = identity(object, "previous_id")?.ok_or_else(|| {
                FieldError::new(
                    "previous_id",
                    "required on alias: the other id of the same customer",
                )
            })?;
            Body::Alias { previous_id }
        }
        other => {
            return Err(FieldError::new(
                "type",
                format!("unknown type {other:?}; use touchpoint, identify or alias"),
            ))
        }
    };
    Ok(Event {
        event_id,
        at_ms,
        received_ms,
        who,
        body,
        ip: None,
    })
}

fn require_someone(who: &Who) -> Result<(), FieldError> {
    if who.anonymous_id.is_none() && who.user_id.is_none() {
        return Err(FieldError::new(
            "anonymous_id",
            "set anonymous_id or user_id (or both): who the event is about",
        ));
    }
    Ok(())
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

fn name(object: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    let Some(text) = optional_str(object, field)? else {
        return Ok(None);
    };
    let valid = !text.is_empty()
        && text.chars().count() <= MAX_NAME_CHARS
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' '));
    if !valid {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} letters, digits, spaces or _ - . :"),
        ));
    }
    Ok(Some(text.to_owned()))
}

fn identity(object: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    let text = match object.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => return Err(FieldError::new(field, "must be a string or a number")),
    };
    if text.is_empty() || text.chars().count() > MAX_ID_CHARS || text.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_ID_CHARS} printable characters"),
        ));
    }
    Ok(Some(text))
}

fn json_object(object: &Map<String, Value>, field: &str) -> Result<Map<String, Value>, FieldError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(FieldError::new(field, "must be a JSON object")),
    }
}

/// Nesting depth of a JSON value: scalars are 0, `{}` is 1, `{"a": {}}` is 2.
fn nesting_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The text a scalar property is compared by in filters: strings as they are, numbers and
/// booleans as JSON. Objects, arrays and null have none.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The top-level scalar properties as `(key, text)` pairs, text as [`scalar_text`] gives it:
/// what property filters match on. Properties that are objects, arrays or null are left out.
pub fn scalar_properties(properties: &Map<String, Value>) -> impl Iterator<Item = (&str, String)> {
    properties
        .iter()
        .filter_map(|(key, value)| Some((key.as_str(), scalar_text(value)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000;

    fn check(raw: Value) -> Result<Event, FieldError> {
        let len = raw.to_string().len();
        validate(&raw, len, NOW, Uuid::nil, &EventLimits::default())
    }

    #[test]
    fn an_id_is_drawn_only_for_events_without_one() {
        let id = Uuid::from_u128(7);
        let raw = json!({"touchpoint": "site_visit", "anonymous_id": "c1", "event_id": id});
        let len = raw.to_string().len();
        let never = || -> Uuid { panic!("the event has an id; none may be drawn") };
        let event = validate(&raw, len, NOW, never, &EventLimits::default()).unwrap();
        assert_eq!(event.event_id, id);
    }

    #[test]
    fn touchpoint_gets_defaults_for_id_time_channel_and_direct() {
        let event = check(json!({"touchpoint": "email_open", "anonymous_id": "c1"})).unwrap();
        assert_eq!(event.event_id, Uuid::nil());
        assert_eq!(event.at_ms, NOW);
        assert_eq!(
            event.body,
            Body::Touchpoint {
                touchpoint: "email_open".into(),
                channel: "email".into(),
                direct: true,
                properties: Map::new()
            }
        );
    }

    #[test]
    fn review_channel_is_indirect_by_default() {
        let event = check(json!({"touchpoint": "review_read", "user_id": 42})).unwrap();
        assert!(matches!(event.body, Body::Touchpoint { direct: false, .. }));
        assert_eq!(event.who.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases = [
            (json!([1]), "event"),
            (json!({"touchpoint": "x"}), "anonymous_id"),
            (json!({"anonymous_id": "a"}), "touchpoint"),
            (
                json!({"touchpoint": "x", "anonymous_id": "a", "event_id": "nope"}),
                "event_id",
            ),
            (
                json!({"touchpoint": "x", "anonymous_id": "a", "timestamp": "yesterday"}),
                "timestamp",
            ),
            (
                json!({"touchpoint": "x", "anonymous_id": "a", "timestamp": "2099-01-01T00:00:00Z"}),
                "timestamp",
            ),
            (
                json!({"touchpoint": "x\ny", "anonymous_id": "a"}),
                "touchpoint",
            ),
            (
                json!({"touchpoint": "x", "channel": "", "anonymous_id": "a"}),
                "channel",
            ),
            (
                json!({"touchpoint": "x", "anonymous_id": "a", "direct": "yes"}),
                "direct",
            ),
            (
                json!({"touchpoint": "x", "anonymous_id": "a", "properties": [1]}),
                "properties",
            ),
            (
                json!({"touchpoint": "x", "anonymous_id": ""}),
                "anonymous_id",
            ),
            (json!({"type": "identify", "anonymous_id": "a"}), "user_id"),
            (json!({"type": "alias", "user_id": "u"}), "previous_id"),
            (json!({"type": "page", "user_id": "u"}), "type"),
        ];
        for (raw, field) in cases {
            let error = check(raw.clone()).expect_err(&raw.to_string());
            assert_eq!(error.field, field, "{raw}: {error}");
        }
    }

    #[test]
    fn size_and_depth_limits_reject_the_event() {
        let big = json!({"touchpoint": "x", "anonymous_id": "a", "properties": {"blob": "x".repeat(40_000)}});
        assert_eq!(check(big).unwrap_err().field, "event");
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "d": deep });
        }
        let nested = json!({"touchpoint": "x", "anonymous_id": "a", "properties": deep});
        assert!(check(nested).unwrap_err().reason.contains("nested"));
    }

    #[test]
    fn stored_form_round_trips() {
        let event = check(json!({
            "event_id": "6f1d3c2e-8f8a-4a57-9d55-1f2a0b1c2d3e", "timestamp": "2026-11-01T10:00:00Z",
            "touchpoint": "purchase", "user_id": "u1", "anonymous_id": "a1", "properties": {"value": 99}
        }))
        .unwrap();
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        let wire = event.to_wire();
        let len = wire.to_string().len();
        assert_eq!(
            validate(&wire, len, NOW, Uuid::max, &EventLimits::default()),
            Ok(event.clone())
        );
        assert_eq!(format_time(event.at_ms), "2026-11-01T10:00:00.000Z");
    }

    #[test]
    fn the_ip_address_is_stored_when_known_and_optional_in_older_events() {
        let mut event = check(
            json!({"touchpoint": "site_visit", "anonymous_id": "a1", "event_id": Uuid::nil()}),
        )
        .unwrap();
        let without = serde_json::to_string(&event).unwrap();
        assert!(!without.contains("ip"), "no field when unknown: {without}");
        assert_eq!(serde_json::from_str::<Event>(&without).unwrap(), event);
        event.ip = Some("203.0.113.0".parse().unwrap());
        let with = serde_json::to_string(&event).unwrap();
        assert!(with.contains(r#""ip":"203.0.113.0""#), "{with}");
        assert_eq!(serde_json::from_str::<Event>(&with).unwrap(), event);
        assert!(
            event.to_wire().get("ip").is_none(),
            "not the sender's to set"
        );
    }

    #[test]
    fn segment_track_is_a_touchpoint() {
        let tracked =
            check(json!({"type": "track", "touchpoint": "site_visit", "anonymous_id": "a"}));
        let plain = check(json!({"touchpoint": "site_visit", "anonymous_id": "a"}));
        assert_eq!(tracked, plain);
    }

    #[test]
    fn future_limit_is_the_configured_one() {
        let limits = EventLimits {
            max_future_ms: 2 * 3_600_000,
            ..EventLimits::default()
        };
        let ahead = |hours: i64| {
            let raw = json!({"touchpoint": "x", "anonymous_id": "a", "timestamp": format_time(NOW + hours * 3_600_000)});
            validate(&raw, raw.to_string().len(), NOW, Uuid::nil, &limits)
        };
        assert!(ahead(2).is_ok(), "the limit itself is allowed");
        let error = ahead(3).unwrap_err();
        assert_eq!(error.field, "timestamp");
        assert!(error.reason.starts_with("more than 2 hours"), "{error}");
        let default = check(
            json!({"touchpoint": "x", "anonymous_id": "a", "timestamp": "2099-01-01T00:00:00Z"}),
        );
        assert!(default
            .unwrap_err()
            .reason
            .starts_with("more than 24 hours"));
    }

    #[test]
    fn scalar_properties_are_the_filterable_ones_as_text() {
        let properties = json!({"campaign": "fall", "value": 12.5, "paid": true, "items": [1], "meta": {"a": 1}, "none": null});
        let mut pairs: Vec<(&str, String)> =
            scalar_properties(properties.as_object().unwrap()).collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [("campaign", "fall"), ("paid", "true"), ("value", "12.5")]
                .map(|(key, text)| (key, text.to_owned()))
        );
    }

    #[test]
    fn alias_names_both_identities() {
        let event =
            check(json!({"type": "alias", "user_id": "new", "previous_id": "old"})).unwrap();
        assert_eq!(
            event.identities(),
            vec![IdentityKey::user("new"), IdentityKey::user("old")]
        );
    }
}
