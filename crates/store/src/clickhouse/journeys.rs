//! Journeys for reports that read no step property, read from the journey fragments: each
//! fragment comes back as one row (its identity and its packed touchpoints, see
//! [`LabelCodes`]) instead of every event with its JSON. The store resolves each identity to
//! its customer through the identity overrides, which it reads alongside, and sorting the rows
//! by customer name, which the journey order needs anyway, brings a customer's rows together,
//! where they merge into its journey. The domain's reports then run on the result as they do
//! on the embedded store's journeys.

use hashbrown::{HashMap, HashSet};
use std::time::Instant;

use ::clickhouse::Row;
use scribble_domain::event::{naming_order, naming_prefix};
use scribble_domain::journey::{Journey, JourneySet, Step};
use scribble_domain::paths::Breakdown;
use scribble_domain::stitch::JourneyFilter;
use scribble_domain::symbols::{Sym, Symbols};
use serde::Deserialize;
use tracing::{debug, trace};

use super::paths::{LabelCodes, Source};
use super::{string_literal, ClickHouseStore};
use crate::StoreError;

/// One journey fragment's identity and packed touchpoints, borrowed from the RowBinary
/// response that holds them: `keys` are the little-endian bytes of its `UInt64`s.
#[derive(Debug, Clone, Copy)]
struct FragmentKeys<'a> {
    identity: &'a str,
    keys: &'a [u8],
}

/// An identity whose customer is another identity.
#[derive(Debug, Row, Deserialize)]
struct OtherCustomer {
    identity: String,
    customer: String,
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
        let started = Instant::now();
        let rows_sql = self.fragment_rows_sql(project, from_ms, to_ms, &codes);
        let project_literal = string_literal(project);
        let overrides = self.overrides_sql(&project_literal);
        let other_customers_sql =
            format!("SELECT identity, resolved FROM ({overrides}) WHERE resolved != identity");
        let kept_sql = self.trait_customers_sql(&project_literal, &overrides, filter);
        trace!(sql = rows_sql, "fragment rows");
        // The small overrides and trait queries run while the fragment rows stream. Those come
        // uncompressed: for about 95 MB over loopback, LZ4 cost both ends more CPU than it saved.
        let uncompressed = self
            .client
            .clone()
            .with_compression(::clickhouse::Compression::None);
        // The rows come as RowBinary bytes and are read in place: a String and a Vec per row
        // cost the fetch of a million rows 0.4-0.6 s more.
        let (bytes, others, kept) = tokio::try_join!(
            async {
                uncompressed
                    .query(&rows_sql)
                    .fetch_bytes("RowBinary")?
                    .collect()
                    .await
            },
            self.client
                .query(&other_customers_sql)
                .fetch_all::<OtherCustomer>(),
            async {
                match &kept_sql {
                    Some(sql) => self.client.query(sql).fetch_all::<String>().await.map(Some),
                    None => Ok(None),
                }
            },
        )?;
        let fetched = started.elapsed();
        let (set, rows_fetched) = tokio::task::spawn_blocking(move || {
            let rows = fragment_rows(&bytes)?;
            let customers: HashMap<String, String> = others
                .into_iter()
                .map(|other| (other.identity, other.customer))
                .collect();
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

/// The rows of a RowBinary response to `SELECT identity, keys` (a `String` and an
/// `Array(UInt64)`), each borrowing its text and key bytes from `bytes`.
fn fragment_rows(bytes: &[u8]) -> Result<Vec<FragmentKeys<'_>>, StoreError> {
    let mut rows = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let identity = take(&mut rest, 1)?;
        let identity = std::str::from_utf8(identity)
            .map_err(::clickhouse::error::Error::InvalidUtf8Encoding)?;
        let keys = take(&mut rest, 8)?;
        rows.push(FragmentKeys { identity, keys });
    }
    Ok(rows)
}

/// Takes a RowBinary length (LEB128) and that many items of `item_size` bytes off `rest`.
fn take<'a>(rest: &mut &'a [u8], item_size: usize) -> Result<&'a [u8], StoreError> {
    let mut length = 0usize;
    let mut shift = 0;
    loop {
        let (&byte, after) = rest
            .split_first()
            .ok_or(::clickhouse::error::Error::NotEnoughData)?;
        *rest = after;
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift >= usize::BITS {
            return Err(::clickhouse::error::Error::NotEnoughData.into());
        }
    }
    let size = length
        .checked_mul(item_size)
        .filter(|&size| size <= rest.len())
        .ok_or(::clickhouse::error::Error::NotEnoughData)?;
    let (taken, after) = rest.split_at(size);
    *rest = after;
    Ok(taken)
}

/// A fragment row named by its customer: the customer's naming prefix, the customer's identity
/// key text, the row's key bytes.
type NamedRow<'a> = (u64, &'a str, &'a [u8]);

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
    mut rows: Vec<FragmentKeys<'a>>,
    customers: &'a HashMap<String, String>,
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
    let named = |rows: Vec<FragmentKeys<'a>>| -> Vec<NamedRow<'a>> {
        let mut named: Vec<NamedRow<'a>> = rows
            .into_iter()
            .map(|row| {
                let customer = customers
                    .get(row.identity)
                    .map_or(row.identity, String::as_str);
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
        while let Some((_, name, bytes)) = rows.next() {
            keys.clear();
            keys.extend(keys_of(bytes));
            while let Some((_, _, more)) = rows.next_if(|(_, next, _)| *next == name) {
                keys.extend(keys_of(more));
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

/// The keys in a row's little-endian key bytes.
fn keys_of(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .chunks_exact(8)
        .map(|key| u64::from_le_bytes(key.try_into().expect("chunks of 8 bytes")))
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

/// Runs `a` on this thread and `b` on another one at the same time; both results.
fn on_two_threads<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let mine = a();
        (
            mine,
            other.join().expect("a journey assembly thread panicked"),
        )
    })
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

    /// A fragment row of `identity` with touches `(at_ms, label, event hash)`, appended to
    /// `response` as ClickHouse writes it in RowBinary.
    fn row(
        codes: &LabelCodes,
        response: &mut Vec<u8>,
        identity: &str,
        touches: &[(i64, u64, u64)],
    ) {
        leb128(response, identity.len());
        response.extend(identity.as_bytes());
        leb128(response, touches.len());
        for &(at_ms, label, hash) in touches {
            response.extend(codes.pack(at_ms, label, hash).to_le_bytes());
        }
    }

    fn leb128(response: &mut Vec<u8>, mut value: usize) {
        while value >= 0x80 {
            response.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        response.push(value as u8);
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
    fn response(codes: &LabelCodes) -> Vec<u8> {
        let mut response = Vec::new();
        row(codes, &mut response, "a:zed", &[(100, SITE_VISIT_WEB, 1)]);
        row(codes, &mut response, "u:ann", &[(200, PURCHASE_WEB, 2)]);
        row(codes, &mut response, "u:ann", &[(200, PURCHASE_WEB, 2)]);
        row(codes, &mut response, "a:bob", &[(50, AD_CLICK_ADS, 3)]);
        row(
            codes,
            &mut response,
            "u:cara",
            &[(20, SITE_VISIT_WEB, 5), (10, AD_CLICK_ADS, 4)],
        );
        response
    }

    #[test]
    fn rows_resolve_merge_and_number_customers_as_the_journey_book_does() {
        let codes = codes();
        let customers: HashMap<_, _> = [("a:zed".to_owned(), "u:ann".to_owned())]
            .into_iter()
            .collect();
        let response = response(&codes);
        let rows = fragment_rows(&response).unwrap();
        let set = journey_set(&codes, rows, &customers, None);
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
        let customers: HashMap<_, _> = [("a:zed".to_owned(), "u:ann".to_owned())]
            .into_iter()
            .collect();
        let kept: HashSet<_> = ["u:ann".to_owned(), "a:bob".to_owned()]
            .into_iter()
            .collect();
        let response = response(&codes);
        let rows = fragment_rows(&response).unwrap();
        let set = journey_set(&codes, rows, &customers, Some(&kept));
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
    fn long_rows_read_whole_and_cut_rows_are_an_error() {
        let codes = codes();
        let name = "u:".to_owned() + &"x".repeat(200);
        let touches: Vec<(i64, u64, u64)> =
            (0..300).map(|n| (n, SITE_VISIT_WEB, n as u64)).collect();
        let mut response = Vec::new();
        row(&codes, &mut response, &name, &touches);
        row(&codes, &mut response, "a:bob", &[(50, AD_CLICK_ADS, 3)]);
        let rows = fragment_rows(&response).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].identity, name);
        assert_eq!(keys_of(rows[0].keys).count(), 300);
        assert_eq!(rows[1].identity, "a:bob");
        for cut in [1, 9, response.len() - 1] {
            assert!(
                fragment_rows(&response[..cut]).is_err(),
                "a response cut to {cut} bytes read as whole rows"
            );
        }
    }
}
