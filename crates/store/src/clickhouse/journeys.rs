//! Journeys for reports that read no step property, stitched inside ClickHouse: each journey
//! fragment comes back as one row (its customer, resolved through the identity overrides, and
//! its packed touchpoints, see [`LabelCodes`]) instead of every event with its JSON. Sorting
//! the rows by customer name, which the journey order needs anyway, brings a customer's rows
//! together, and they merge into its journey; the domain's reports then run on the result as
//! they do on the embedded store's journeys.

use ::clickhouse::Row;
use scribble_domain::event::IdentityKey;
use scribble_domain::journey::{Journey, JourneySet, Step};
use scribble_domain::paths::Breakdown;
use scribble_domain::stitch::JourneyFilter;
use scribble_domain::symbols::{Sym, Symbols};
use serde::Deserialize;

use super::paths::{LabelCodes, Source};
use super::ClickHouseStore;
use crate::StoreError;

/// One journey fragment's customer and packed touchpoints.
#[derive(Debug, Row, Deserialize)]
struct FragmentKeys {
    customer: String,
    keys: Vec<u64>,
}

impl ClickHouseStore {
    /// The journeys `filter` selects, without step properties, in the order and numbering the
    /// journey book gives them. `None` when they cannot be read this way: a property filter
    /// needs the raw events, or the labels and time span do not fit a packed key.
    pub(super) async fn compact_journeys(
        &self,
        project: &str,
        filter: &JourneyFilter,
    ) -> Result<Option<JourneySet>, StoreError> {
        let source = Source::of(project, filter);
        let &Source::Fragments { from_ms, to_ms, .. } = &source else {
            return Ok(None);
        };
        let codes = match self.label_codes(&source, Breakdown::Channel).await {
            Ok(Some(codes)) => codes,
            Ok(None) => return Ok(Some(JourneySet::default())),
            Err(StoreError::ReportTooWide) => return Ok(None),
            Err(error) => return Err(error),
        };
        let rows_sql = self.fragment_rows_sql(project, filter, from_ms, to_ms, &codes);
        let rows: Vec<FragmentKeys> = self
            .client
            .query(&format!(
                "SELECT customer, keys FROM ({rows_sql}) WHERE length(keys) > 0"
            ))
            .fetch_all()
            .await?;
        Ok(Some(
            tokio::task::spawn_blocking(move || journey_set(&codes, rows)).await?,
        ))
    }
}

/// The set of `rows`, customers in naming order as [`scribble_domain::stitch::JourneyBook`]
/// numbers them, each customer's rows merged: keys sorted, and a key in two rows (one event in
/// an older fragment row too) kept once.
fn journey_set(codes: &LabelCodes, rows: Vec<FragmentKeys>) -> JourneySet {
    let mut symbols = Symbols::new();
    let touchpoints: Vec<Sym> = codes
        .touchpoints
        .iter()
        .map(|name| symbols.intern(name))
        .collect();
    let channels: Vec<Sym> = codes
        .channels
        .iter()
        .map(|name| symbols.intern(name))
        .collect();
    let mut rows: Vec<(u64, IdentityKey, Vec<u64>)> = rows
        .into_iter()
        .map(|row| {
            let name = IdentityKey(row.customer);
            (name.naming_prefix(), name, row.keys)
        })
        .collect();
    rows.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.naming_order().cmp(&b.1.naming_order()))
    });
    let mut journeys: Vec<Journey> = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while let Some((_, name, mut keys)) = rows.next() {
        while let Some((_, _, more)) = rows.next_if(|(_, next, _)| *next == name) {
            keys.extend(more);
        }
        keys.sort_unstable();
        keys.dedup();
        journeys.push(Journey {
            customer: journeys.len() as u32,
            steps: keys
                .into_iter()
                .map(|key| {
                    let (at_ms, label) = codes.unpack(key);
                    let (touchpoint, channel) = codes.touchpoint_and_channel(label);
                    Step {
                        at_ms,
                        touchpoint: touchpoints[touchpoint],
                        channel: channels[channel],
                        touch: 0,
                    }
                })
                .collect(),
        });
    }
    JourneySet {
        journeys,
        symbols,
        properties: Vec::new(),
    }
}
