//! Email tracking links: `GET /v1/pixel.gif` records an open, `GET /v1/click` records a click and
//! sends the browser on. Both take everything in the query string: `key` (a write key),
//! `touchpoint` (defaults to `email_open` / `email_click`), `user_id` and/or `anonymous_id`; every
//! other parameter (`campaign`, `url`, utm fields, ...) becomes a string property.
//!
//! The people who load these are email recipients, not the sender, so neither endpoint fails on
//! them over a recording problem: the pixel is always served, and a click to a permitted target
//! is always redirected; what could not be recorded is logged as a warning.

use std::net::IpAddr;

use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scribble_domain::event::validate;
use scribble_domain::privacy::stored_ip;
use scribble_domain::project::{KeyMatch, Project};
use scribble_telemetry::ErrorCode;
use serde_json::{json, Map, Value};
use tracing::field::Empty;
use tracing::{warn, Span};
use url::Url;
use uuid::Uuid;

use crate::auth::write_key_match;
use crate::metrics::INVALID_EVENT;
use crate::sender::SenderIp;
use crate::{AppState, CollectorError};

/// A 1x1 transparent GIF89a.
const TRANSPARENT_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Query parameters that say who and what; all others become properties.
const EVENT_PARAMS: [&str; 4] = ["key", "touchpoint", "user_id", "anonymous_id"];

/// Records an email open; always answers with the pixel.
#[tracing::instrument(skip_all, fields(project = Empty))]
pub(crate) async fn pixel(
    State(state): State<AppState>,
    SenderIp(sender): SenderIp,
    RawQuery(query): RawQuery,
) -> Response {
    let params = query_params(query.as_deref());
    let recorded = async {
        let served = state.config.projects.current();
        let key = write_key_match(&served, param(&params, "key"))?;
        Span::current().record("project", key.project.name.as_str());
        record(&state, &key, sender, &params, "email_open").await
    }
    .await;
    let mut response = (
        [(CONTENT_TYPE, "image/gif"), (CACHE_CONTROL, "no-store")],
        TRANSPARENT_GIF.as_slice(),
    )
        .into_response();
    if let Err(problem) = recorded {
        warn!(code = problem.code(), error = %problem, "email open not recorded");
        response.extensions_mut().insert(ErrorCode(problem.code()));
    }
    response
}

/// Records an email click and redirects (302) to `url` if the project allows its host.
#[tracing::instrument(skip_all, fields(project = Empty))]
pub(crate) async fn click(
    State(state): State<AppState>,
    SenderIp(sender): SenderIp,
    RawQuery(query): RawQuery,
) -> Result<Response, CollectorError> {
    let params = query_params(query.as_deref());
    let served = state.config.projects.current();
    let key = write_key_match(&served, param(&params, "key"))?;
    Span::current().record("project", key.project.name.as_str());
    let target = redirect_target(key.project, param(&params, "url"))?;
    let recorded = record(&state, &key, sender, &params, "email_click").await;
    let mut response = (
        StatusCode::FOUND,
        [
            (LOCATION, String::from(target)),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response();
    if let Err(problem) = recorded {
        warn!(code = problem.code(), error = %problem, "email click not recorded; redirecting anyway");
        response.extensions_mut().insert(ErrorCode(problem.code()));
    }
    Ok(response)
}

/// Validates the event the query describes and queues it, within the key's rate limit, with
/// `sender`'s address as the project stores addresses.
async fn record(
    state: &AppState,
    key: &KeyMatch<'_>,
    sender: Option<IpAddr>,
    params: &[(String, String)],
    default_touchpoint: &str,
) -> Result<(), CollectorError> {
    let raw = email_event(params, default_touchpoint);
    let received_ms = chrono::Utc::now().timestamp_millis();
    let mut event = validate(
        &raw,
        raw.to_string().len(),
        received_ms,
        Uuid::new_v4,
        &state.config.limits,
    )
    .map_err(|problem| {
        state.metrics.rejected(&key.project.name, INVALID_EVENT, 1);
        CollectorError::InvalidEvent(problem)
    })?;
    event.ip = sender.map(|ip| stored_ip(ip, key.project.keep_full_ip));
    state.admit(key)?;
    state.charge(key, 1);
    state.enqueue(&key.project.name, &[event]).await
}

/// Decodes a query string leniently: malformed escapes become replacement characters, so a
/// mangled link still gets its pixel.
fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The first value of parameter `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(candidate, _)| candidate == name)
        .map(|(_, value)| value.as_str())
}

/// The wire-shaped event (see `scribble_domain::event`) a tracking link describes.
fn email_event(params: &[(String, String)], default_touchpoint: &str) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .filter(|(name, _)| !EVENT_PARAMS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
        .collect();
    let mut event = json!({
        "touchpoint": param(params, "touchpoint").unwrap_or(default_touchpoint),
        "channel": "email",
        "properties": properties,
    });
    for field in ["user_id", "anonymous_id"] {
        if let Some(id) = param(params, field) {
            event[field] = Value::from(id);
        }
    }
    event
}

/// The URL a click may be sent on to: absolute, http or https, on a host the project lists.
/// The returned URL is the parsed one, re-serialized, so the browser goes exactly where was
/// checked.
fn redirect_target(project: &Project, url: Option<&str>) -> Result<Url, CollectorError> {
    let Some(text) = url else {
        return Err(CollectorError::RedirectNotAllowed(
            "add url=<http or https address> to the click link".to_owned(),
        ));
    };
    let target = Url::parse(text).map_err(|source| {
        CollectorError::RedirectNotAllowed(format!(
            "url is not an absolute address ({source}); link to an http or https address"
        ))
    })?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err(CollectorError::RedirectNotAllowed(format!(
            "url scheme {:?} is not allowed; link to an http or https address",
            target.scheme()
        )));
    }
    let host = target.host_str().unwrap_or_default();
    if !project.allows_redirect_to(host) {
        return Err(CollectorError::RedirectNotAllowed(format!(
            "host {host:?} is not among the redirect hosts of project {:?}; add it there or link elsewhere",
            project.name
        )));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Project {
        Project {
            name: "shop".into(),
            write_keys: vec!["w1".into()],
            read_keys: vec![],
            redirect_hosts: vec!["shop.example".into(), "*.news.example".into()],
            ..Project::default()
        }
    }

    #[test]
    fn gif_has_the_gif89a_header_and_trailer() {
        assert!(TRANSPARENT_GIF.starts_with(b"GIF89a"));
        assert_eq!(TRANSPARENT_GIF.last(), Some(&0x3b));
    }

    #[test]
    fn query_becomes_an_email_event_with_string_properties() {
        let params = query_params(Some(
            "key=w1&user_id=u%201&campaign=spring&utm_source=nl&bad=%ZZ",
        ));
        assert_eq!(
            email_event(&params, "email_open"),
            json!({
                "touchpoint": "email_open", "channel": "email", "user_id": "u 1",
                "properties": {"campaign": "spring", "utm_source": "nl", "bad": "%ZZ"},
            })
        );
    }

    #[test]
    fn touchpoint_parameter_overrides_the_default() {
        let params = query_params(Some("touchpoint=newsletter_open&anonymous_id=a1"));
        let event = email_event(&params, "email_open");
        assert_eq!(event["touchpoint"], "newsletter_open");
        assert_eq!(event["anonymous_id"], "a1");
    }

    #[test]
    fn redirects_only_to_listed_http_hosts() {
        let project = shop();
        let allowed = redirect_target(&project, Some("https://mail.news.example/a?b=1")).unwrap();
        assert_eq!(allowed.as_str(), "https://mail.news.example/a?b=1");
        for refused in [
            None,
            Some("/relative"),
            Some("javascript:alert(1)//shop.example"),
            Some("ftp://shop.example/file"),
            Some("https://evil.example/"),
            Some("https://shop.example@evil.example/"),
            Some("https://evil.example\\@shop.example/"),
            Some("https://shop.example.evil.example/"),
        ] {
            assert!(
                matches!(
                    redirect_target(&project, refused),
                    Err(CollectorError::RedirectNotAllowed(_))
                ),
                "{refused:?}"
            );
        }
    }
}
