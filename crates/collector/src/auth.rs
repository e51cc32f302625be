//! Who is sending: the write key a request carries, and the project it opens.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use scribble_domain::project::{bearer_key, KeyKind, Project, Projects};

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

/// The project whose write key `key` is. A read key is told apart from an unknown one, so a
/// sender who pasted the wrong key learns which one to use.
pub fn project_for<'a>(
    projects: &'a Projects,
    key: Option<&str>,
) -> Result<&'a Project, CollectorError> {
    let Some(key) = key.filter(|key| !key.is_empty()) else {
        return Err(CollectorError::Unauthorized);
    };
    match projects.by_key(key) {
        Some((project, KeyKind::Write)) => Ok(project),
        Some((_, KeyKind::Read)) => Err(CollectorError::WrongKeyKind),
        None => Err(CollectorError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

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
    fn keys_resolve_by_kind() {
        let projects = Projects {
            projects: vec![Project {
                name: "shop".into(),
                write_keys: vec!["w1".into()],
                read_keys: vec!["r1".into()],
                redirect_hosts: vec![],
            }],
        };
        assert_eq!(project_for(&projects, Some("w1")).unwrap().name, "shop");
        assert!(matches!(
            project_for(&projects, Some("r1")),
            Err(CollectorError::WrongKeyKind)
        ));
        assert!(matches!(
            project_for(&projects, Some("zz")),
            Err(CollectorError::Unauthorized)
        ));
        assert!(matches!(
            project_for(&projects, Some("")),
            Err(CollectorError::Unauthorized)
        ));
        assert!(matches!(
            project_for(&projects, None),
            Err(CollectorError::Unauthorized)
        ));
    }
}
