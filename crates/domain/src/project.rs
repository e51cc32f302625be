//! Projects: the tenants of one Scribble. Each has write keys (ingest only), read keys (reports
//! only) and the hosts its click-tracking links may redirect to.

use serde::{Deserialize, Serialize};

/// One project's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub write_keys: Vec<String>,
    pub read_keys: Vec<String>,
    /// Hosts (exact, or `*.example.com` for subdomains) that `/v1/click` may redirect to.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
}

impl Project {
    /// Whether a click link may send a browser to `host`.
    pub fn allows_redirect_to(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.redirect_hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
                None => host == allowed.to_ascii_lowercase(),
            })
    }
}

/// All projects, looked up by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projects {
    pub projects: Vec<Project>,
}

impl Projects {
    pub fn by_write_key(&self, key: &str) -> Option<&Project> {
        self.projects
            .iter()
            .find(|project| project.write_keys.iter().any(|candidate| candidate == key))
    }

    pub fn by_read_key(&self, key: &str) -> Option<&Project> {
        self.projects
            .iter()
            .find(|project| project.read_keys.iter().any(|candidate| candidate == key))
    }

    pub fn by_name(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|project| project.name == name)
    }
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
        assert_eq!(
            projects.by_write_key("w1").map(|p| p.name.as_str()),
            Some("shop")
        );
        assert!(projects.by_read_key("w1").is_none());
        assert!(projects.by_write_key("r1").is_none());
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
    }
}
