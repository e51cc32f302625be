//! Journeys for reports that read no step property, stitched and sorted inside ClickHouse: one
//! row per customer comes back (its id and its packed touchpoints, see [`LabelCodes`]) instead
//! of every event with its JSON, and the domain's reports run on the result as they do on the
//! embedded store's journeys.

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

/// One customer's packed, sorted touchpoints.
#[derive(Debug, Row, Deserialize)]
struct CustomerKeys {
    customer_name: String,
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
        if matches!(source, Source::Events { .. }) {
            return Ok(None);
        }
        let codes = match self.label_codes(&source, Breakdown::Channel).await {
            Ok(Some(codes)) => codes,
            Ok(None) => return Ok(Some(JourneySet::default())),
            Err(StoreError::ReportTooWide) => return Ok(None),
            Err(error) => return Err(error),
        };
        let keys_sql = self.customer_keys_sql(project, filter, &source, &codes, true);
        let rows: Vec<CustomerKeys> = self
            .client
            .query(&format!(
                "SELECT customer_name, keys FROM ({keys_sql}) WHERE length(keys) > 0"
            ))
            .fetch_all()
            .await?;
        Ok(Some(
            tokio::task::spawn_blocking(move || journey_set(&codes, rows)).await?,
        ))
    }
}

/// The set of `rows`, customers in naming order as [`scribble_domain::stitch::JourneyBook`]
/// numbers them.
fn journey_set(codes: &LabelCodes, rows: Vec<CustomerKeys>) -> JourneySet {
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
    let mut customers: Vec<(u64, IdentityKey, Vec<u64>)> = rows
        .into_iter()
        .map(|row| {
            let name = IdentityKey(row.customer_name);
            (name.naming_prefix(), name, row.keys)
        })
        .collect();
    customers.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.naming_order().cmp(&b.1.naming_order()))
    });
    let journeys = customers
        .into_iter()
        .enumerate()
        .map(|(customer, (_, _, keys))| Journey {
            customer: customer as u32,
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
        })
        .collect();
    JourneySet {
        journeys,
        symbols,
        properties: Vec::new(),
    }
}
