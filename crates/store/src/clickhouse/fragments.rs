//! Journey fragments: every visitor's touchpoints kept together, sorted, as one row of arrays,
//! so that reports read one row per visitor instead of sorting raw events each time.
//!
//! A fragment belongs to the event's routing identity (its anonymous id if it has one, else its
//! user id), the same id Kafka partitions by. All touchpoints of one routing identity therefore
//! arrive on one partition, in order, and only the worker owning that partition rewrites the
//! fragment: read the current row, add the batch's new touchpoints, write the whole row again
//! with the version raised by the number of touchpoints added (a new fragment's version is its
//! touchpoint count). `ReplacingMergeTree(version)` keeps the largest, and a larger version
//! always holds every touchpoint of a smaller one (a fragment only grows), so readers need no
//! `FINAL`: the union of a fragment's rows is its newest row, and path queries take the union
//! anyway when they gather a customer's fragments through the identity overrides. A replayed
//! batch adds nothing new and writes nothing.
//!
//! Privacy removes touchpoints from fragments in place, in every row of an identity at once
//! (see `privacy`), which keeps the newest row a superset of the older ones. Versions are not
//! touchpoint counts after that (ClickHouse cannot update a version column), which is why a
//! rewrite adds to the stored version instead of counting: a recount could fall below the
//! version of the row it extends, and merges would keep the older row.
//!
//! `touchpoint_labels` lists each project's touchpoint and channel names with the time span they
//! occur in: path reports number labels from it without scanning the events.
//!
//! Columns the queries read are materialised at insert time: touchpoint and channel names as
//! `cityHash64` codes, and event ids as the same hash the events table gives them.

use std::collections::{BTreeMap, HashMap, HashSet};

use ::clickhouse::Row;
use parking_lot::Mutex;
use scribble_domain::event::{Body, Event, IdentityKey};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{string_tuple, ClickHouseStore, Step, LOOKUP_CHUNK};
use crate::StoreError;

/// Version 3: fragments and labels, filled from the events already stored. The backfill is
/// safe to repeat (its rows equal what the worker would write); it must not run while workers
/// write, which `scribble migrate` before starting workers, or each worker's own start-up
/// migration, ensures.
pub(super) const FRAGMENTS_V3: &[Step] = &[
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS {db}.journey_fragments (
             project String,
             identity String,
             version UInt64,
             times Array(Int64),
             touchpoints Array(String),
             channels Array(String),
             event_ids Array(String),
             codes Array(UInt64) MATERIALIZED arrayMap(x -> cityHash64(x), touchpoints),
             channel_codes Array(UInt64) MATERIALIZED arrayMap(x -> cityHash64(x), channels),
             id_hashes Array(UInt64) MATERIALIZED arrayMap(x -> cityHash64(x), event_ids)
         ) ENGINE = ReplacingMergeTree(version) ORDER BY (project, identity)",
    ),
    Step::Sql(
        "CREATE TABLE IF NOT EXISTS {db}.touchpoint_labels (
             project String,
             touchpoint String,
             channel String,
             first_ms Int64,
             last_ms Int64
         ) ENGINE = MergeTree() ORDER BY (project, touchpoint, channel)",
    ),
    Step::Sql(
        "INSERT INTO {db}.journey_fragments (project, identity, version, times, touchpoints, channels, event_ids)
         SELECT project, routing_identity, length(touches),
                arrayMap(t -> t.1, touches), arrayMap(t -> t.2, touches),
                arrayMap(t -> t.3, touches), arrayMap(t -> t.4, touches)
         FROM (
             SELECT project,
                    if(anonymous_id != '', concat('a:', anonymous_id), concat('u:', user_id)) AS routing_identity,
                    arraySort(groupUniqArray((at_ms, touchpoint, channel, toString(event_id)))) AS touches
             FROM {db}.events WHERE kind = 'touchpoint'
             GROUP BY project, routing_identity)",
    ),
    Step::Sql(
        "INSERT INTO {db}.touchpoint_labels
         SELECT project, touchpoint, channel, min(at_ms), max(at_ms)
         FROM {db}.events WHERE kind = 'touchpoint'
         GROUP BY project, touchpoint, channel",
    ),
];

/// One row of `journey_fragments` (the materialised columns are the server's).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct FragmentRow {
    project: String,
    identity: String,
    version: u64,
    times: Vec<i64>,
    touchpoints: Vec<String>,
    channels: Vec<String>,
    event_ids: Vec<String>,
}

/// One row of `touchpoint_labels`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct LabelRow {
    project: String,
    touchpoint: String,
    channel: String,
    first_ms: i64,
    last_ms: i64,
}

/// A touchpoint as a fragment holds it. The field order is the journey order, ties included.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Touch {
    at_ms: i64,
    touchpoint: String,
    channel: String,
    event_id: String,
}

/// The identity whose fragment holds `event`'s touchpoint: the one Kafka routes it by.
fn routing_identity(event: &Event) -> Option<IdentityKey> {
    match (&event.who.anonymous_id, &event.who.user_id) {
        (Some(anonymous), _) => Some(IdentityKey::anonymous(anonymous)),
        (None, Some(user)) => Some(IdentityKey::user(user)),
        (None, None) => None,
    }
}

/// The batch's touchpoints per project and routing identity.
fn new_touches<'a>(
    events: &[(&'a str, &Event)],
) -> BTreeMap<&'a str, BTreeMap<String, Vec<Touch>>> {
    let mut touches: BTreeMap<&str, BTreeMap<String, Vec<Touch>>> = BTreeMap::new();
    for &(project, event) in events {
        let Body::Touchpoint {
            touchpoint,
            channel,
            ..
        } = &event.body
        else {
            continue;
        };
        let Some(identity) = routing_identity(event) else {
            continue;
        };
        touches
            .entry(project)
            .or_default()
            .entry(identity.0)
            .or_default()
            .push(Touch {
                at_ms: event.at_ms,
                touchpoint: touchpoint.clone(),
                channel: channel.clone(),
                event_id: event.event_id.to_string(),
            });
    }
    touches
}

/// `stored` with the touches of `added` it lacks (by event id), in journey order; `None` when
/// every added touch is already there.
fn extended(stored: Vec<Touch>, added: Vec<Touch>) -> Option<Vec<Touch>> {
    let mut known: HashSet<String> = stored.iter().map(|touch| touch.event_id.clone()).collect();
    let mut touches = stored;
    let before = touches.len();
    for touch in added {
        if known.insert(touch.event_id.clone()) {
            touches.push(touch);
        }
    }
    if touches.len() == before {
        return None;
    }
    touches.sort();
    Some(touches)
}

/// The label spans a store has written, so that a batch writes a label row only when it
/// brings a label, or a day of one, that the table does not hold yet. Without it every batch
/// wrote a row per label (tens of millions a day under load) and every report read them all.
/// Spans are widened to whole UTC days; a superset is all reports need. Per process: after a
/// restart each label is written once more.
#[derive(Debug, Default)]
pub(super) struct KnownLabels {
    spans: Mutex<HashMap<LabelKey, Span>>,
}

/// A label's identity in [`KnownLabels`]: project, touchpoint, channel.
type LabelKey = (String, String, String);
/// First and last epoch millisecond of a label's span.
type Span = (i64, i64);

impl KnownLabels {
    /// Of `batch`, the rows the table lacks, widened to whole days and to what is known, and
    /// the spans to record once they are written.
    fn unwritten(&self, batch: Vec<LabelRow>) -> (Vec<LabelRow>, Vec<(LabelKey, Span)>) {
        let spans = self.spans.lock();
        let mut rows = Vec::new();
        let mut recorded = Vec::new();
        for mut row in batch {
            let key = (
                row.project.clone(),
                row.touchpoint.clone(),
                row.channel.clone(),
            );
            let known = spans.get(&key).copied();
            if known.is_some_and(|(first, last)| first <= row.first_ms && row.last_ms <= last) {
                continue;
            }
            let day_first = row.first_ms - row.first_ms.rem_euclid(DAY_MS);
            let day_last = row.last_ms - row.last_ms.rem_euclid(DAY_MS) + DAY_MS - 1;
            let (first, last) = known.map_or((day_first, day_last), |(first, last)| {
                (first.min(day_first), last.max(day_last))
            });
            (row.first_ms, row.last_ms) = (first, last);
            recorded.push((key, (first, last)));
            rows.push(row);
        }
        (rows, recorded)
    }

    /// Records spans [`unwritten`](Self::unwritten) gave, after their rows were stored.
    fn written(&self, recorded: Vec<(LabelKey, Span)>) {
        let mut spans = self.spans.lock();
        for (key, (first, last)) in recorded {
            let span = spans.entry(key).or_insert((first, last));
            *span = (span.0.min(first), span.1.max(last));
        }
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Per `(touchpoint, channel)` of the batch, the earliest and latest time.
fn label_rows(events: &[(&str, &Event)]) -> Vec<LabelRow> {
    let mut spans: BTreeMap<(&str, &str, &str), (i64, i64)> = BTreeMap::new();
    for &(project, event) in events {
        if let Body::Touchpoint {
            touchpoint,
            channel,
            ..
        } = &event.body
        {
            let span = spans
                .entry((project, touchpoint, channel))
                .or_insert((event.at_ms, event.at_ms));
            span.0 = span.0.min(event.at_ms);
            span.1 = span.1.max(event.at_ms);
        }
    }
    spans
        .into_iter()
        .map(
            |((project, touchpoint, channel), (first_ms, last_ms))| LabelRow {
                project: project.to_owned(),
                touchpoint: touchpoint.to_owned(),
                channel: channel.to_owned(),
                first_ms,
                last_ms,
            },
        )
        .collect()
}

impl FragmentRow {
    fn into_touches(self) -> Vec<Touch> {
        let parts = self
            .times
            .into_iter()
            .zip(self.touchpoints)
            .zip(self.channels)
            .zip(self.event_ids);
        parts
            .map(|(((at_ms, touchpoint), channel), event_id)| Touch {
                at_ms,
                touchpoint,
                channel,
                event_id,
            })
            .collect()
    }

    fn of(project: &str, identity: String, version: u64, touches: Vec<Touch>) -> Self {
        let mut row = Self {
            project: project.to_owned(),
            identity,
            version,
            times: Vec::with_capacity(touches.len()),
            touchpoints: Vec::with_capacity(touches.len()),
            channels: Vec::with_capacity(touches.len()),
            event_ids: Vec::with_capacity(touches.len()),
        };
        for touch in touches {
            row.times.push(touch.at_ms);
            row.touchpoints.push(touch.touchpoint);
            row.channels.push(touch.channel);
            row.event_ids.push(touch.event_id);
        }
        row
    }
}

impl ClickHouseStore {
    /// Adds the touchpoints of `events` to their fragments and their labels to
    /// `touchpoint_labels`. Labels go first, so that a fragment never holds a label the table
    /// lacks. Idempotent: a replay finds its touches stored and writes no fragment.
    pub(super) async fn extend_fragments(
        &self,
        events: &[(&str, &Event)],
    ) -> Result<(), StoreError> {
        let (labels, spans) = self.known_labels.unwritten(label_rows(events));
        self.insert_rows("{db}.touchpoint_labels", &labels).await?;
        self.known_labels.written(spans);
        let mut rows = Vec::new();
        for (project, mut added) in new_touches(events) {
            let identities: Vec<String> = added.keys().cloned().collect();
            let mut stored = self.stored_fragments(project, &identities).await?;
            for identity in identities {
                let touches = added.remove(&identity).unwrap_or_default();
                let (version, existing) = stored
                    .remove(&identity)
                    .map_or((0, Vec::new()), |row| (row.version, row.into_touches()));
                let before = existing.len();
                if let Some(touches) = extended(existing, touches) {
                    let version = version + (touches.len() - before) as u64;
                    rows.push(FragmentRow::of(project, identity, version, touches));
                }
            }
        }
        debug!(fragments = rows.len(), "journey fragments extended");
        self.insert_rows("{db}.journey_fragments", &rows).await
    }

    /// The newest stored fragment of each of `identities` that has one.
    async fn stored_fragments(
        &self,
        project: &str,
        identities: &[String],
    ) -> Result<HashMap<String, FragmentRow>, StoreError> {
        let mut newest: HashMap<String, FragmentRow> = HashMap::new();
        for chunk in identities.chunks(LOOKUP_CHUNK) {
            let rows: Vec<FragmentRow> = self
                .client
                .query(&self.sql(&format!(
                    "SELECT ?fields FROM {{db}}.journey_fragments \
                     WHERE project = ? AND identity IN {}",
                    string_tuple(chunk)
                )))
                .bind(project)
                .fetch_all()
                .await?;
            for row in rows {
                match newest.get(&row.identity) {
                    Some(kept) if kept.version >= row.version => {}
                    _ => {
                        newest.insert(row.identity.clone(), row);
                    }
                }
            }
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribble_domain::event::Who;
    use serde_json::Map;
    use uuid::Uuid;

    fn touch(at_ms: i64, touchpoint: &str, id: u128) -> Touch {
        Touch {
            at_ms,
            touchpoint: touchpoint.to_owned(),
            channel: "web".to_owned(),
            event_id: Uuid::from_u128(id).to_string(),
        }
    }

    fn event(id: u128, who: Who, body: Body) -> Event {
        Event {
            event_id: Uuid::from_u128(id),
            at_ms: id as i64 * 1000,
            received_ms: 0,
            who,
            body,
            ip: None,
        }
    }

    fn visit() -> Body {
        Body::Touchpoint {
            touchpoint: "site_visit".into(),
            channel: "web".into(),
            direct: true,
            properties: Map::new(),
        }
    }

    #[test]
    fn fragments_grow_in_journey_order_and_replays_add_nothing() {
        let stored = vec![touch(10, "site_visit", 1), touch(30, "purchase", 3)];
        let merged = extended(
            stored.clone(),
            vec![touch(20, "email_open", 2), touch(30, "purchase", 3)],
        )
        .expect("one new touch");
        let order: Vec<i64> = merged.iter().map(|touch| touch.at_ms).collect();
        assert_eq!(order, [10, 20, 30]);
        assert_eq!(
            extended(merged.clone(), vec![touch(20, "email_open", 2)]),
            None
        );
        // Same millisecond: by touchpoint name, as journeys order them.
        let tie = extended(
            vec![touch(5, "site_visit", 9)],
            vec![touch(5, "ad_click", 8)],
        );
        assert_eq!(tie.unwrap()[0].touchpoint, "ad_click");
    }

    #[test]
    fn a_label_is_written_again_only_for_a_day_it_lacks() {
        let label = |first_ms: i64, last_ms: i64| LabelRow {
            project: "shop".into(),
            touchpoint: "site_visit".into(),
            channel: "web".into(),
            first_ms,
            last_ms,
        };
        let known = KnownLabels::default();
        let (rows, spans) = known.unwritten(vec![label(DAY_MS + 5, DAY_MS + 9)]);
        assert_eq!(
            (rows[0].first_ms, rows[0].last_ms),
            (DAY_MS, 2 * DAY_MS - 1),
            "widened to the whole day"
        );
        // Not written yet: the same batch again still needs its row.
        assert_eq!(
            known.unwritten(vec![label(DAY_MS + 5, DAY_MS + 9)]).0.len(),
            1
        );
        known.written(spans);
        assert!(known
            .unwritten(vec![label(DAY_MS + 7, 2 * DAY_MS - 1)])
            .0
            .is_empty());
        let (rows, _) = known.unwritten(vec![label(2 * DAY_MS + 1, 2 * DAY_MS + 2)]);
        assert_eq!(
            (rows[0].first_ms, rows[0].last_ms),
            (DAY_MS, 3 * DAY_MS - 1)
        );
    }

    #[test]
    fn touches_go_to_the_identity_kafka_routes_them_by() {
        let both = Who {
            anonymous_id: Some("cookie".into()),
            user_id: Some("ann".into()),
        };
        let user_only = Who {
            anonymous_id: None,
            user_id: Some("ann".into()),
        };
        let identify = Body::Identify { traits: Map::new() };
        let events = [
            event(1, both.clone(), visit()),
            event(2, user_only, visit()),
            event(3, both, identify),
        ];
        let pairs: Vec<(&str, &Event)> = events.iter().map(|event| ("shop", event)).collect();
        let touches = new_touches(&pairs);
        let identities: Vec<(&String, usize)> = touches["shop"]
            .iter()
            .map(|(identity, touches)| (identity, touches.len()))
            .collect();
        assert_eq!(
            identities,
            [(&"a:cookie".to_owned(), 1), (&"u:ann".to_owned(), 1)]
        );
        let labels = label_rows(&pairs);
        assert_eq!(labels.len(), 1);
        assert_eq!((labels[0].first_ms, labels[0].last_ms), (1000, 2000));
    }
}
