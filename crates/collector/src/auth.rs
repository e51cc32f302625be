//! Who is sending: the write key a request carries, and the project it opens.
//!
//! The key travels in a header (`Authorization: Bearer`, `X-Write-Key`), or, for browsers, in the
//! `key` query parameter: `navigator.sendBeacon` cannot set headers, and a cross-origin request
//! with a custom header would need a preflight that a closing page has no time for.

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use scribble_domain::project::{bearer_key, KeyKind, KeyMatch, ServedProjects};

use crate::CollectorError;

/// The key from `Authorization: Bearer <key>`, or else from `X-Write-Key: <key>`.
pub fn header_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_key);
    bearer.or_else(|| {
        headers
            .get("x-write-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    })
}

/// Middleware for the event endpoints: a request without a key header whose query string has
/// `key=<write key>` gets that key as `X-Write-Key`, so the handlers read one place. A key header,
/// when present, wins; an empty or undecodable `key` is left out (and refused as a missing key).
pub async fn query_key(mut request: Request, next: Next) -> Response {
    if header_key(request.headers()).is_none() {
        let key = request.uri().query().and_then(key_in_query);
        if let Some(value) = key.and_then(|key| HeaderValue::from_str(&key).ok()) {
            request.headers_mut().insert("x-write-key", value);
        }
    }
    next.run(request).await
}

/// The first `key` parameter of a query string, percent-decoded; `None` when absent or empty.
fn key_in_query(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.trim().to_owned())
        .filter(|key| !key.is_empty())
}

/// The project whose write key `key` is, with the key's id. A read key is told apart from an
/// unknown or revoked one, so a sender who pasted the wrong key learns which one to use.
pub fn write_key_match<'a>(
    projects: &'a ServedProjects,
    key: Option<&str>,
) -> Result<KeyMatch<'a>, CollectorError> {
    let Some(key) = key.filter(|key| !key.is_empty()) else {
        return Err(CollectorError::Unauthorized);
    };
    match projects.by_key(key) {
        Some(found) if found.kind == KeyKind::Write => Ok(found),
        Some(_) => Err(CollectorError::WrongKeyKind),
        None => Err(CollectorError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use scribble_domain::project::{Project, Projects};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn bearer_wins_over_x_write_key() {
        let both = headers(&[("authorization", "Bearer  w1 "), ("x-write-key", "w2")]);
        assert_eq!(header_key(&both), Some("w1"));
        assert_eq!(header_key(&headers(&[("x-write-key", "w2")])), Some("w2"));
        assert_eq!(
            header_key(&headers(&[("authorization", "bearer w3")])),
            Some("w3")
        );
    }

    #[test]
    fn other_schemes_are_not_keys() {
        assert_eq!(
            header_key(&headers(&[("authorization", "Basic dzE6")])),
            None
        );
        assert_eq!(header_key(&HeaderMap::new()), None);
    }

    #[test]
    fn query_key_is_the_first_decoded_key_parameter() {
        assert_eq!(key_in_query("a=1&key=w%2B1&key=w2").as_deref(), Some("w+1"));
        assert_eq!(key_in_query("key=+w1+").as_deref(), Some("w1"));
        assert_eq!(key_in_query("key=&a=1"), None);
        assert_eq!(key_in_query("keys=w1"), None);
    }

    #[test]
    fn keys_resolve_by_kind() {
        let projects = ServedProjects::new(Projects {
            projects: vec![Project {
                name: "shop".into(),
                write_keys: vec!["w1".into()],
                read_keys: vec!["r1".into()],
                ..Project::default()
            }],
        });
        let found = write_key_match(&projects, Some("w1")).unwrap();
        assert_eq!(found.project.name, "shop");
        assert_eq!(found.key_id, "write_keys[0]");
        assert!(matches!(
            write_key_match(&projects, Some("r1")),
            Err(CollectorError::WrongKeyKind)
        ));
        for unknown in [Some("zz"), Some(""), None] {
            assert!(matches!(
                write_key_match(&projects, unknown),
                Err(CollectorError::Unauthorized)
            ));
        }
    }
}
