//! Identity stitching in ClickHouse, resolved when events are written so that reports can group
//! by customer in one query.
//!
//! Every event naming two identities (an identify, an alias, a touchpoint with both an anonymous
//! and a user id) adds a link to `identity_links`, stored in both directions. After each insert
//! the store walks the links from every identity the batch named, finds their whole connected
//! groups, and writes one row per identity to `identity_overrides`: its customer (the group's
//! smallest user id, else its smallest anonymous id, as the journey book names customers),
//! versioned by the number of links the group had when it was read. Groups only ever grow, so a
//! larger version always comes from a more complete view: when two workers resolve the same
//! group at once, the one that saw more links wins, whatever order their rows land in. Readers
//! take the highest version per identity; an identity without a row is its own customer.
//!
//! So an identify that arrives days late, on another partition or another worker, re-resolves
//! the whole group at its insert, and every report from then on shows the merged customer.

use std::collections::{BTreeSet, HashMap, HashSet};

use ::clickhouse::Row;
use scribble_domain::event::{Event, IdentityKey};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{string_tuple, ClickHouseStore, LOOKUP_CHUNK};
use crate::StoreError;

/// One row of `identity_links`: event `event_id` named `identity` together with `linked`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub(super) struct LinkRow {
    pub project: String,
    pub identity: String,
    pub linked: String,
}

/// One row of `identity_overrides`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
struct OverrideRow {
    project: String,
    identity: String,
    customer: String,
    version: u64,
}

/// The links `event` of `project` makes, in both directions.
pub(super) fn links_of(project: &str, event: &Event) -> Vec<LinkRow> {
    let identities = event.identities();
    identities
        .windows(2)
        .filter(|pair| pair[0] != pair[1])
        .flat_map(|pair| {
            let (a, b) = (&pair[0].0, &pair[1].0);
            [(a, b), (b, a)].map(|(identity, linked)| LinkRow {
                project: project.to_owned(),
                identity: identity.clone(),
                linked: linked.clone(),
            })
        })
        .collect()
}

impl ClickHouseStore {
    /// Re-resolves the customers of the groups `links` touch, per project. Idempotent: running
    /// it again over the same links writes the same rows.
    pub(super) async fn resolve_identities(&self, links: &[LinkRow]) -> Result<(), StoreError> {
        let mut touched: HashMap<&str, HashSet<String>> = HashMap::new();
        for link in links {
            touched
                .entry(&link.project)
                .or_default()
                .insert(link.identity.clone());
        }
        for (project, identities) in touched {
            self.resolve_project(project, identities).await?;
        }
        Ok(())
    }

    async fn resolve_project(
        &self,
        project: &str,
        touched: HashSet<String>,
    ) -> Result<(), StoreError> {
        let mut seen: HashSet<String> = touched.clone();
        let mut frontier: Vec<String> = touched.into_iter().collect();
        let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
        while !frontier.is_empty() {
            let mut rows: Vec<(String, String)> = Vec::new();
            // `IN` a literal tuple, unlike `has`, reads only the granules of these identities;
            // chunks keep each query under the server's query size limit.
            for chunk in frontier.chunks(LOOKUP_CHUNK) {
                rows.extend(
                    self.client
                        .query(&self.sql(&format!(
                            "SELECT identity, linked FROM {{db}}.identity_links \
                             WHERE project = ? AND identity IN {} GROUP BY identity, linked",
                            string_tuple(chunk)
                        )))
                        .bind(project)
                        .fetch_all::<(String, String)>()
                        .await?,
                );
            }
            frontier.clear();
            for (identity, linked) in rows {
                if seen.insert(linked.clone()) {
                    frontier.push(linked.clone());
                }
                pairs.insert(if identity < linked {
                    (identity, linked)
                } else {
                    (linked, identity)
                });
            }
        }
        let groups = connected_groups(&pairs);
        let mut insert = self
            .client
            .insert_unescaped::<OverrideRow>(&self.sql("{db}.identity_overrides"))
            .await?;
        for (members, links) in &groups {
            let customer = members
                .iter()
                .map(|member| IdentityKey(member.clone()))
                .min_by(|a, b| a.naming_order().cmp(&b.naming_order()))
                .expect("a group has members");
            for member in members {
                insert
                    .write(&OverrideRow {
                        project: project.to_owned(),
                        identity: member.clone(),
                        customer: customer.0.clone(),
                        version: *links as u64,
                    })
                    .await?;
            }
        }
        insert.end().await?;
        debug!(project, groups = groups.len(), "identities resolved");
        Ok(())
    }
}

/// The connected groups of the undirected `pairs`: each group's members and its link count.
fn connected_groups(pairs: &BTreeSet<(String, String)>) -> Vec<(Vec<String>, usize)> {
    fn root(parent: &mut [usize], mut node: usize) -> usize {
        while parent[node] != node {
            parent[node] = parent[parent[node]];
            node = parent[node];
        }
        node
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut first_ends = Vec::with_capacity(pairs.len());
    for (a, b) in pairs {
        let [a, b] = [a, b].map(|name| {
            *index.entry(name.as_str()).or_insert_with(|| {
                parent.push(parent.len());
                parent.len() - 1
            })
        });
        let (root_a, root_b) = (root(&mut parent, a), root(&mut parent, b));
        parent[root_a] = root_b;
        first_ends.push(a);
    }
    let mut groups: HashMap<usize, (Vec<String>, usize)> = HashMap::new();
    for (name, &node) in &index {
        let group = root(&mut parent, node);
        groups.entry(group).or_default().0.push((*name).to_owned());
    }
    for node in first_ends {
        let group = root(&mut parent, node);
        groups.entry(group).or_default().1 += 1;
    }
    let mut groups: Vec<(Vec<String>, usize)> = groups.into_values().collect();
    for (members, _) in &mut groups {
        members.sort();
    }
    groups.sort();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_the_connected_parts_with_their_link_counts() {
        let pairs: BTreeSet<(String, String)> = [("a:1", "u:x"), ("a:2", "u:x"), ("a:3", "u:y")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let groups = connected_groups(&pairs);
        assert_eq!(
            groups,
            vec![
                (vec!["a:1".into(), "a:2".into(), "u:x".into()], 2),
                (vec!["a:3".into(), "u:y".into()], 1),
            ]
        );
    }
}
