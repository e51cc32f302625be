//! Projects: the tenants of one Scribble. Each has write keys (ingest only), read keys (reports
//! only), the hosts its click-tracking links may redirect to, and its privacy and rate settings.
//!
//! Keys issued by `scribble keys create` are stored as their SHA-256 only ([`IssuedKey`]); keys
//! given in plain text (the `--write-key` and `--read-key` flags) are hashed when the projects are
//! loaded, so a key is always looked up by its hash ([`ServedProjects`]). A process holds its
//! projects in [`LiveProjects`], which a reload replaces at once for every request that follows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::FieldError;

/// One project's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    /// Write keys in plain text (the flags, or a hand-written file); hashed on load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_keys: Vec<String>,
    /// Read keys in plain text; hashed on load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_keys: Vec<String>,
    /// Keys issued by `scribble keys create`, stored hashed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<IssuedKey>,
    /// Hosts that `/v1/click` may redirect to, ignoring case: exact, or `*.example.com` for
    /// `example.com` and all its subdomains.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
    /// Keep senders' IP addresses whole. By default the collector truncates them (IPv4 to /24,
    /// IPv6 to /48) before an event is queued.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_full_ip: bool,
    /// Days an event is kept after its time; `None` keeps events for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Events per second each write key of the project may send; `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A key issued by `scribble keys create`: only its hash is kept, and the key itself is shown
/// once, when it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    /// How lists and logs name the key: its kind prefix and first characters, never enough to use it.
    pub id: String,
    pub kind: KeyKind,
    /// Lower-case hex SHA-256 of the key ([`key_hash`]).
    pub sha256: String,
    /// When the key was made, RFC 3339.
    pub created: String,
    /// When the key was revoked, RFC 3339; a revoked key opens nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

/// A token bucket: `events_per_second` refill, up to `burst` events at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub events_per_second: u32,
    pub burst: u32,
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

    /// Every key of the project as (how it is named, kind, hash), revoked ones left out. A plain
    /// key is named by its kind and position, e.g. `write_keys[0]`.
    fn active_keys(&self) -> impl Iterator<Item = (String, KeyKind, String)> + '_ {
        let plain = |role: &'static str, kind: KeyKind, list: &'_ [String]| {
            list.iter()
                .enumerate()
                .map(move |(position, key)| (format!("{role}[{position}]"), kind, key_hash(key)))
                .collect::<Vec<_>>()
        };
        plain("write_keys", KeyKind::Write, &self.write_keys)
            .into_iter()
            .chain(plain("read_keys", KeyKind::Read, &self.read_keys))
            .chain(
                self.keys
                    .iter()
                    .filter(|key| key.revoked.is_none())
                    .map(|key| (key.id.clone(), key.kind, key.sha256.clone())),
            )
    }
}

/// All projects, as a projects file lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projects {
    pub projects: Vec<Project>,
}

impl Projects {
    /// Checks that the set can be served: at least one project, unique non-empty names, plain
    /// keys of at least 8 characters, issued keys with a well-formed hash and a unique id, every
    /// key used once (a key shared by two projects or two roles would make it ambiguous whose
    /// data it reads or writes), and rate limits that let at least one event through.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.projects.is_empty() {
            return Err(FieldError::new("projects", "list at least one project"));
        }
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut ids = HashSet::new();
        for (index, project) in self.projects.iter().enumerate() {
            if project.name.trim().is_empty() || !names.insert(project.name.as_str()) {
                return Err(FieldError::new(
                    format!("projects[{index}].name"),
                    "must be non-empty and unique",
                ));
            }
            for (role, list) in [
                ("write_keys", &project.write_keys),
                ("read_keys", &project.read_keys),
            ] {
                for (position, key) in list.iter().enumerate() {
                    if key.len() < 8 || !hashes.insert(key_hash(key)) {
                        return Err(FieldError::new(
                            format!("projects[{index}].{role}[{position}]"),
                            "keys must be at least 8 characters and used only once across all projects and roles",
                        ));
                    }
                }
            }
            for (position, key) in project.keys.iter().enumerate() {
                let field = format!("projects[{index}].keys[{position}]");
                let well_formed = key.sha256.len() == 64
                    && key
                        .sha256
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !well_formed {
                    return Err(FieldError::new(
                        field,
                        "sha256 must be 64 lower-case hex digits; issue keys with `scribble keys create`",
                    ));
                }
                if !ids.insert(key.id.as_str()) || !hashes.insert(key.sha256.clone()) {
                    return Err(FieldError::new(
                        field,
                        "each key and key id may appear only once across all projects",
                    ));
                }
            }
            if let Some(limit) = project.rate_limit {
                if limit.events_per_second == 0 || limit.burst == 0 {
                    return Err(FieldError::new(
                        format!("projects[{index}].rate_limit"),
                        "events_per_second and burst must be at least 1; leave rate_limit out for no limit",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The project named `name`.
    pub fn named(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|project| project.name == name)
    }
}

/// What a key opens: the collector (write) or the reports (read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Write,
    Read,
}

/// What a presented key opened: its project, its kind, and the key's id (for logs and per-key
/// rate limits; never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMatch<'a> {
    pub project: &'a Project,
    pub kind: KeyKind,
    pub key_id: &'a str,
}

/// Projects as a process serves them: the settings, and every active key by its hash.
#[derive(Debug, Default)]
pub struct ServedProjects {
    projects: Projects,
    /// Key hash to (project index, kind, key id).
    by_hash: HashMap<String, (usize, KeyKind, String)>,
}

impl ServedProjects {
    /// Indexes the active keys of `projects` (check them first with [`Projects::check`]).
    pub fn new(projects: Projects) -> Self {
        let by_hash = projects
            .projects
            .iter()
            .enumerate()
            .flat_map(|(index, project)| {
                project
                    .active_keys()
                    .map(move |(id, kind, hash)| (hash, (index, kind, id)))
            })
            .collect();
        Self { projects, by_hash }
    }

    pub fn projects(&self) -> &Projects {
        &self.projects
    }

    /// What `key` opens; `None` for a key no project has, or one that was revoked. Both the
    /// collector and the query API ask this, so each can tell a key of the wrong kind (403, and
    /// which key to use) from an unknown one (401).
    pub fn by_key(&self, key: &str) -> Option<KeyMatch<'_>> {
        let (index, kind, id) = self.by_hash.get(&key_hash(key))?;
        Some(KeyMatch {
            project: &self.projects.projects[*index],
            kind: *kind,
            key_id: id,
        })
    }
}

/// The projects a process serves now. Clones share them: [`replace`](Self::replace) (a reload of
/// the projects file) takes effect for every request that starts after it.
#[derive(Debug, Clone, Default)]
pub struct LiveProjects(Arc<RwLock<Arc<ServedProjects>>>);

impl LiveProjects {
    pub fn new(projects: Projects) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(ServedProjects::new(
            projects,
        )))))
    }

    /// The projects as they are now; a reload after this call does not change what it returned.
    pub fn current(&self) -> Arc<ServedProjects> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub fn replace(&self, projects: Projects) {
        let served = Arc::new(ServedProjects::new(projects));
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = served;
    }
}

impl Projects {
    /// Issues a new key of `kind` to project `name`, made at `now` (RFC 3339): the key is
    /// returned once, the project keeps only its hash.
    pub fn issue_key(
        &mut self,
        name: &str,
        kind: KeyKind,
        rng: &mut impl rand::Rng,
        now: &str,
    ) -> Result<(String, IssuedKey), FieldError> {
        let project = self
            .projects
            .iter_mut()
            .find(|project| project.name == name)
            .ok_or_else(|| unknown_project(name))?;
        let prefix = match kind {
            KeyKind::Write => "scw_",
            KeyKind::Read => "scr_",
        };
        let secret: String = (0..32)
            .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
            .collect();
        let key = format!("{prefix}{secret}");
        let issued = IssuedKey {
            id: key[..prefix.len() + 8].to_owned(),
            kind,
            sha256: key_hash(&key),
            created: now.to_owned(),
            revoked: None,
        };
        project.keys.push(issued.clone());
        Ok((key, issued))
    }

    /// Revokes the issued key `id` at `now`; revoking a revoked key changes nothing.
    pub fn revoke_key(&mut self, id: &str, now: &str) -> Result<IssuedKey, FieldError> {
        let key = self
            .projects
            .iter_mut()
            .flat_map(|project| project.keys.iter_mut())
            .find(|key| key.id == id)
            .ok_or_else(|| {
                FieldError::new(
                    "id",
                    format!("no issued key has the id {id:?}; `scribble keys list` shows them"),
                )
            })?;
        key.revoked.get_or_insert_with(|| now.to_owned());
        Ok(key.clone())
    }
}

fn unknown_project(name: &str) -> FieldError {
    FieldError::new(
        "project",
        format!("no project is named {name:?}; `scribble projects list` shows them"),
    )
}

/// The lower-case hex SHA-256 of `key`: how a key is stored and looked up. Keys are long random
/// strings, so a plain hash is enough; a slow password hash would only slow every request.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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
            ..Project::default()
        }
    }

    fn served(projects: &Projects) -> ServedProjects {
        ServedProjects::new(projects.clone())
    }

    #[test]
    fn keys_find_their_project_and_only_for_their_role() {
        let served = served(&Projects {
            projects: vec![shop()],
        });
        let found = |key| {
            served
                .by_key(key)
                .map(|found| (found.project.name.as_str(), found.kind, found.key_id))
        };
        assert_eq!(found("w1"), Some(("shop", KeyKind::Write, "write_keys[0]")));
        assert_eq!(found("r1"), Some(("shop", KeyKind::Read, "read_keys[0]")));
        assert_eq!(found("nope"), None);
    }

    #[test]
    fn issued_keys_are_stored_hashed_open_their_kind_and_stop_when_revoked() {
        let mut projects = Projects {
            projects: vec![Project {
                name: "shop".into(),
                ..Project::default()
            }],
        };
        let mut rng = rand::rngs::mock::StepRng::new(7, 11);
        let (write, issued) = projects
            .issue_key("shop", KeyKind::Write, &mut rng, "2026-11-26T00:00:00Z")
            .unwrap();
        let (read, _) = projects
            .issue_key("shop", KeyKind::Read, &mut rng, "2026-11-26T00:00:00Z")
            .unwrap();
        assert!(write.starts_with("scw_") && write.len() == 36, "{write}");
        assert!(read.starts_with("scr_"));
        assert_eq!(issued.id, write[..12]);
        let file = serde_json::to_string(&projects).unwrap();
        assert!(!file.contains(&write) && !file.contains(&read), "{file}");
        assert!(file.contains(&key_hash(&write)));
        assert_eq!(projects.check(), Ok(()));

        let before = ServedProjects::new(projects.clone());
        assert_eq!(before.by_key(&write).unwrap().kind, KeyKind::Write);
        assert_eq!(before.by_key(&write).unwrap().key_id, issued.id);
        assert_eq!(before.by_key(&read).unwrap().kind, KeyKind::Read);

        let revoked = projects
            .revoke_key(&issued.id, "2026-11-27T00:00:00Z")
            .unwrap();
        assert_eq!(revoked.revoked.as_deref(), Some("2026-11-27T00:00:00Z"));
        let again = projects
            .revoke_key(&issued.id, "2026-11-28T00:00:00Z")
            .unwrap();
        assert_eq!(again.revoked.as_deref(), Some("2026-11-27T00:00:00Z"));
        let after = ServedProjects::new(projects.clone());
        assert!(after.by_key(&write).is_none());
        assert!(after.by_key(&read).is_some());

        assert_eq!(
            projects
                .issue_key("nope", KeyKind::Read, &mut rng, "now")
                .unwrap_err()
                .field,
            "project"
        );
        assert_eq!(
            projects.revoke_key("scw_missing", "now").unwrap_err().field,
            "id"
        );
    }

    #[test]
    fn a_replaced_set_serves_the_next_lookup() {
        let live = LiveProjects::new(Projects {
            projects: vec![shop()],
        });
        let handle = live.clone();
        assert!(handle.current().by_key("w1").is_some());
        live.replace(Projects {
            projects: vec![Project {
                write_keys: vec!["w2".into()],
                ..shop()
            }],
        });
        assert!(handle.current().by_key("w1").is_none());
        assert!(handle.current().by_key("w2").is_some());
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
        let mut bad_hash = valid();
        bad_hash.projects[0].keys.push(IssuedKey {
            id: "scw_x".into(),
            kind: KeyKind::Write,
            sha256: "NOT-HEX".into(),
            created: "now".into(),
            revoked: None,
        });
        assert_eq!(bad_hash.check().unwrap_err().field, "projects[0].keys[0]");
        let mut hashed_twice = valid();
        let issued = IssuedKey {
            id: "scw_x".into(),
            kind: KeyKind::Write,
            sha256: key_hash("write-key-1"),
            created: "now".into(),
            revoked: None,
        };
        hashed_twice.projects[0].keys.push(issued);
        assert_eq!(
            hashed_twice.check().unwrap_err().field,
            "projects[0].keys[0]"
        );
        let mut stuck = valid();
        stuck.projects[0].rate_limit = Some(RateLimit {
            events_per_second: 0,
            burst: 10,
        });
        assert_eq!(stuck.check().unwrap_err().field, "projects[0].rate_limit");
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
