//! Projects: the tenants of one Scribble. Each has write keys (ingest only), read keys (reports
//! only) and the hosts its click-tracking links may redirect to.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::event::FieldError;

/// One project's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub write_keys: Vec<String>,
    pub read_keys: Vec<String>,
    /// Hosts that `/v1/click` may redirect to, ignoring case: exact, or `*.example.com` for
    /// `example.com` and all its subdomains.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
}

impl Project {
    /// Whether a click link may send a browser to `host`.
    pub fn allows_redirect_to(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.redirect_hosts.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            match allowed.strip_prefix("*.") {
                Some(domain) => {
                    host == domain
                        || host
                            .strip_suffix(domain)
                            .is_some_and(|subdomain| subdomain.ends_with('.'))
                }
                None => host == allowed,
            }
        })
    }
}

/// All projects, looked up by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projects {
    pub projects: Vec<Project>,
}

impl Projects {
    /// Checks that the set can be served: at least one project, unique non-empty names, and
    /// every key non-empty and used once (a key shared by two projects or two roles would make
    /// it ambiguous whose data it reads or writes).
    pub fn check(&self) -> Result<(), FieldError> {
        if self.projects.is_empty() {
            return Err(FieldError::new("projects", "list at least one project"));
        }
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for (index, project) in self.projects.iter().enumerate() {
            if project.name.trim().is_empty() || !names.insert(project.name.as_str()) {
                return Err(FieldError::new(
                    format!("projects[{index}].name"),
                    "must be non-empty and unique",
                ));
            }
            if project.write_keys.is_empty() || project.read_keys.is_empty() {
                return Err(FieldError::new(
                    format!("projects[{index}]"),
                    "needs at least one write key and one read key",
                ));
            }
            for (role, list) in [
                ("write_keys", &project.write_keys),
                ("read_keys", &project.read_keys),
            ] {
                for (position, key) in list.iter().enumerate() {
                    if key.len() < 8 || !keys.insert(key.as_str()) {
                        return Err(FieldError::new(
                            format!("projects[{index}].{role}[{position}]"),
                            "keys must be at least 8 characters and used only once across all projects and roles",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The project `key` belongs to and what it opens; `None` for a key no project has. Both
    /// the collector and the query API ask this, so each can tell a key of the wrong kind
    /// (403, and which key to use) from an unknown one (401).
    pub fn by_key(&self, key: &str) -> Option<(&Project, KeyKind)> {
        self.projects.iter().find_map(|project| {
            if project.write_keys.iter().any(|candidate| candidate == key) {
                Some((project, KeyKind::Write))
            } else if project.read_keys.iter().any(|candidate| candidate == key) {
                Some((project, KeyKind::Read))
            } else {
                None
            }
        })
    }
}

/// What a key opens: the collector (write) or the reports (read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Write,
    Read,
}

/// The key of an `Authorization` header value `Bearer <key>` (scheme in any case, spaces
/// around the key ignored); `None` for any other scheme.
pub fn bearer_key(authorization: &str) -> Option<&str> {
    let (scheme, key) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Project {
        Project {
            name: "shop".into(),
            write_keys: vec!["w1".into()],
            read_keys: vec!["r1".into()],
            redirect_hosts: vec!["shop.example".into(), "*.news.example".into()],
        }
    }

    #[test]
    fn keys_find_their_project_and_only_for_their_role() {
        let projects = Projects {
            projects: vec![shop()],
        };
        let found = |key| {
            projects
                .by_key(key)
                .map(|(p, kind)| (p.name.as_str(), kind))
        };
        assert_eq!(found("w1"), Some(("shop", KeyKind::Write)));
        assert_eq!(found("r1"), Some(("shop", KeyKind::Read)));
        assert_eq!(found("nope"), None);
    }

    #[test]
    fn bearer_keys_are_read_whatever_the_scheme_case() {
        assert_eq!(bearer_key("Bearer  w1 "), Some("w1"));
        assert_eq!(bearer_key("bearer w3"), Some("w3"));
        assert_eq!(bearer_key("Basic dXNlcg=="), None);
        assert_eq!(bearer_key("Bearer"), None);
    }

    #[test]
    fn project_sets_with_ambiguous_keys_or_names_are_refused() {
        let valid = || Projects {
            projects: vec![Project {
                write_keys: vec!["write-key-1".into()],
                read_keys: vec!["read-key-1".into()],
                ..shop()
            }],
        };
        assert_eq!(valid().check(), Ok(()));
        assert_eq!(Projects::default().check().unwrap_err().field, "projects");
        let mut shared = valid();
        shared.projects[0].read_keys = vec!["write-key-1".into()];
        assert_eq!(
            shared.check().unwrap_err().field,
            "projects[0].read_keys[0]"
        );
        let mut twins = valid();
        twins.projects.push(Project {
            write_keys: vec!["write-key-2".into()],
            read_keys: vec!["read-key-2".into()],
            ..shop()
        });
        assert_eq!(twins.check().unwrap_err().field, "projects[1].name");
        let mut short = valid();
        short.projects[0].write_keys = vec!["w".into()];
        assert_eq!(
            short.check().unwrap_err().field,
            "projects[0].write_keys[0]"
        );
    }

    #[test]
    fn redirects_only_to_listed_hosts() {
        let project = shop();
        assert!(project.allows_redirect_to("shop.example"));
        assert!(project.allows_redirect_to("SHOP.example"));
        assert!(project.allows_redirect_to("mail.news.example"));
        assert!(project.allows_redirect_to("news.example"));
        assert!(!project.allows_redirect_to("evil.example"));
        assert!(!project.allows_redirect_to("shop.example.evil.com"));
        assert!(!project.allows_redirect_to("evilnews.example"));
        let shouting = Project {
            redirect_hosts: vec!["*.News.Example".into()],
            ..shop()
        };
        assert!(shouting.allows_redirect_to("mail.news.example"));
        assert!(shouting.allows_redirect_to("NEWS.example"));
    }
}
