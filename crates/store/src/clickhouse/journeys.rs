//! Journeys for reports that read no step property, read from the journey fragments: each
//! fragment comes back as one row (its identity and its packed touchpoints, see
//! [`LabelCodes`]) instead of every event with its JSON. The store resolves each identity to
//! its customer through the identity overrides, which it reads alongside, and sorting the rows
//! by customer name, which the journey order needs anyway, brings a customer's rows together,
//! where they merge into its journey. The domain's reports then run on the result as they do
//! on the embedded store's journeys.

use std::time::Instant;

use hashbrown::hash_map::Entry;
use hashbrown::{HashMap, HashSet};
use scribble_domain::event::{naming_order, naming_prefix};
use scribble_domain::journey::{on_two_threads, Journey, JourneySet, Step};
use scribble_domain::paths::Breakdown;
use scribble_domain::stitch::JourneyFilter;
use scribble_domain::symbols::{Sym, Symbols};
use tracing::{debug, trace};

use super::paths::{LabelCodes, Source};
use super::row_binary::{fetch_rows, FragmentRow, FragmentRows, OverrideRows};
use super::{string_literal, ClickHouseStore};
use crate::StoreError;

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
        let started = Instant::now();
        let rows_sql = self.fragment_rows_sql(project, from_ms, to_ms, &codes);
        let project_literal = string_literal(project);
        let overrides = self.overrides_sql(&project_literal);
        // Every override row, the latest picked here: grouping 666,000 rows by identity cost
        // ClickHouse 0.25-0.3 s next to the fragment query, reading them 0.07 s.
        let override_rows_sql = self.sql(&format!(
            "SELECT identity, customer, version FROM {{db}}.identity_overrides \
             WHERE project = {project_literal}"
        ));
        let kept_sql = self.trait_customers_sql(&project_literal, &overrides, filter);
        trace!(sql = rows_sql, "fragment rows");
        // The small overrides and trait queries run while the fragment rows stream. Those come
        // uncompressed: for about 95 MB over loopback, LZ4 cost both ends more CPU than it saved.
        let uncompressed = self
            .client
            .clone()
            .with_compression(::clickhouse::Compression::None);
        let (fragments, overrides, kept) = tokio::try_join!(
            fetch_rows::<FragmentRows>(uncompressed.query(&rows_sql)),
            fetch_rows::<OverrideRows>(self.client.query(&override_rows_sql)),
            async {
                match &kept_sql {
                    Some(sql) => Ok(Some(self.client.query(sql).fetch_all::<String>().await?)),
                    None => Ok(None),
                }
            },
        )?;
        let fetched = started.elapsed();
        let (set, rows_fetched) = tokio::task::spawn_blocking(move || {
            let rows = fragments.rows();
            let customers = latest_customers(&overrides);
            let kept: Option<HashSet<String>> = kept.map(|kept| kept.into_iter().collect());
            let count = rows.len();
            Ok::<_, StoreError>((journey_set(&codes, rows, &customers, kept.as_ref()), count))
        })
        .await??;
        debug!(
            project,
            rows = rows_fetched,
            journeys = set.journeys.len(),
            fetch_ms = fetched.as_millis() as u64,
            assemble_ms = (started.elapsed() - fetched).as_millis() as u64,
            "journeys read from fragments"
        );
        Ok(Some(set))
    }
}

/// Each overridden identity's customer, as its latest override (the highest version) names
/// it, and that version.
fn latest_customers(overrides: &OverrideRows) -> Customers<'_> {
    let mut latest = Customers::new();
    for row in overrides.rows() {
        match latest.entry(row.identity) {
            Entry::Occupied(seen) if seen.get().0 >= row.version => {}
            entry => {
                entry.insert((row.version, row.customer));
            }
        }
    }
    latest
}

/// Identities with their customers and the versions that named them (see [`latest_customers`]).
type Customers<'a> = HashMap<&'a str, (u64, &'a str)>;

/// A fragment row named by its customer: the customer's naming prefix, the customer's identity
/// key text, the row's keys.
type NamedRow<'a> = (u64, &'a str, &'a [u64]);

/// The set of `rows`, each identity resolved to its customer through `customers` (an identity
/// missing there is its own customer), only the customers in `kept` when it is given, in naming
/// order as [`scribble_domain::stitch::JourneyBook`] numbers them; each customer's rows merged:
/// keys sorted, and a key in two rows (one event in an older fragment row too) kept once.
///
/// A million customers take two threads: each names and sorts half the rows, the halves merge,
/// and each thread then builds the journeys of half the customers. On the 2-core machine that
/// took the assembly of 10M events from 0.6-1.0 s down to 0.4-0.6 s.
fn journey_set<'a>(
    codes: &LabelCodes,
    mut rows: Vec<FragmentRow<'a>>,
    customers: &'a Customers<'a>,
    kept: Option<&HashSet<String>>,
) -> JourneySet {
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
    let named = |rows: Vec<FragmentRow<'a>>| -> Vec<NamedRow<'a>> {
        let mut named: Vec<NamedRow<'a>> = rows
            .into_iter()
            .map(|row| {
                let customer = customers
                    .get(row.identity)
                    .map_or(row.identity, |&(_, customer)| customer);
                (customer, row.keys)
            })
            .filter(|(customer, _)| kept.is_none_or(|kept| kept.contains(*customer)))
            .map(|(customer, keys)| (naming_prefix(customer), customer, keys))
            .collect();
        named.sort_unstable_by(naming);
        named
    };
    let second_half = rows.split_off(rows.len() / 2);
    let (first, second) = on_two_threads(|| named(rows), || named(second_half));
    let mut sorted = merged(first, second);
    let mut middle = sorted.len() / 2;
    while middle > 0 && middle < sorted.len() && sorted[middle].1 == sorted[middle - 1].1 {
        middle += 1;
    }
    let later = sorted.split_off(middle);
    let journeys_of = |rows: Vec<NamedRow<'_>>| -> Vec<Journey> {
        let mut journeys = Vec::new();
        let mut keys = Vec::new();
        let mut rows = rows.into_iter().peekable();
        while let Some((_, name, first)) = rows.next() {
            keys.clear();
            keys.extend_from_slice(first);
            while let Some((_, _, more)) = rows.next_if(|(_, next, _)| *next == name) {
                keys.extend_from_slice(more);
            }
            keys.sort_unstable();
            keys.dedup();
            journeys.push(Journey {
                customer: 0,
                steps: keys
                    .iter()
                    .map(|&key| {
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
        journeys
    };
    let (mut journeys, rest) = on_two_threads(|| journeys_of(sorted), || journeys_of(later));
    journeys.extend(rest);
    for (number, journey) in journeys.iter_mut().enumerate() {
        journey.customer = number as u32;
    }
    JourneySet {
        journeys,
        symbols,
        properties: Vec::new(),
    }
}

/// The order customers are numbered in: by naming prefix, then by name.
fn naming(a: &NamedRow<'_>, b: &NamedRow<'_>) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
        .then_with(|| naming_order(a.1).cmp(&naming_order(b.1)))
}

/// The rows of two sorted runs in one sorted run.
fn merged<'a>(first: Vec<NamedRow<'a>>, second: Vec<NamedRow<'a>>) -> Vec<NamedRow<'a>> {
    let mut rows = Vec::with_capacity(first.len() + second.len());
    let (mut first, mut second) = (first.into_iter().peekable(), second.into_iter().peekable());
    loop {
        let next = match (first.peek(), second.peek()) {
            (Some(a), Some(b)) if naming(b, a).is_lt() => second.next(),
            (Some(_), _) => first.next(),
            (None, _) => second.next(),
        };
        match next {
            Some(row) => rows.push(row),
            None => return rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label numbers of [`codes`]: touchpoint number (names sorted, from 1) times two channels.
    const AD_CLICK_ADS: u64 = 1;
    const PURCHASE_WEB: u64 = 4;
    const SITE_VISIT_WEB: u64 = 6;

    fn codes() -> LabelCodes {
        let names = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
        LabelCodes::new(
            names(&["site_visit", "purchase", "ad_click"]),
            names(&["web", "ads"]),
            0,
            10_000,
        )
        .unwrap()
    }

    /// The keys of touches `(at_ms, label, event hash)`.
    fn keys(codes: &LabelCodes, touches: &[(i64, u64, u64)]) -> Vec<u64> {
        touches
            .iter()
            .map(|&(at_ms, label, hash)| codes.pack(at_ms, label, hash))
            .collect()
    }

    /// A step as (time, touchpoint, channel).
    type SpelledStep<'a> = (i64, &'a str, &'a str);

    /// Each journey's customer number and its steps.
    fn spelled(set: &JourneySet) -> Vec<(u32, Vec<SpelledStep<'_>>)> {
        set.journeys
            .iter()
            .map(|journey| {
                let steps = journey
                    .steps
                    .iter()
                    .map(|step| {
                        let name = |sym| set.symbols.name(sym);
                        (step.at_ms, name(step.touchpoint), name(step.channel))
                    })
                    .collect();
                (journey.customer, steps)
            })
            .collect()
    }

    /// Five rows, split into halves of two and three: ann's rows fall into both halves (one of
    /// them an anonymous identity the overrides resolve to her, one an older copy of her
    /// fragment), so the halves must merge and the second pass must not cut her journey.
    fn fragments(codes: &LabelCodes) -> Vec<(&'static str, Vec<u64>)> {
        vec![
            ("a:zed", keys(codes, &[(100, SITE_VISIT_WEB, 1)])),
            ("u:ann", keys(codes, &[(200, PURCHASE_WEB, 2)])),
            ("u:ann", keys(codes, &[(200, PURCHASE_WEB, 2)])),
            ("a:bob", keys(codes, &[(50, AD_CLICK_ADS, 3)])),
            (
                "u:cara",
                keys(codes, &[(20, SITE_VISIT_WEB, 5), (10, AD_CLICK_ADS, 4)]),
            ),
        ]
    }

    fn rows<'a>(fragments: &'a [(&'static str, Vec<u64>)]) -> Vec<FragmentRow<'a>> {
        fragments
            .iter()
            .map(|(identity, keys)| FragmentRow { identity, keys })
            .collect()
    }

    #[test]
    fn rows_resolve_merge_and_number_customers_as_the_journey_book_does() {
        let codes = codes();
        let customers: Customers = [("a:zed", (1, "u:ann"))].into_iter().collect();
        let fragments = fragments(&codes);
        let set = journey_set(&codes, rows(&fragments), &customers, None);
        // User ids name customers before anonymous ids; the purchase in two rows counts once.
        assert_eq!(
            spelled(&set),
            vec![
                (
                    0,
                    vec![(100, "site_visit", "web"), (200, "purchase", "web")]
                ),
                (1, vec![(10, "ad_click", "ads"), (20, "site_visit", "web")]),
                (2, vec![(50, "ad_click", "ads")]),
            ]
        );
    }

    #[test]
    fn only_kept_customers_become_journeys() {
        let codes = codes();
        let customers: Customers = [("a:zed", (1, "u:ann"))].into_iter().collect();
        let kept: HashSet<_> = ["u:ann".to_owned(), "a:bob".to_owned()]
            .into_iter()
            .collect();
        let fragments = fragments(&codes);
        let set = journey_set(&codes, rows(&fragments), &customers, Some(&kept));
        assert_eq!(
            spelled(&set),
            vec![
                (
                    0,
                    vec![(100, "site_visit", "web"), (200, "purchase", "web")]
                ),
                (1, vec![(50, "ad_click", "ads")]),
            ]
        );
    }

    #[test]
    fn the_latest_override_of_each_identity_names_its_customer() {
        let overrides = OverrideRows::from_rows(&[
            // A later version, whatever order the rows come in, wins.
            ("a:zed", "a:zed", 1),
            ("a:zed", "u:ann", 3),
            ("a:zed", "a:old", 2),
            ("u:ann", "u:ann", 3),
            ("a:bob", "a:bob", 2),
            ("a:bob", "u:ann", 1),
            ("a:cy", "u:cy", 1),
        ]);
        let customers = latest_customers(&overrides);
        let mut customers: Vec<(&str, &str)> = customers
            .iter()
            .map(|(&identity, &(_, customer))| (identity, customer))
            .collect();
        customers.sort_unstable();
        assert_eq!(
            customers,
            vec![
                ("a:bob", "a:bob"),
                ("a:cy", "u:cy"),
                ("a:zed", "u:ann"),
                ("u:ann", "u:ann")
            ]
        );
    }
}
