//! Privacy in ClickHouse: tombstones, erasing a customer, and retention sweeps, following the
//! rules of [`scribble_domain::privacy`].
//!
//! Deletes and rewrites are mutations (`ALTER TABLE ... DELETE` / `UPDATE`): ClickHouse applies
//! them in the background to the parts that exist when they are submitted, in the order they
//! were submitted, and rows inserted later are not touched. Version 18.16 has no
//! `mutations_sync`, so [`ClickHouseStore::wait_for_mutations`] polls `system.mutations`.
//!
//! **Forget** writes a tombstone per identity of the customer before it submits the deletes.
//! Every insert drops the events naming a tombstoned identity. An insert that read the
//! tombstones just before a forget wrote them could still land after the forget's deletes were
//! submitted; so after writing, an insert reads the tombstones again and erases the groups of
//! any event of its batch that names one (tombstoning the identities it linked to them too).
//! A forget that starts after that second read finds the batch's rows and deletes them itself.
//!
//! **Retention** reduces expired touchpoints that link two identities to identify rows without
//! traits (ClickHouse 18.16 cannot update an `Enum8` column, so they are inserted again with
//! the same id and sorting key and the touchpoint row deleted), deletes the other expired
//! touchpoints, clears the traits and addresses of older identifies and aliases, deletes trait
//! rows recorded before the cutoff, and removes the expired touchpoints from every row of each
//! journey fragment in place, so the union of an identity's rows never shows them again. A
//! fragment a worker extends while the sweep runs may keep its old touchpoints until the next
//! sweep. Each mutation is submitted only when some row needs it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::clickhouse::Row;
use parking_lot::Mutex;
use scribble_domain::event::{Event, IdentityKey};
use scribble_domain::privacy::{expiry, names_tombstoned, Expiry};
use scribble_domain::stitch::Expired;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use super::{string_tuple, ClickHouseStore, EventRow, Step, LOOKUP_CHUNK};
use crate::{Forgotten, JourneyStore, StoreError};

/// Version 4: the sender's address on every event, and the tombstones of forgotten customers.
/// Tombstones are a plain `MergeTree`: rows are never folded, so the row count only grows and
/// tells a reader whether its copy is current.
pub(super) const PRIVACY_V4: &[Step] = &[
    Step::AddColumn {
        table: "events",
        column: "ip",
        definition: "String",
    },
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS {db}.tombstones (
             project String,
             identity String,
             erased_ms Int64
         ) ENGINE = MergeTree() ORDER BY (project, identity)",
    ),
];

/// Longest a forget waits for its deletes before answering that they are still running.
const ERASE_PATIENCE: Duration = Duration::from_secs(30);
/// Longest a retention sweep waits for its mutations, so that sweeps do not pile up.
const SWEEP_PATIENCE: Duration = Duration::from_secs(300);
/// Pause between two looks at `system.mutations`.
const MUTATION_POLL: Duration = Duration::from_millis(100);

/// The tombstones as last read.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    /// Rows of the table this copy was read from.
    rows: u64,
    identities: HashMap<String, HashSet<IdentityKey>>,
}

impl Tombstones {
    /// Whether `event` of `project` names a tombstoned identity.
    fn names(&self, project: &str, event: &Event) -> bool {
        self.identities
            .get(project)
            .is_some_and(|erased| names_tombstoned(event, |key| erased.contains(key)))
    }

    /// Of `events`, those naming no tombstoned identity.
    pub(super) fn alive<'a>(&self, events: &[(&'a str, &'a Event)]) -> Vec<(&'a str, &'a Event)> {
        events
            .iter()
            .filter(|(project, event)| !self.names(project, event))
            .copied()
            .collect()
    }
}

/// The last copy of the tombstones a store read; re-read when the table has more rows.
#[derive(Debug, Default)]
pub(super) struct TombstoneCache(Mutex<Arc<Tombstones>>);

/// One row of `tombstones`.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
struct TombstoneRow {
    project: String,
    identity: String,
    erased_ms: i64,
}

/// How many rows of `events` a sweep changes.
#[derive(Debug, Clone, Copy, Row, Deserialize)]
struct ExpiringEvents {
    /// Distinct expired touchpoints (a replay not merged yet writes a row twice).
    touchpoints: u64,
    /// Rows of expired touchpoints naming two identities, reduced to their link.
    links: u64,
    /// Rows of older identifies and aliases still holding traits or an address.
    strippable: u64,
}

/// How many rows of `journey_fragments` a sweep changes.
#[derive(Debug, Clone, Copy, Row, Deserialize)]
struct ExpiringFragments {
    /// Rows holding a touchpoint before the cutoff.
    holding: u64,
    /// Rows holding only touchpoints before the cutoff: empty afterwards, then deleted.
    emptied: u64,
}

impl ClickHouseStore {
    /// The tombstones now. Reads the row count, and everything only when it changed.
    pub(super) async fn tombstones(&self) -> Result<Arc<Tombstones>, StoreError> {
        let rows: u64 = self
            .client
            .query(&self.sql("SELECT count() FROM {db}.tombstones"))
            .fetch_one()
            .await?;
        let cached = self.tombstones.0.lock().clone();
        if cached.rows == rows {
            return Ok(cached);
        }
        let read: Vec<(String, String)> = self
            .client
            .query(&self.sql("SELECT project, identity FROM {db}.tombstones"))
            .fetch_all()
            .await?;
        let mut current = Tombstones {
            rows: read.len() as u64,
            identities: HashMap::new(),
        };
        for (project, identity) in read {
            current
                .identities
                .entry(project)
                .or_default()
                .insert(IdentityKey(identity));
        }
        let current = Arc::new(current);
        *self.tombstones.0.lock() = current.clone();
        Ok(current)
    }

    /// After `written` was stored under the tombstones `before`: erases the groups of its
    /// events that name an identity tombstoned since (see the module doc).
    pub(super) async fn erase_late_arrivals(
        &self,
        before: &Tombstones,
        written: &[(&str, &Event)],
    ) -> Result<(), StoreError> {
        let after = self.tombstones().await?;
        if after.rows == before.rows {
            return Ok(());
        }
        let mut named: BTreeMap<&str, BTreeSet<IdentityKey>> = BTreeMap::new();
        for &(project, event) in written {
            if after.names(project, event) {
                named.entry(project).or_default().extend(event.identities());
            }
        }
        for (project, identities) in named {
            let mut group = BTreeSet::new();
            for identity in &identities {
                group.extend(self.customer_identities(project, identity).await?);
            }
            warn!(
                project,
                identities = group.len(),
                "events of a customer forgotten while they were written; erasing them"
            );
            self.tombstone(project, &group).await?;
            self.erase(project, &group).await?;
        }
        Ok(())
    }

    /// Erases the customer of `project` any of whose identities is `identity` (see
    /// [`crate::JourneyStore::forget`]); waits for the deletes up to [`ERASE_PATIENCE`].
    #[instrument(skip_all, fields(database = %self.database, project))]
    pub(super) async fn forget_customer(
        &self,
        project: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Forgotten>, StoreError> {
        let Some(customer) = self.customer(project, identity).await? else {
            return Ok(None);
        };
        let mut keys: BTreeSet<String> = self
            .customer_identities(project, identity)
            .await?
            .into_iter()
            .collect();
        keys.extend(customer.identities.iter().map(|key| key.0.clone()));
        let mut events = 0;
        for chunk in keys
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .chunks(LOOKUP_CHUNK)
        {
            let count: u64 = self
                .client
                .query(&self.sql(&format!(
                    "SELECT uniqExact(event_id) FROM {{db}}.events WHERE project = ? AND {}",
                    naming_sql(chunk)
                )))
                .bind(project)
                .fetch_one()
                .await?;
            events += count;
        }
        self.tombstone(project, &keys).await?;
        self.erase(project, &keys).await?;
        let complete = self.wait_for_mutations(ERASE_PATIENCE).await?;
        let mut identities: Vec<IdentityKey> = keys.into_iter().map(IdentityKey).collect();
        identities.sort_by(|a, b| a.naming_order().cmp(&b.naming_order()));
        info!(
            customer = %customer.customer_id.0,
            identities = identities.len(),
            events,
            complete,
            "customer forgotten"
        );
        Ok(Some(Forgotten {
            customer_id: customer.customer_id,
            identities,
            events,
            complete,
        }))
    }

    /// Writes a tombstone for each of `identities` of `project`.
    async fn tombstone(
        &self,
        project: &str,
        identities: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let erased_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        let rows: Vec<TombstoneRow> = identities
            .iter()
            .map(|identity| TombstoneRow {
                project: project.to_owned(),
                identity: identity.clone(),
                erased_ms,
            })
            .collect();
        self.insert_rows("{db}.tombstones", &rows).await
    }

    /// Submits the deletes of everything stored about `identities` of `project`: the events
    /// naming them, their links (both directions), overrides, traits and fragments.
    async fn erase(&self, project: &str, identities: &BTreeSet<String>) -> Result<(), StoreError> {
        let identities: Vec<String> = identities.iter().cloned().collect();
        for chunk in identities.chunks(LOOKUP_CHUNK) {
            let keys = string_tuple(chunk);
            let deletes = [
                format!("{{db}}.events DELETE WHERE project = ? AND {}", naming_sql(chunk)),
                format!(
                    "{{db}}.identity_links DELETE WHERE project = ? AND (identity IN {keys} OR linked IN {keys})"
                ),
                format!("{{db}}.identity_overrides DELETE WHERE project = ? AND identity IN {keys}"),
                format!("{{db}}.traits DELETE WHERE project = ? AND identity IN {keys}"),
                format!("{{db}}.journey_fragments DELETE WHERE project = ? AND identity IN {keys}"),
            ];
            for delete in deletes {
                self.mutate(&delete, project).await?;
            }
        }
        Ok(())
    }

    /// Applies `project`'s retention period at `cutoff_ms` (see the module doc); waits for its
    /// mutations up to [`SWEEP_PATIENCE`].
    #[instrument(skip_all, fields(database = %self.database, project, cutoff_ms))]
    pub(super) async fn expire_before(
        &self,
        project: &str,
        cutoff_ms: i64,
    ) -> Result<Expired, StoreError> {
        let events: ExpiringEvents = self
            .client
            .query(&self.sql(
                "SELECT uniqExactIf(event_id, kind = 'touchpoint'),
                        countIf(kind = 'touchpoint' AND anonymous_id != '' AND user_id != ''),
                        countIf(kind != 'touchpoint' AND (traits != '{}' OR ip != ''))
                 FROM {db}.events WHERE project = ? AND at_ms < ?",
            ))
            .bind(project)
            .bind(cutoff_ms)
            .fetch_one()
            .await?;
        let traits: u64 = self
            .client
            .query(&self.sql(
                "SELECT uniqExact(identity, key, event_id) FROM {db}.traits
                 WHERE project = ? AND at_ms < ?",
            ))
            .bind(project)
            .bind(cutoff_ms)
            .fetch_one()
            .await?;
        let fragments: ExpiringFragments = self
            .client
            .query(&self.sql(
                "SELECT countIf(times[1] < ?), countIf(times[-1] < ?)
                 FROM {db}.journey_fragments WHERE project = ? AND notEmpty(times)",
            ))
            .bind(cutoff_ms)
            .bind(cutoff_ms)
            .bind(project)
            .fetch_one()
            .await?;
        if events.links > 0 {
            self.reduce_expired_links(project, cutoff_ms).await?;
        }
        let cutoff = format!("project = ? AND at_ms < {cutoff_ms}");
        if events.touchpoints > 0 {
            self.mutate(
                &format!("{{db}}.events DELETE WHERE {cutoff} AND kind = 'touchpoint'"),
                project,
            )
            .await?;
        }
        if events.strippable > 0 {
            self.mutate(
                &format!(
                    "{{db}}.events UPDATE traits = '{{}}', ip = '' WHERE {cutoff} \
                     AND kind != 'touchpoint' AND (traits != '{{}}' OR ip != '')"
                ),
                project,
            )
            .await?;
        }
        if traits > 0 {
            self.mutate(&format!("{{db}}.traits DELETE WHERE {cutoff}"), project)
                .await?;
        }
        if fragments.holding > 0 {
            let kept = |column: &str| {
                format!("{column} = arrayFilter((x, t) -> t >= {cutoff_ms}, {column}, times)")
            };
            self.mutate(
                &format!(
                    "{{db}}.journey_fragments UPDATE {}, {}, {}, times = arrayFilter(t -> t >= {cutoff_ms}, times) \
                     WHERE project = ? AND notEmpty(times) AND times[1] < {cutoff_ms}",
                    kept("touchpoints"),
                    kept("channels"),
                    kept("event_ids"),
                ),
                project,
            )
            .await?;
        }
        if fragments.emptied > 0 {
            // Submitted after the update, so it runs after it and finds the emptied rows.
            self.mutate(
                "{db}.journey_fragments DELETE WHERE project = ? AND empty(times)",
                project,
            )
            .await?;
        }
        let done = self.wait_for_mutations(SWEEP_PATIENCE).await?;
        if !done {
            warn!("retention mutations still running; the next sweep finds what they miss");
        }
        Ok(Expired {
            touches: events.touchpoints as usize,
            traits: traits as usize,
        })
    }

    /// Writes the expired touchpoints of `project` that link two identities again as their
    /// reduced link (same id and sorting key); the delete of expired touchpoints that follows
    /// removes the originals.
    async fn reduce_expired_links(&self, project: &str, cutoff_ms: i64) -> Result<(), StoreError> {
        let rows: Vec<EventRow> = self
            .client
            .query(&self.sql(
                "SELECT ?fields FROM {db}.events WHERE project = ? AND at_ms < ?
                 AND kind = 'touchpoint' AND anonymous_id != '' AND user_id != ''",
            ))
            .bind(project)
            .bind(cutoff_ms)
            .fetch_all()
            .await?;
        let mut links: HashMap<uuid::Uuid, Event> = HashMap::new();
        for row in rows {
            let event = row.into_event()?;
            if let Expiry::ReduceToLink(link) = expiry(&event, cutoff_ms) {
                links.insert(link.event_id, link);
            }
        }
        let rows: Vec<EventRow> = links
            .values()
            .map(|link| EventRow::from_event(project, link))
            .collect();
        self.insert_rows("{db}.events", &rows).await
    }

    /// Submits `ALTER TABLE <mutation>`, `?` bound to `project`.
    async fn mutate(&self, mutation: &str, project: &str) -> Result<(), StoreError> {
        self.client
            .query(&self.sql(&format!("ALTER TABLE {mutation}")))
            .bind(project)
            .execute()
            .await?;
        Ok(())
    }

    /// Waits until no mutation of the database is running, at most `patience`; returns
    /// whether they all finished.
    async fn wait_for_mutations(&self, patience: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + patience;
        loop {
            let running: u64 = self
                .client
                .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
                .bind(&self.database)
                .fetch_one()
                .await?;
            if running == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(MUTATION_POLL).await;
        }
    }
}

/// SQL selecting the events that name any of `identities` (namespaced keys): as user id,
/// anonymous id, or an alias's previous id.
fn naming_sql(identities: &[String]) -> String {
    let bare = |prefix: &str| -> Vec<String> {
        identities
            .iter()
            .filter_map(|key| key.strip_prefix(prefix).map(str::to_owned))
            .collect()
    };
    let (users, anonymous) = (bare("u:"), bare("a:"));
    let mut conditions = Vec::new();
    if !users.is_empty() {
        let users = string_tuple(&users);
        conditions.push(format!("user_id IN {users}"));
        conditions.push(format!("(kind = 'alias' AND previous_id IN {users})"));
    }
    if !anonymous.is_empty() {
        conditions.push(format!("anonymous_id IN {}", string_tuple(&anonymous)));
    }
    if conditions.is_empty() {
        return "0".to_owned();
    }
    format!("({})", conditions.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_found_by_every_identity_they_can_name() {
        let sql = naming_sql(&["u:ann".into(), "a:c'1".into(), "u:crm-1".into()]);
        assert_eq!(
            sql,
            r"(user_id IN ('ann','crm-1') OR (kind = 'alias' AND previous_id IN ('ann','crm-1')) OR anonymous_id IN ('c\'1'))"
        );
        assert_eq!(naming_sql(&["a:x".into()]), "(anonymous_id IN ('x'))");
        assert_eq!(naming_sql(&[]), "0", "nothing named, nothing selected");
    }
}
