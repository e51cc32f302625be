//! Path graphs counted inside ClickHouse: the same graphs as [`scribble_domain::paths`] builds
//! from journeys, but only counted nodes and edges leave the server.
//!
//! One query does it all. Its innermost part reads the filtered touchpoints and names each one's
//! customer through `identity_overrides`. Each touchpoint becomes one `UInt64` sort key: the time
//! since the earliest filtered touchpoint in the high bits, then the label's number (labels are
//! numbered in name order, so equal times order by name as the journey book does), then bits of
//! a hash of the event id. Grouping by customer and sorting those keys gives the journey in
//! order; identical keys are the same event written twice (a replay not yet merged away) and are
//! dropped. Array functions then collapse repeats and cut each path as [`PathOptions`]
//! describes, still as keys, and one `ARRAY JOIN` turns the paths into transitions, whose labels
//! and times are decoded from the keys and counted per edge, with the exact median time. Array
//! sorts of plain integers are what ClickHouse 18.16 does fast; sorting tuples through lambdas
//! was ten times slower, and every array function over a million paths costs about 0.1 s, so
//! the query uses as few as it can.
//!
//! ClickHouse 18.16 drops a subquery column that the outer query names only inside lambdas, so
//! every array a lambda reads is also passed to it as an argument.
//!
//! Two distinct touchpoints of one customer in the same millisecond with the same label count
//! once if their id hashes also agree in the bits left over (at least 8, usually over 16).

use std::collections::HashMap;
use std::time::Instant;

use scribble_domain::paths::{
    top_per_step, Breakdown, EdgeCount, GraphView, NodeCount, PathGraph, PathOptions, DROP_OFF,
    END, OTHER, START,
};
use scribble_domain::stitch::JourneyFilter;
use tracing::{debug, trace};
use uuid::Uuid;

use super::{string_array, string_literal, time_bounds, ClickHouseStore};
use crate::StoreError;

/// Labels of one report by number: `0` is the virtual start (or "no previous step"), `1..=real`
/// the touchpoints (or touchpoint-channel pairs), then the virtual end, drop-off and other.
///
/// A touchpoint's sort key packs, from the high bits down: its time since `first_ms`
/// (`time_bits`), its label number (`code_bits`), and the low bits of its event-id hash.
pub(super) struct LabelCodes {
    pub(super) touchpoints: Vec<String>,
    /// With a channel breakdown, the channels; empty otherwise.
    pub(super) channels: Vec<String>,
    time_bits: u32,
    code_bits: u32,
    first_ms: i64,
    /// `cityHash64` of each touchpoint and channel, in the same order: the codes journey
    /// fragments store.
    touchpoint_hashes: Vec<u64>,
    channel_hashes: Vec<u64>,
}

impl LabelCodes {
    /// The numbering of `touchpoints` (and `channels`, empty without a breakdown) in name order,
    /// for touchpoints between `first_ms` and `last_ms`. Fails when time and label numbers
    /// leave fewer than 8 bits of the sort key for the event-id hash.
    pub(super) fn new(
        mut touchpoints: Vec<String>,
        mut channels: Vec<String>,
        first_ms: i64,
        last_ms: i64,
    ) -> Result<Self, StoreError> {
        touchpoints.sort();
        channels.sort();
        let mut codes = LabelCodes {
            touchpoints,
            channels,
            // At least one bit, so that no shift is by all 64 bits (undefined in ClickHouse,
            // an overflow in Rust) when every touchpoint shares one millisecond.
            time_bits: bits_for(last_ms.abs_diff(first_ms)).max(1),
            code_bits: 0,
            first_ms,
            touchpoint_hashes: Vec::new(),
            channel_hashes: Vec::new(),
        };
        codes.code_bits = bits_for(codes.other());
        if codes.time_bits + codes.code_bits > 56 {
            return Err(StoreError::ReportTooWide);
        }
        Ok(codes)
    }

    fn real(&self) -> u64 {
        (self.touchpoints.len() * self.channels.len().max(1)) as u64
    }
    fn end(&self) -> u64 {
        self.real() + 1
    }
    fn drop_off(&self) -> u64 {
        self.real() + 2
    }
    fn other(&self) -> u64 {
        self.real() + 3
    }
    pub(super) fn hash_bits(&self) -> u32 {
        64 - self.time_bits - self.code_bits
    }
    /// Where a packed key's time starts: above the label number and the hash bits.
    fn time_shift(&self) -> u32 {
        self.hash_bits() + self.code_bits
    }
    fn code_mask(&self) -> u64 {
        (1u64 << self.code_bits) - 1
    }

    /// A packed key's time (epoch ms) and label number.
    pub(super) fn unpack(&self, key: u64) -> (i64, u64) {
        let label = (key >> self.hash_bits()) & self.code_mask();
        let time = (key >> self.time_shift()) as i64 + self.first_ms;
        (time, label)
    }

    /// The key [`pack_key`] computes in SQL, for tests that build rows by hand.
    #[cfg(test)]
    pub(super) fn pack(&self, at_ms: i64, label: u64, hash: u64) -> u64 {
        let hash_bits = self.hash_bits();
        (((at_ms - self.first_ms) as u64) << self.time_shift())
            | (label << hash_bits)
            | (hash & ((1u64 << hash_bits) - 1))
    }

    /// The touchpoint and channel indexes of a real label number of a channel breakdown.
    pub(super) fn touchpoint_and_channel(&self, label: u64) -> (usize, usize) {
        let per_touchpoint = self.channels.len().max(1) as u64;
        (
            ((label - 1) / per_touchpoint) as usize,
            ((label - 1) % per_touchpoint) as usize,
        )
    }

    /// The number of touchpoint `name` (from 1), as anchors compare it.
    fn touchpoint(&self, name: &str) -> Option<u64> {
        self.touchpoints
            .binary_search_by(|known| known.as_str().cmp(name))
            .ok()
            .map(|index| index as u64 + 1)
    }

    fn name(&self, code: u64) -> String {
        match code {
            0 => START.to_owned(),
            code if code == self.end() => END.to_owned(),
            code if code == self.drop_off() => DROP_OFF.to_owned(),
            code if code == self.other() => OTHER.to_owned(),
            code if self.channels.is_empty() => self.touchpoints[code as usize - 1].clone(),
            code => {
                let (touchpoint, channel) = self.touchpoint_and_channel(code);
                format!(
                    "{} ({})",
                    self.touchpoints[touchpoint], self.channels[channel]
                )
            }
        }
    }

    /// SQL for the label number of a touchpoint row of the events table.
    fn event_label_sql(&self) -> String {
        let touchpoint = format!("indexOf({}, touchpoint)", string_array(&self.touchpoints));
        let channel = format!("indexOf({}, channel)", string_array(&self.channels));
        self.combined_label_sql(&touchpoint, &channel)
    }

    /// SQL for the label number of a fragment's touchpoint whose name and channel codes are
    /// `c` and `ch`.
    fn fragment_label_sql(&self) -> String {
        let rank = |hashes: &[u64]| {
            let hashes: Vec<String> = hashes.iter().map(u64::to_string).collect();
            let ranks: Vec<String> = (1..=hashes.len()).map(|rank| rank.to_string()).collect();
            format!("[{}], [{}]", hashes.join(","), ranks.join(","))
        };
        let touchpoint = format!("transform(c, {}, 0)", rank(&self.touchpoint_hashes));
        let channel = format!("transform(ch, {}, 0)", rank(&self.channel_hashes));
        self.combined_label_sql(&touchpoint, &channel)
    }

    /// The label number from a touchpoint's number and, with a breakdown, its channel's.
    fn combined_label_sql(&self, touchpoint: &str, channel: &str) -> String {
        if self.channels.is_empty() {
            format!("toUInt64({touchpoint})")
        } else {
            format!(
                "toUInt64(({touchpoint} - 1) * {} + {channel})",
                self.channels.len()
            )
        }
    }

    /// SQL for the label number of the packed key `key` (`0` for the key `0`).
    fn label_of(&self, key: &str) -> String {
        format!(
            "bitAnd(bitShiftRight({key}, {}), {})",
            self.hash_bits(),
            self.code_mask()
        )
    }

    /// SQL for the milliseconds from the key `earlier` to the key `later`.
    fn millis_between(&self, earlier: &str, later: &str) -> String {
        let shift = self.time_shift();
        format!("(toInt64(bitShiftRight({later}, {shift})) - toInt64(bitShiftRight({earlier}, {shift})))")
    }

    /// A packed key with label number `label`, to append a virtual step (the end, a drop-off)
    /// to a path of keys; its time is never read.
    fn virtual_key(&self, label: u64) -> u64 {
        label << self.hash_bits()
    }

    /// SQL turning the label-number array `codes` into touchpoint numbers, for anchors.
    fn touchpoints_sql(&self, codes: &str) -> String {
        if self.channels.is_empty() {
            codes.to_owned()
        } else {
            format!(
                "arrayMap(x -> intDiv(x - 1, {}) + 1, {codes})",
                self.channels.len()
            )
        }
    }
}

/// The label names of a report with their `cityHash64`, computed once per distinct name.
const NAMES_AND_HASHES: &str = "arrayMap(x -> (x, cityHash64(x)), groupUniqArray(touchpoint)), \
     arrayMap(x -> (x, cityHash64(x)), groupUniqArray(channel))";

/// The labels and time span of the touchpoints a report selects.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct LabelSpan {
    /// Each name with its `cityHash64`, the code journey fragments store for it.
    touchpoints: Vec<(String, u64)>,
    channels: Vec<(String, u64)>,
    first_ms: i64,
    last_ms: i64,
    count: u64,
}

/// How many customers' positional paths pass `label` at `step`.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct StepLabelCount {
    step: u64,
    label: u64,
    customers: u64,
}

/// One counted transition row: `(step, from, to)` with its counts.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct EdgeRow {
    step: u64,
    from_code: u64,
    to_code: u64,
    transitions: u64,
    customers: u64,
    first_visits: u64,
    median_seconds: f64,
    timed: u8,
}

impl ClickHouseStore {
    /// The path graph of `project` over the journeys `filter` selects, as
    /// [`scribble_domain::paths::positional_graph`] or
    /// [`scribble_domain::paths::state_graph`] would draw it.
    pub(super) async fn count_path_graph(
        &self,
        project: &str,
        filter: &JourneyFilter,
        view: GraphView,
        options: &PathOptions,
    ) -> Result<PathGraph, StoreError> {
        let empty = PathGraph::from_counts(view, 0, Vec::new(), Vec::new());
        if options.max_steps == 0 {
            return Ok(empty);
        }
        let source = Source::of(project, filter);
        let Some(codes) = self.label_codes(&source, options.breakdown).await? else {
            return Ok(empty);
        };
        let anchor = |name: &Option<String>| match name {
            None => Some(None),
            Some(name) => codes.touchpoint(name).map(Some),
        };
        let (Some(start), Some(end)) = (anchor(&options.start), anchor(&options.end)) else {
            return Ok(empty);
        };
        let paths_sql = self.paths_sql(project, filter, &source, &codes, start, end, options);
        let started = Instant::now();
        let rows = match view {
            GraphView::State => {
                self.fetch_edges(&state_edges_sql(&paths_sql, &codes, options))
                    .await?
            }
            GraphView::Positional => self.positional_rows(&paths_sql, &codes, options).await?,
        };
        debug!(
            project,
            ?view,
            edge_rows = rows.len(),
            query_ms = started.elapsed().as_millis() as u64,
            "path graph counted in ClickHouse"
        );
        Ok(graph_of(view, &codes, rows))
    }

    /// The positional view's edge rows. With a top N, a first pass counts the customers at
    /// each label of every step, and the edges are then counted with the labels outside each
    /// step's top N as [`OTHER`]. Both passes read the paths from a temporary table of the
    /// request's own session, so the journeys are grouped and cut once.
    async fn positional_rows(
        &self,
        paths_sql: &str,
        codes: &LabelCodes,
        options: &PathOptions,
    ) -> Result<Vec<EdgeRow>, StoreError> {
        let Some(top_n) = options.top_n else {
            return self
                .fetch_edges(&positional_edges_sql(paths_sql, codes, options, None))
                .await;
        };
        let session = self
            .client
            .clone()
            .with_setting("session_id", Uuid::new_v4().to_string());
        let started = Instant::now();
        let cache = format!("CREATE TEMPORARY TABLE report_paths ENGINE = Memory AS {paths_sql}");
        trace!(sql = cache, "paths cached");
        session.query(&cache).execute().await?;
        let cached_ms = started.elapsed().as_millis() as u64;
        let cached = "SELECT path, over FROM report_paths";
        let ranking = positional_ranking_sql(cached, codes, options);
        trace!(sql = ranking, "positional ranking");
        let counts: Vec<StepLabelCount> = session.query(&ranking).fetch_all().await?;
        let ranked_ms = started.elapsed().as_millis() as u64 - cached_ms;
        let kept = hiding_ranking(&counts, codes, top_n);
        let counted = positional_edges_sql(cached, codes, options, kept.as_deref());
        trace!(sql = counted, "positional edges");
        let rows = session.query(&counted).fetch_all().await?;
        debug!(cached_ms, ranked_ms, "positional passes");
        Ok(rows)
    }

    async fn fetch_edges(&self, sql: &str) -> Result<Vec<EdgeRow>, StoreError> {
        trace!(sql, "edge query");
        Ok(self.client.query(sql).fetch_all::<EdgeRow>().await?)
    }

    /// The labels and time span of the touchpoints `source` reads; `None` when there are none.
    pub(super) async fn label_codes(
        &self,
        source: &Source,
        breakdown: Breakdown,
    ) -> Result<Option<LabelCodes>, StoreError> {
        let sql = match source {
            Source::Events { where_sql } => format!(
                "SELECT {NAMES_AND_HASHES}, min(at_ms), max(at_ms), count() \
                 FROM {{db}}.events WHERE {where_sql}"
            ),
            Source::Fragments {
                project,
                from_ms,
                to_ms,
            } => {
                let mut sql = format!(
                    "SELECT {NAMES_AND_HASHES}, min(first_ms), max(last_ms), count() \
                     FROM {{db}}.touchpoint_labels WHERE project = {}",
                    string_literal(project)
                );
                sql.extend(from_ms.map(|from| format!(" AND last_ms >= {from}")));
                sql.extend(to_ms.map(|to| format!(" AND first_ms < {to}")));
                sql
            }
        };
        let LabelSpan {
            touchpoints,
            mut channels,
            mut first_ms,
            mut last_ms,
            count,
        } = self.client.query(&self.sql(&sql)).fetch_one().await?;
        if count == 0 {
            return Ok(None);
        }
        if breakdown == Breakdown::None {
            channels.clear();
        }
        let hashes: HashMap<String, u64> = touchpoints.iter().chain(&channels).cloned().collect();
        let names = |pairs: Vec<(String, u64)>| pairs.into_iter().map(|(name, _)| name).collect();
        let (touchpoints, channels) = (names(touchpoints), names(channels));
        if let Source::Fragments { from_ms, to_ms, .. } = source {
            // The label table knows each label's whole span; the report needs only the filter's.
            first_ms = first_ms.max(from_ms.unwrap_or(i64::MIN));
            last_ms = last_ms
                .min(to_ms.map_or(i64::MAX, |to| to - 1))
                .max(first_ms);
        }
        let mut codes = LabelCodes::new(touchpoints, channels, first_ms, last_ms)?;
        codes.touchpoint_hashes = codes.touchpoints.iter().map(|name| hashes[name]).collect();
        codes.channel_hashes = codes.channels.iter().map(|name| hashes[name]).collect();
        Ok(Some(codes))
    }

    /// SQL listing the `customer`s whose latest scalar value of every trait in `filter` is the
    /// one asked for; `None` without trait filters. `project` is a literal.
    pub(super) fn trait_customers_sql(
        &self,
        project: &str,
        overrides: &str,
        filter: &JourneyFilter,
    ) -> Option<String> {
        if filter.traits.is_empty() {
            return None;
        }
        let wanted: Vec<String> = filter
            .traits
            .iter()
            .map(|(key, value)| {
                format!(
                    "(key = {} AND latest_value = {})",
                    string_literal(key),
                    string_literal(value)
                )
            })
            .collect();
        let keys: Vec<String> = filter.traits.iter().map(|(key, _)| key.clone()).collect();
        Some(self.sql(&format!(
            "SELECT customer FROM (
                SELECT if(resolved = '', identity, resolved) AS customer, key,
                       argMax(value, (at_ms, event_id)) AS latest_value,
                       argMax(scalar, (at_ms, event_id)) AS latest_scalar
                FROM (SELECT identity, key, value, scalar, at_ms, event_id
                      FROM {{db}}.traits WHERE project = {project} AND has({keys}, key))
                ANY LEFT JOIN ({overrides}) USING identity
                GROUP BY customer, key)
             WHERE latest_scalar = 1 AND ({wanted})
             GROUP BY customer HAVING count() = {count}",
            keys = string_array(&keys),
            wanted = wanted.join(" OR "),
            count = filter.traits.len(),
        )))
    }

    /// SQL with one row per customer of the touchpoints `source` reads: `customer_hash` and
    /// `keys`, every touchpoint packed as [`LabelCodes`] describes, sorted. Equal keys are one
    /// event stored twice (an unmerged replay, or an older fragment row) and count once. With
    /// `prefix`, each journey fragment gives only its first `prefix` touchpoints (see
    /// [`fragment_keys_sql`]): then `keys` starts as the journey does, and is longer than
    /// `prefix - 1` exactly when the journey is.
    ///
    /// Identities and customers are joined and grouped by their `cityHash64`: on ClickHouse
    /// 18.16 a join on those numbers took about 0.3 s less over a million fragments than one on
    /// the identity strings. The grouping reads the join directly: a subquery between them
    /// cost 18.16 another second.
    fn customer_keys_sql(
        &self,
        project: &str,
        filter: &JourneyFilter,
        source: &Source,
        codes: &LabelCodes,
        prefix: Option<usize>,
    ) -> String {
        let project = string_literal(project);
        let overrides = self.override_hashes_sql(&project);
        let trait_filter = self
            .trait_customers_sql(&project, &self.overrides_sql(&project), filter)
            .map_or_else(String::new, |customers| {
                format!(" WHERE customer_hash IN (SELECT cityHash64(customer) FROM ({customers}))")
            });
        let customer_hash = "if(overridden = 1, resolved_hash, identity_hash) AS customer_hash";
        match source {
            Source::Events { where_sql } => self.sql(&format!(
                "SELECT {customer_hash}, arrayDistinct(arraySort(groupArray(key))) AS keys
                 FROM (
                    SELECT cityHash64(if(user_id != '', concat('u:', user_id), concat('a:', anonymous_id))) AS identity_hash,
                           {key} AS key
                    FROM {{db}}.events WHERE {where_sql})
                 ANY LEFT JOIN ({overrides}) USING identity_hash
                 {trait_filter}
                 GROUP BY customer_hash",
                key = pack_key(codes, "at_ms", &codes.event_label_sql(), "cityHash64(toString(event_id))"),
            )),
            Source::Fragments { from_ms, to_ms, .. } => self.sql(&format!(
                "SELECT {customer_hash}, arrayDistinct(arraySort(groupArrayArray(fragment_keys))) AS keys
                 FROM (
                    SELECT cityHash64(identity) AS identity_hash, {fragment_keys} AS fragment_keys
                    FROM {{db}}.journey_fragments WHERE project = {project})
                 ANY LEFT JOIN ({overrides}) USING identity_hash
                 {trait_filter}
                 GROUP BY customer_hash",
                fragment_keys = fragment_keys_sql(codes, *from_ms, *to_ms, prefix),
            )),
        }
    }

    /// SQL with one row per journey fragment of `project` that has touchpoints within
    /// `from_ms..to_ms`: its `identity` and `keys`, those touchpoints packed as [`LabelCodes`]
    /// describes. A customer may have several rows (an anonymous and a user fragment, or an
    /// older row not merged yet) that share keys; the caller resolves identities and merges
    /// them. Grouping a million customers here cost ClickHouse 18.16 more than the rest of the
    /// query together, and joining the identity overrides doubled the query's time, while the
    /// caller sorts customers by name anyway.
    pub(super) fn fragment_rows_sql(
        &self,
        project: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        codes: &LabelCodes,
    ) -> String {
        self.sql(&format!(
            "SELECT identity, keys FROM (
                SELECT identity, {fragment_keys} AS keys
                FROM {{db}}.journey_fragments WHERE project = {project})
             WHERE length(keys) > 0",
            project = string_literal(project),
            fragment_keys = fragment_keys_sql(codes, from_ms, to_ms, None),
        ))
    }

    /// Each overridden identity's `identity_hash` with its latest customer's `resolved_hash`
    /// (`cityHash64` both) and `overridden` set, to join identities to customers.
    fn override_hashes_sql(&self, project_literal: &str) -> String {
        self.sql(&format!(
            "SELECT cityHash64(identity) AS identity_hash, \
                    argMax(cityHash64(customer), version) AS resolved_hash, toUInt8(1) AS overridden \
             FROM {{db}}.identity_overrides WHERE project = {project_literal} GROUP BY identity_hash"
        ))
    }

    /// Each identity's latest customer from the identity overrides, as `identity, resolved`.
    pub(super) fn overrides_sql(&self, project_literal: &str) -> String {
        self.sql(&format!(
            "SELECT identity, argMax(customer, version) AS resolved \
             FROM {{db}}.identity_overrides WHERE project = {project_literal} GROUP BY identity"
        ))
    }

    /// SQL with one row per customer that has a path: `path`, its steps as packed keys, and
    /// `over` (whether the path ends where the customer's journey does).
    #[allow(clippy::too_many_arguments)]
    fn paths_sql(
        &self,
        project: &str,
        filter: &JourneyFilter,
        source: &Source,
        codes: &LabelCodes,
        start: Option<u64>,
        end: Option<u64>,
        options: &PathOptions,
    ) -> String {
        let max = options.max_steps;
        if (start, end) == (None, None) && !options.collapse_repeats {
            // The path is the journey's first `max` steps, and it is over unless there is one
            // more: nothing needs decoding, and each fragment gives only its first `max + 1`.
            let keys_sql = self.customer_keys_sql(project, filter, source, codes, Some(max + 1));
            return format!(
                "SELECT arraySlice(keys, 1, {max}) AS path, toUInt8(length(keys) <= {max}) AS over
                 FROM ({keys_sql})
                 WHERE length(keys) > 0"
            );
        }
        let keys_sql = self.customer_keys_sql(project, filter, source, codes, None);
        let decoded = format!(
            "SELECT keys, arrayMap(x -> {label}, keys) AS all_codes FROM ({keys_sql})",
            label = codes.label_of("x"),
        );
        let collapsed = if options.collapse_repeats {
            format!(
                "SELECT arrayMap((x, i) -> i = 1 OR x != all_codes[i - 1], all_codes, arrayEnumerate(all_codes)) AS keep,
                        arrayFilter((x, k) -> k, all_codes, keep) AS codes,
                        arrayFilter((x, k) -> k, keys, keep) AS journey,
                        length(codes) AS journey_length
                 FROM ({decoded})"
            )
        } else {
            format!("SELECT all_codes AS codes, keys AS journey, length(keys) AS journey_length FROM ({decoded})")
        };
        let touchpoints = codes.touchpoints_sql("codes");
        // `first` and `length` cut the path out of the (collapsed) journey, 1-based.
        let (first, length) = match (start, end) {
            (None, None) => ("1".to_owned(), format!("least(length(codes), {max})")),
            (Some(start), None) => (
                format!("indexOf({touchpoints}, {start})"),
                format!("if(path_first = 0, 0, least(toInt64(length(codes)) - path_first + 1, {max}))"),
            ),
            (None, Some(end)) => (
                format!("greatest(1, toInt64(indexOf({touchpoints}, {end})) - {max} + 1)"),
                format!("if(indexOf({touchpoints}, {end}) = 0, 0, toInt64(indexOf({touchpoints}, {end})) - path_first + 1)"),
            ),
            (Some(start), Some(end)) => (
                format!("indexOf({touchpoints}, {start})"),
                format!(
                    "if(path_first = 0 OR indexOf(arraySlice({touchpoints}, path_first + 1), {end}) = 0, 0, \
                     least(toInt64(indexOf(arraySlice({touchpoints}, path_first + 1), {end})) + 1, {max}))"
                ),
            ),
        };
        format!(
            "SELECT arraySlice(journey, path_first, path_length) AS path,
                    toUInt8(path_first + path_length - 1 = journey_length) AS over
             FROM (SELECT codes, journey, journey_length, toInt64({first}) AS path_first, toInt64({length}) AS path_length
                   FROM ({collapsed}))
             WHERE path_length > 0"
        )
    }
}

/// SQL packing a touchpoint's time, label and event hash into one sortable key, as
/// [`LabelCodes`] describes.
fn pack_key(codes: &LabelCodes, time: &str, label: &str, hash: &str) -> String {
    let hash_bits = codes.hash_bits();
    format!(
        "bitOr(bitOr(bitShiftLeft(toUInt64({time} - {first}), {shift}), \
         bitShiftLeft({label}, {hash_bits})), bitAnd({hash}, {hash_mask}))",
        first = codes.first_ms,
        shift = codes.time_shift(),
        hash_mask = (1u64 << hash_bits) - 1,
    )
}

/// SQL for a journey fragment's packed keys, only those of touchpoints within `from_ms..to_ms`,
/// and with `prefix` only the first `prefix` of those.
///
/// A fragment holds its touchpoints in journey order: by time, touchpoint and channel name,
/// then event id, where keys order the last by id hash. So a fragment's first `prefix`
/// touchpoints may differ from its first `prefix` keys only in touchpoints that agree in time
/// and label, which a path cannot tell apart; and since a customer's journey is its fragments'
/// touchpoints merged, its first `prefix` steps are among its fragments' first `prefix`.
/// Without a time filter, only those are packed at all.
fn fragment_keys_sql(
    codes: &LabelCodes,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    prefix: Option<usize>,
) -> String {
    let bounds = time_bounds("t", from_ms, to_ms);
    let column = |name: &str| match prefix {
        Some(prefix) if bounds.is_empty() => format!("arraySlice({name}, 1, {prefix})"),
        _ => name.to_owned(),
    };
    let (parameters, columns) = if codes.channels.is_empty() {
        (
            "t, c, h",
            [column("times"), column("codes"), column("id_hashes")].join(", "),
        )
    } else {
        (
            "t, c, ch, h",
            [
                column("times"),
                column("codes"),
                column("channel_codes"),
                column("id_hashes"),
            ]
            .join(", "),
        )
    };
    let keys = format!(
        "arrayMap(({parameters}) -> {key}, {columns})",
        key = pack_key(codes, "t", &codes.fragment_label_sql(), "h"),
    );
    if bounds.is_empty() {
        return keys;
    }
    let kept = format!(
        "arrayFilter((k, t) -> {}, {keys}, times)",
        bounds.join(" AND ")
    );
    match prefix {
        Some(prefix) => format!("arraySlice({kept}, 1, {prefix})"),
        None => kept,
    }
}

/// Where a report reads its touchpoints: the journey fragments, or the raw events when a
/// property filter needs each event's properties (fragments do not keep them).
pub(super) enum Source {
    Fragments {
        project: String,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    },
    Events {
        where_sql: String,
    },
}

impl Source {
    pub(super) fn of(project: &str, filter: &JourneyFilter) -> Self {
        if filter.properties.is_empty() {
            Self::Fragments {
                project: project.to_owned(),
                from_ms: filter.from_ms,
                to_ms: filter.to_ms,
            }
        } else {
            Self::Events {
                where_sql: touch_filter_sql(project, filter),
            }
        }
    }
}

/// The `WHERE` condition selecting the touchpoints `filter` keeps (traits aside).
fn touch_filter_sql(project: &str, filter: &JourneyFilter) -> String {
    let mut conditions = vec![
        format!("project = {}", string_literal(project)),
        "kind = 'touchpoint'".to_owned(),
    ];
    conditions.extend(time_bounds("at_ms", filter.from_ms, filter.to_ms));
    for (key, value) in &filter.properties {
        conditions.push(format!(
            "arrayExists((k, v) -> k = {} AND v = {}, prop_keys, prop_values)",
            string_literal(key),
            string_literal(value)
        ));
    }
    conditions.join(" AND ")
}

/// Of the positional `counts`, the `(step, label)` pairs within the top `top_n` of their step;
/// `None` when they are all of them, so nothing is hidden.
fn hiding_ranking(
    counts: &[StepLabelCount],
    codes: &LabelCodes,
    top_n: usize,
) -> Option<Vec<(usize, u64)>> {
    let customers: HashMap<(usize, u64), usize> = counts
        .iter()
        .map(|count| ((count.step as usize, count.label), count.customers as usize))
        .collect();
    let labels = customers.len();
    let names: HashMap<u64, String> = customers
        .keys()
        .map(|&(_, code)| (code, codes.name(code)))
        .collect();
    let kept = top_per_step(customers, top_n, |code| names[code].as_str());
    (kept.len() < labels).then(|| kept.into_iter().collect())
}

/// The transitions of every path of `steps_sql` (columns `steps`, packed keys, and whatever
/// `extra` names), one row each: `key` and `previous_key` (`0` before the first step), the
/// columns of `extra`, and one column per `(array, name)` of `arrays`: `array` is SQL for a
/// per-step array computed from `steps` and `previous_steps`, `name` the column its elements
/// are joined as (the array itself is `{name}s`). One `ARRAY JOIN` of plain arrays, the labels
/// and times decoded from the keys afterwards: on ClickHouse 18.16, each array function over
/// a million paths costs about 0.1 s, while arithmetic on the joined rows costs little.
fn transitions_sql(steps_sql: &str, extra: &str, arrays: &[(&str, &str)]) -> String {
    let computed: String = arrays
        .iter()
        .map(|(array, alias)| format!(", {array} AS {alias}s"))
        .collect();
    let joined: String = arrays
        .iter()
        .map(|(_, alias)| format!(", {alias}s AS {alias}"))
        .collect();
    format!(
        "SELECT key, previous_key{extra_columns}{joined_columns}
         FROM (SELECT steps, previous_steps{extra_columns}{computed}
               FROM (SELECT steps, arrayPushFront(arrayPopBack(steps), toUInt64(0)) AS previous_steps{extra_columns}
                     FROM ({steps_sql})))
         ARRAY JOIN steps AS key, previous_steps AS previous_key{joined}",
        extra_columns = if extra.is_empty() { String::new() } else { format!(", {extra}") },
        joined_columns = arrays
            .iter()
            .map(|(_, alias)| format!(", {alias}"))
            .collect::<String>(),
    )
}

/// The outer part of both views' edge queries: over `transitions` with columns `step`, `from`,
/// `to`, `timed` and `seconds`, the edge rows in [`EdgeRow`] order. The exact median averages
/// the two middle values: `quantilesExact` takes the value at index `floor(level * count)` of
/// the sorted values, so level 0.5 gives the upper one, and a level just below it the lower
/// one (the same one for an odd count) for any edge of fewer than a billion transitions. Both
/// come from one state, which took 0.2-0.3 s less over 10M events than two.
fn edge_rows_sql(transitions: &str, customers: &str, first_visits: &str) -> String {
    format!(
        "SELECT step, from_code, to_code, count() AS transitions,
                {customers} AS customers, {first_visits} AS first_visits,
                arrayReduce('sum', quantilesExactIf(0.499999999, 0.5)(seconds, timed = 1)) / 2 AS median_seconds,
                toUInt8(countIf(timed = 1) > 0) AS timed_edge
         FROM ({transitions})
         GROUP BY step, from_code, to_code"
    )
}

/// SQL counting the state view's edges: `step` is 0, `from` 0 is the start node. A path that
/// ends where its journey does, with drop-offs shown, gets the end node as one more step.
fn state_edges_sql(paths_sql: &str, codes: &LabelCodes, options: &PathOptions) -> String {
    let end = codes.end();
    let steps = if options.drop_offs {
        format!(
            "SELECT if(over = 1, arrayPushBack(path, toUInt64({})), path) AS steps FROM ({paths_sql})",
            codes.virtual_key(end)
        )
    } else {
        format!("SELECT path AS steps FROM ({paths_sql})")
    };
    // A transition is the customer's first of its edge, and a step the first visit of its
    // node, where their rank among equal ones in the path is 1.
    let edges = format!(
        "arrayEnumerateUniq(arrayMap((p, x) -> {from} * {pair_base} + {to}, previous_steps, steps))",
        from = codes.label_of("p"),
        to = codes.label_of("x"),
        pair_base = codes.other() + 1,
    );
    let nodes = format!(
        "arrayEnumerateUniq(arrayMap(x -> {}, steps))",
        codes.label_of("x")
    );
    let transitions = transitions_sql(&steps, "", &[(&edges, "edge_rank"), (&nodes, "node_rank")]);
    let (from, to) = (codes.label_of("previous_key"), codes.label_of("key"));
    edge_rows_sql(
        &format!(
            "SELECT toUInt64(0) AS step, {from} AS from_code, {to} AS to_code,
                    toUInt8(from_code != 0 AND to_code != {end}) AS timed,
                    {millis} / 1000 AS seconds,
                    toUInt8(edge_rank = 1) AS edge_visit, toUInt8(node_rank = 1) AS node_visit
             FROM ({transitions})",
            millis = codes.millis_between("previous_key", "key"),
        ),
        "sum(edge_visit)",
        "sum(node_visit)",
    )
}

/// SQL counting the positional view's edges of [`positional_transitions_sql`].
fn positional_edges_sql(
    paths_sql: &str,
    codes: &LabelCodes,
    options: &PathOptions,
    kept: Option<&[(usize, u64)]>,
) -> String {
    // A positional path passes each (step, label) once, so every transition is a customer.
    edge_rows_sql(
        &positional_transitions_sql(paths_sql, codes, options, kept),
        "count()",
        "count()",
    )
}

/// SQL for the step of a positional path's first label: the paths of an end anchor without a
/// start end at the last step shown, all others start at step 1.
fn positional_first_step_sql(options: &PathOptions) -> String {
    if options.start.is_none() && options.end.is_some() {
        format!("toInt64({}) + 1 - toInt64(length(path))", options.max_steps)
    } else {
        "toInt64(1)".to_owned()
    }
}

/// SQL counting the customers at each `label` of each positional `step`, drop-offs aside, to
/// rank the labels of a top N: the labels of the paths, with no transitions built.
fn positional_ranking_sql(paths_sql: &str, codes: &LabelCodes, options: &PathOptions) -> String {
    format!(
        "SELECT toUInt64(first_step + position - 1) AS step, {label} AS label, count() AS customers
         FROM (SELECT path, arrayEnumerate(path) AS positions, {first_step} AS first_step
               FROM ({paths_sql}))
         ARRAY JOIN path AS key, positions AS position
         GROUP BY step, label",
        label = codes.label_of("key"),
        first_step = positional_first_step_sql(options),
    )
}

/// SQL for the positional view's transitions: `step` is the step of `to`, `from` 0 marks the
/// first step of a path. With `kept`, labels outside it become the other node. A path shorter
/// than the steps shown, with drop-offs shown, gets the drop-off node as one more step.
fn positional_transitions_sql(
    paths_sql: &str,
    codes: &LabelCodes,
    options: &PathOptions,
    kept: Option<&[(usize, u64)]>,
) -> String {
    let max = options.max_steps;
    let first_step = positional_first_step_sql(options);
    let drop_off = codes.drop_off();
    let steps = if options.drop_offs && options.end.is_none() {
        format!(
            "if(length(path) < {max}, arrayPushBack(path, toUInt64({})), path)",
            codes.virtual_key(drop_off)
        )
    } else {
        "path".to_owned()
    };
    let steps_sql =
        format!("SELECT {steps} AS steps, {first_step} AS first_step FROM ({paths_sql})");
    let transitions = transitions_sql(
        &steps_sql,
        "first_step",
        &[("arrayEnumerate(steps)", "position")],
    );
    let code_base = codes.other() + 1;
    let shown = |label: &str, step: &str| match kept {
        None => label.to_owned(),
        Some([]) => format!("toUInt64({})", codes.other()),
        Some(kept) => {
            let kept: Vec<String> = kept
                .iter()
                .map(|&(step, code)| (step as u64 * code_base + code).to_string())
                .collect();
            // `IN` a literal set is a hash lookup; `has` of a literal array took 18.16 twice as
            // long over 10M events.
            format!(
                "if(toUInt64({step}) * {code_base} + {label} IN ({}), {label}, toUInt64({}))",
                kept.join(","),
                codes.other()
            )
        }
    };
    let label = codes.label_of("key");
    let to = shown(&label, "first_step + position - 1");
    let from = shown(&codes.label_of("previous_key"), "first_step + position - 2");
    format!(
        "SELECT toUInt64(first_step + position - 1) AS step,
                if(position = 1, toUInt64(0), {from}) AS from_code,
                if({label} = {drop_off}, toUInt64({drop_off}), {to}) AS to_code,
                toUInt8(position > 1 AND {label} != {drop_off}) AS timed,
                {millis} / 1000 AS seconds
         FROM ({transitions})",
        millis = codes.millis_between("previous_key", "key"),
    )
}

/// The graph of counted edge rows: nodes are summed from the edges into them.
fn graph_of(view: GraphView, codes: &LabelCodes, rows: Vec<EdgeRow>) -> PathGraph {
    let step_of = |step: u64| (view == GraphView::Positional).then_some(step as usize);
    let mut node_index: HashMap<(Option<usize>, u64), usize> = HashMap::new();
    let mut nodes: Vec<NodeCount> = Vec::new();
    let mut node = |step: Option<usize>, code: u64, nodes: &mut Vec<NodeCount>| {
        *node_index.entry((step, code)).or_insert_with(|| {
            nodes.push(NodeCount {
                step,
                label: codes.name(code),
                customers: 0,
                visits: 0,
            });
            nodes.len() - 1
        })
    };
    let mut paths = 0;
    let mut edges = Vec::new();
    for row in &rows {
        let to_step = step_of(row.step);
        let to = node(to_step, row.to_code, &mut nodes);
        nodes[to].visits += row.transitions as usize;
        nodes[to].customers += row.first_visits as usize;
        let from_step = to_step.map(|step| step - 1);
        if row.from_code == 0 {
            paths += row.customers as usize;
            if view == GraphView::Positional {
                continue;
            }
        }
        let from = node(from_step, row.from_code, &mut nodes);
        edges.push(EdgeCount {
            from,
            to,
            customers: row.customers as usize,
            transitions: row.transitions as usize,
            median_seconds: (row.timed == 1).then_some(row.median_seconds),
        });
    }
    if view == GraphView::State && paths > 0 {
        let start = node(None, 0, &mut nodes);
        nodes[start].visits = paths;
        nodes[start].customers = paths;
    }
    PathGraph::from_counts(view, paths, nodes, edges)
}

/// Bits needed to hold `value`.
fn bits_for(value: u64) -> u32 {
    64 - value.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_numbers_name_touchpoints_channels_and_virtual_nodes() {
        let codes = LabelCodes::new(
            vec!["purchase".into(), "ad_click".into()],
            vec!["web".into(), "ads".into()],
            0,
            1000,
        )
        .unwrap();
        assert_eq!((codes.time_bits, codes.code_bits), (10, 3));
        assert_eq!(codes.name(1), "ad_click (ads)");
        assert_eq!(codes.name(4), "purchase (web)");
        assert_eq!(codes.name(0), START);
        assert_eq!(codes.name(5), END);
        assert_eq!(codes.name(7), OTHER);
        assert_eq!(codes.touchpoint("purchase"), Some(2));
        assert_eq!(codes.touchpoint("nope"), None);
        assert_eq!(bits_for(7), 3);
        assert_eq!(bits_for(8), 4);
        assert_eq!(bits_for(0), 0);
    }

    #[test]
    fn a_packed_key_unpacks_to_its_time_and_label() {
        let codes = LabelCodes::new(vec!["purchase".into()], Vec::new(), 1_000, 9_000).unwrap();
        assert_eq!(codes.unpack(codes.pack(4_321, 1, u64::MAX)), (4_321, 1));
    }

    #[test]
    fn touchpoints_of_one_millisecond_pack_and_unpack() {
        let codes = LabelCodes::new(vec!["purchase".into()], Vec::new(), 5_000, 5_000).unwrap();
        assert_eq!(codes.time_bits, 1);
        let key = (1u64 << codes.hash_bits()) | 0xff;
        assert_eq!(codes.unpack(key), (5_000, 1));
    }

    #[test]
    fn a_span_leaving_under_8_hash_bits_is_too_wide() {
        let touchpoints: Vec<String> = (0..1000).map(|n| format!("t{n}")).collect();
        // 10 label bits (1,003 numbers) + 46 time bits = 56: the widest that still fits.
        let fits = LabelCodes::new(touchpoints.clone(), Vec::new(), 0, (1 << 46) - 1);
        assert_eq!(fits.unwrap().hash_bits(), 8);
        let too_wide = LabelCodes::new(touchpoints, Vec::new(), 0, 1 << 46);
        assert!(matches!(too_wide, Err(StoreError::ReportTooWide)));
    }
}
