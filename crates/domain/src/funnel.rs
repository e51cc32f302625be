//! Funnels and drop-off: how many customers get through a list of steps, how long each step
//! takes, and what the customers who stopped at a step did before it and next.
//!
//! Every number here comes from two facts per customer, both defined on [`FunnelOptions`]: the
//! customer's *level* (how many funnel steps they completed, from the first) and the journey
//! positions of their matched steps. These docs are the reference semantics: a ClickHouse
//! implementation of the same reports must give the same numbers.

use std::collections::HashMap;

use serde::Serialize;

use crate::journey::{Journey, JourneySet, Step};
use crate::metrics::{median, percentile, ratio};
use crate::paths::{positional_graph, PathGraph, PathOptions, DROP_OFF};
use crate::render::{optional_cell, to_csv};
use crate::symbols::Sym;

/// Most steps a funnel may have (one bit per step in a `u32` while matching).
pub const MAX_FUNNEL_STEPS: usize = 20;

/// One funnel step: a touchpoint, optionally narrowed by property values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunnelStep {
    pub touchpoint: String,
    /// `(key, value)` pairs a matching step must all carry, compared as
    /// [`JourneySet::property`] text (`"12.5"`, `"true"`).
    pub properties: Vec<(String, String)>,
}

impl FunnelStep {
    /// A step matching `touchpoint` whatever its properties.
    pub fn new(touchpoint: impl Into<String>) -> Self {
        Self {
            touchpoint: touchpoint.into(),
            properties: Vec::new(),
        }
    }

    /// This step, narrowed to journey steps whose property `key` is `value`.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The touchpoint and its property filters, for report rows: `site_visit [page=pricing]`.
    pub fn label(&self) -> String {
        if self.properties.is_empty() {
            return self.touchpoint.clone();
        }
        let filters: Vec<String> = self
            .properties
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        format!("{} [{}]", self.touchpoint, filters.join(", "))
    }
}

/// How funnel steps must follow each other; see [`FunnelOptions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    /// In order, other touchpoints allowed in between.
    #[default]
    Ordered,
    /// In order, nothing in between.
    Strict,
    /// In any order: a customer's level is how many of the steps they did.
    AnyOrder,
}

/// A funnel. [`funnel`] and [`drop_off`] check it first and refuse it with a [`FunnelError`].
///
/// **Matching.** A journey step matches funnel step `s` when its touchpoint is `s.touchpoint`
/// and, for every `(key, value)` in `s.properties`, [`JourneySet::property`] of the step is
/// `Some(value)`. Below, `at(p)` is the time of the journey step at position `p` (positions
/// follow journey order, so `at` never decreases); all windows are inclusive, in milliseconds.
///
/// **Ordered and strict.** An assignment of steps `1..=k` gives each a journey position,
/// `p1 < p2 < .. < pk`, where position `pi` matches step `i` and
/// - `Strict`: `p(i+1) = pi + 1` (no other touchpoint in between); `Ordered`: anything between;
/// - `window_ms`: `at(pk) - at(p1) <= window_ms`;
/// - `step_windows_ms[i]` (the window of step `i + 1`, `i >= 1`): `at(p(i+1)) - at(pi) <=
///   step_windows_ms[i]`.
///
/// A customer's level is the largest `k` for which some assignment exists (0 when nothing
/// matches step 1). Their matched positions are the lexicographically smallest assignment of that
/// length: the earliest entry that reaches the level, then the earliest second step that still
/// does, and so on. Matching each step at its earliest occurrence is not the same thing: an early
/// step 1 may leave step 2 outside its window where a later step 1 does not.
///
/// **Any order.** The steps are conditions, not a sequence. Over every anchor position `a`,
/// count the distinct funnel steps matched by journey steps at `a` or later with
/// `at - at(a) <= window_ms` (the rest of the journey without a window); a journey step matching
/// several funnel steps counts for each. The level is the largest such count; of the anchors
/// reaching it the earliest is used, and the matched position for `k` is the first position
/// (from that anchor) by which `k` distinct steps were done, so several may share a position.
/// Report row `k` then reads "did at least `k` of the steps", not "did step `k`". Per-step
/// windows do not apply (there is no step before another), so giving one is an error, as is
/// listing the same step twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelOptions {
    /// 1 to [`MAX_FUNNEL_STEPS`] steps, in funnel order.
    pub steps: Vec<FunnelStep>,
    pub order: FunnelOrder,
    /// Longest time from the first matched step to the last; `None` for no limit.
    pub window_ms: Option<i64>,
    /// Empty for none, or one entry per step: entry `i` is the longest time from step `i - 1`
    /// to step `i` (`None` for no limit). Entry 0 must be `None`: the first step has no step
    /// before it.
    pub step_windows_ms: Vec<Option<i64>>,
}

impl FunnelOptions {
    /// An ordered funnel of `steps` without windows.
    pub fn new(steps: Vec<FunnelStep>) -> Self {
        Self {
            steps,
            order: FunnelOrder::Ordered,
            window_ms: None,
            step_windows_ms: Vec::new(),
        }
    }
}

/// Why funnel options were refused. Each message starts with the field it is about and says
/// what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunnelError {
    #[error("steps: a funnel has 1 to {MAX_FUNNEL_STEPS} steps, not {0}")]
    StepCount(usize),
    #[error("steps[{0}].touchpoint: name the touchpoint the step matches")]
    EmptyTouchpoint(usize),
    #[error("steps[{index}]: repeats steps[{first}]; an any-order funnel counts each step once")]
    RepeatedStep { index: usize, first: usize },
    #[error("window_ms: must be 0 or more, not {0}")]
    NegativeWindow(i64),
    #[error(
        "step_windows_ms: give one entry per step (null for no limit) or none; got {given} \
         for {steps} steps"
    )]
    StepWindowCount { given: usize, steps: usize },
    #[error("step_windows_ms[0]: the first step has no step before it; use null")]
    FirstStepWindow,
    #[error("step_windows_ms[{index}]: must be 0 or more, not {value}")]
    NegativeStepWindow { index: usize, value: i64 },
    #[error(
        "step_windows_ms: an any-order funnel has no step before another, so per-step windows \
         do not apply; leave it empty or use window_ms"
    )]
    StepWindowsInAnyOrder,
    #[error("next_steps: must be at least 1")]
    NoNextSteps,
}

/// Customers per funnel step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelReport {
    pub order: FunnelOrder,
    pub window_ms: Option<i64>,
    /// All customers in the journey set, in the funnel or not.
    pub customers: usize,
    /// One per funnel step, in order.
    pub steps: Vec<FunnelStepStats>,
}

/// Row `k` of a [`FunnelReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelStepStats {
    /// From 1.
    pub step: usize,
    /// The step's [`FunnelStep::label`]; in any-order funnels `k of n steps`.
    pub label: String,
    /// Customers whose level is at least `k`.
    pub entered: usize,
    /// Customers whose level is at least `k + 1`; for the last step, `entered`.
    pub converted: usize,
    /// `entered - converted`: customers whose level is exactly `k` (0 at the last step).
    pub dropped: usize,
    /// `entered` over the previous step's `entered`; 1 for step 1, 0 when the previous step
    /// is empty.
    pub conversion_from_previous: f64,
    /// `entered` over step 1's `entered`; 1 for step 1, 0 when step 1 is empty.
    pub conversion_from_first: f64,
    /// Seconds from the matched step `k - 1` to the matched step `k`, over customers whose level
    /// is at least `k`: the median and the 90th percentile as [`percentile`] defines them.
    /// `None` for step 1 and when nobody entered.
    pub median_seconds_to_convert: Option<f64>,
    pub p90_seconds_to_convert: Option<f64>,
}

/// What customers who stopped at each step (all but the last) did next and before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropOffReport {
    /// Longest path drawn after the step.
    pub next_steps: usize,
    pub steps: Vec<DropOffStep>,
}

/// The customers whose level is exactly `step` (entered it, did not convert).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropOffStep {
    pub step: usize,
    pub label: String,
    pub dropped: usize,
    /// Dropped customers whose journey ends with their match of this step.
    pub ended_there: usize,
    /// The positional path graph ([`positional_graph`] with `max_steps = next_steps` and
    /// otherwise default [`PathOptions`]: top 6 per step, drop-off nodes) of the other dropped
    /// customers' journeys from the step right after their match. `next.customers + ended_there
    /// = dropped`.
    pub next: PathGraph,
    /// Per touchpoint: dropped customers with that touchpoint anywhere before their match of
    /// this step (earlier funnel steps included); `share` is of `dropped`. Most customers first,
    /// ties by name.
    pub before: Vec<TouchpointCount>,
}

/// Customers who did a touchpoint in some stretch of their journey.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TouchpointCount {
    pub touchpoint: String,
    pub customers: usize,
    /// `customers` over the customers the count is about; 0 when there are none.
    pub share: f64,
}

/// The funnel report of `set`: per step, customers who entered, converted to the next step and
/// dropped, conversion ratios and time to convert (see [`FunnelStepStats`]).
pub fn funnel(set: &JourneySet, opts: &FunnelOptions) -> Result<FunnelReport, FunnelError> {
    let matcher = Matcher::new(set, opts)?;
    let step_count = opts.steps.len();
    // Per step, the customers who reached it and their seconds from the step before.
    let (reached, mut seconds) = set.count_in_halves(
        |journeys| {
            let mut reached = vec![0usize; step_count];
            let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); step_count];
            for journey in journeys {
                let positions = matcher.progress(set, journey);
                for (index, &position) in positions.iter().enumerate() {
                    reached[index] += 1;
                    if index > 0 {
                        let from_ms = journey.steps[positions[index - 1]].at_ms;
                        let gap_ms = journey.steps[position].at_ms - from_ms;
                        seconds[index].push(gap_ms as f64 / 1000.0);
                    }
                }
            }
            (reached, seconds)
        },
        |(mut reached, mut seconds), (more_reached, more_seconds)| {
            for (count, more) in reached.iter_mut().zip(more_reached) {
                *count += more;
            }
            for (values, more) in seconds.iter_mut().zip(more_seconds) {
                values.extend(more);
            }
            (reached, seconds)
        },
    );
    let steps = (0..step_count)
        .map(|index| {
            let entered = reached[index];
            let converted = reached.get(index + 1).copied().unwrap_or(entered);
            let (from_previous, from_first) = if index == 0 {
                (1.0, 1.0)
            } else {
                (
                    ratio(entered, reached[index - 1]),
                    ratio(entered, reached[0]),
                )
            };
            FunnelStepStats {
                step: index + 1,
                label: row_label(opts, index),
                entered,
                converted,
                dropped: entered - converted,
                conversion_from_previous: from_previous,
                conversion_from_first: from_first,
                median_seconds_to_convert: median(&mut seconds[index]),
                p90_seconds_to_convert: percentile(&mut seconds[index], 0.9),
            }
        })
        .collect();
    Ok(FunnelReport {
        order: opts.order,
        window_ms: opts.window_ms,
        customers: set.journeys.len(),
        steps,
    })
}

/// For each step but the last, the customers who entered it and did not convert: what they did
/// next (up to `next_steps` steps, at least 1) and before (see [`DropOffStep`]).
pub fn drop_off(
    set: &JourneySet,
    opts: &FunnelOptions,
    next_steps: usize,
) -> Result<DropOffReport, FunnelError> {
    let matcher = Matcher::new(set, opts)?;
    if next_steps == 0 {
        return Err(FunnelError::NoNextSteps);
    }
    let last = opts.steps.len();
    // Per step but the last: the journeys whose level is that step, with their match of it.
    let mut stopped: Vec<Vec<(&Journey, usize)>> = vec![Vec::new(); last - 1];
    for journey in &set.journeys {
        let positions = matcher.progress(set, journey);
        if let Some(&position) = positions.last() {
            if positions.len() < last {
                stopped[positions.len() - 1].push((journey, position));
            }
        }
    }
    let path_options = PathOptions {
        max_steps: next_steps,
        ..PathOptions::default()
    };
    // One set for every step's tails, so the symbols (property values included) are cloned
    // once. It has no properties: the path graph reads touchpoints, channels and times only.
    let mut after = JourneySet {
        symbols: set.symbols.clone(),
        ..JourneySet::default()
    };
    let steps = stopped
        .into_iter()
        .enumerate()
        .map(|(index, customers)| {
            after.journeys.clear();
            after
                .journeys
                .extend(customers.iter().filter_map(|&(journey, position)| {
                    let tail = &journey.steps[position + 1..];
                    (!tail.is_empty()).then(|| Journey {
                        customer: journey.customer,
                        steps: tail.to_vec(),
                    })
                }));
            DropOffStep {
                step: index + 1,
                label: row_label(opts, index),
                dropped: customers.len(),
                ended_there: customers.len() - after.journeys.len(),
                next: positional_graph(&after, &path_options),
                before: touchpoint_counts(
                    set,
                    customers
                        .iter()
                        .map(|&(journey, position)| &journey.steps[..position]),
                ),
            }
        })
        .collect();
    Ok(DropOffReport { next_steps, steps })
}

impl FunnelReport {
    /// One row per step, the fields of [`FunnelStepStats`] as columns; `None` is an empty cell.
    pub fn to_csv(&self) -> String {
        let rows = self.steps.iter().map(|stats| {
            vec![
                stats.step.to_string(),
                stats.label.clone(),
                stats.entered.to_string(),
                stats.converted.to_string(),
                stats.dropped.to_string(),
                stats.conversion_from_previous.to_string(),
                stats.conversion_from_first.to_string(),
                optional_cell(stats.median_seconds_to_convert),
                optional_cell(stats.p90_seconds_to_convert),
            ]
        });
        to_csv(
            &[
                "step",
                "label",
                "entered",
                "converted",
                "dropped",
                "conversion_from_previous",
                "conversion_from_first",
                "median_seconds_to_convert",
                "p90_seconds_to_convert",
            ],
            rows,
        )
    }
}

impl DropOffReport {
    /// One row per step and touchpoint: first what the dropped customers did `before` (no
    /// position), then `next`, by position after the step: the nodes of the path graph, with
    /// [`DROP_OFF`] at position 1 for the customers who `ended_there`. `share_of_dropped` is
    /// of the step's dropped customers.
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for step in &self.steps {
            let mut row =
                |direction: &str, position: String, touchpoint: &str, customers: usize| {
                    rows.push(vec![
                        step.step.to_string(),
                        step.label.clone(),
                        step.dropped.to_string(),
                        direction.to_owned(),
                        position,
                        touchpoint.to_owned(),
                        customers.to_string(),
                        ratio(customers, step.dropped).to_string(),
                    ]);
                };
            for count in &step.before {
                row("before", String::new(), &count.touchpoint, count.customers);
            }
            if step.ended_there > 0 {
                row("next", "1".to_owned(), DROP_OFF, step.ended_there);
            }
            for node in &step.next.nodes {
                let position = node.step.map(|at| at.to_string()).unwrap_or_default();
                row("next", position, &node.label, node.customers);
            }
        }
        to_csv(
            &[
                "step",
                "label",
                "dropped",
                "direction",
                "position",
                "touchpoint",
                "customers",
                "share_of_dropped",
            ],
            rows,
        )
    }
}

/// Per touchpoint, the customers with at least one step on it in their stretch (one stretch per
/// customer): a customer counts once per touchpoint, however often they did it. Touchpoints
/// nobody did are left out.
pub(crate) fn customers_per_touchpoint<'a>(
    stretches: impl IntoIterator<Item = &'a [Step]>,
) -> HashMap<Sym, usize> {
    let mut customers: HashMap<Sym, usize> = HashMap::new();
    let mut distinct: Vec<Sym> = Vec::new();
    for stretch in stretches {
        distinct.clear();
        distinct.extend(stretch.iter().map(|step| step.touchpoint));
        distinct.sort_unstable();
        distinct.dedup();
        for &touchpoint in &distinct {
            *customers.entry(touchpoint).or_default() += 1;
        }
    }
    customers
}

/// [`customers_per_touchpoint`] as report rows, most customers first, ties by name; `share` is
/// of the number of stretches.
pub(crate) fn touchpoint_counts<'a, I>(set: &JourneySet, stretches: I) -> Vec<TouchpointCount>
where
    I: IntoIterator<Item = &'a [Step]>,
    I::IntoIter: ExactSizeIterator,
{
    let stretches = stretches.into_iter();
    let stretch_count = stretches.len();
    let mut counts: Vec<TouchpointCount> = customers_per_touchpoint(stretches)
        .into_iter()
        .map(|(touchpoint, customers)| TouchpointCount {
            touchpoint: set.symbols.name(touchpoint).to_owned(),
            customers,
            share: ratio(customers, stretch_count),
        })
        .collect();
    counts.sort_by(|a, b| {
        b.customers
            .cmp(&a.customers)
            .then_with(|| a.touchpoint.cmp(&b.touchpoint))
    });
    counts
}

/// The label of report row `index`: the step's label, or `k of n steps` in any order.
fn row_label(opts: &FunnelOptions, index: usize) -> String {
    match opts.order {
        FunnelOrder::AnyOrder => format!("{} of {} steps", index + 1, opts.steps.len()),
        FunnelOrder::Ordered | FunnelOrder::Strict => opts.steps[index].label(),
    }
}

/// A checked funnel, ready to match journeys.
struct Matcher<'a> {
    opts: &'a FunnelOptions,
    /// Indexed by touchpoint symbol, the funnel steps on that touchpoint (bit `s` for step
    /// `s`): a lookup per journey step instead of a comparison per funnel step.
    steps_on_touchpoint: Vec<u32>,
    /// The funnel steps with property filters (bit `s` for step `s`).
    with_properties: u32,
    /// Per funnel step, the longest time since the previous step.
    step_windows: Vec<Option<i64>>,
}

impl<'a> Matcher<'a> {
    fn new(set: &JourneySet, opts: &'a FunnelOptions) -> Result<Self, FunnelError> {
        let steps = &opts.steps;
        if !(1..=MAX_FUNNEL_STEPS).contains(&steps.len()) {
            return Err(FunnelError::StepCount(steps.len()));
        }
        if let Some(index) = steps.iter().position(|step| step.touchpoint.is_empty()) {
            return Err(FunnelError::EmptyTouchpoint(index));
        }
        if let Some(window) = opts.window_ms.filter(|&window| window < 0) {
            return Err(FunnelError::NegativeWindow(window));
        }
        let windows = &opts.step_windows_ms;
        if !windows.is_empty() && windows.len() != steps.len() {
            return Err(FunnelError::StepWindowCount {
                given: windows.len(),
                steps: steps.len(),
            });
        }
        if windows.first().is_some_and(Option::is_some) {
            return Err(FunnelError::FirstStepWindow);
        }
        for (index, window) in windows.iter().enumerate() {
            if let Some(value) = window.filter(|&value| value < 0) {
                return Err(FunnelError::NegativeStepWindow { index, value });
            }
        }
        if opts.order == FunnelOrder::AnyOrder {
            if windows.iter().any(Option::is_some) {
                return Err(FunnelError::StepWindowsInAnyOrder);
            }
            for (index, step) in steps.iter().enumerate() {
                if let Some(first) = steps[..index].iter().position(|earlier| earlier == step) {
                    return Err(FunnelError::RepeatedStep { index, first });
                }
            }
        }
        let mut step_windows = windows.clone();
        step_windows.resize(steps.len(), None);
        let mut steps_on_touchpoint = vec![0; set.symbols.len()];
        let mut with_properties = 0;
        for (index, step) in steps.iter().enumerate() {
            if let Some(touchpoint) = set.symbols.get(&step.touchpoint) {
                steps_on_touchpoint[touchpoint as usize] |= 1 << index;
            }
            if !step.properties.is_empty() {
                with_properties |= 1 << index;
            }
        }
        Ok(Self {
            opts,
            steps_on_touchpoint,
            with_properties,
            step_windows,
        })
    }

    /// Bit `s` is set when `step` matches funnel step `s`.
    fn mask(&self, set: &JourneySet, step: &Step) -> u32 {
        let on_touchpoint = self.steps_on_touchpoint[step.touchpoint as usize];
        let mut mask = on_touchpoint & !self.with_properties;
        let mut filtered = on_touchpoint & self.with_properties;
        while filtered != 0 {
            let index = filtered.trailing_zeros() as usize;
            filtered &= filtered - 1;
            let properties_match = self.opts.steps[index]
                .properties
                .iter()
                .all(|(key, value)| set.property(step, key) == Some(value.as_str()));
            if properties_match {
                mask |= 1 << index;
            }
        }
        mask
    }

    /// The customer's matched positions, one per level reached (empty at level 0).
    fn progress(&self, set: &JourneySet, journey: &Journey) -> Vec<usize> {
        let masks: Vec<u32> = journey
            .steps
            .iter()
            .map(|step| self.mask(set, step))
            .collect();
        if masks.iter().all(|&mask| mask == 0) {
            return Vec::new();
        }
        let times: Vec<i64> = journey.steps.iter().map(|step| step.at_ms).collect();
        let chain = |strict| Chain {
            times: &times,
            masks: &masks,
            strict,
            window_ms: self.opts.window_ms,
            step_windows: &self.step_windows,
        };
        match self.opts.order {
            FunnelOrder::Ordered => chain(false).progress(),
            FunnelOrder::Strict => chain(true).progress(),
            FunnelOrder::AnyOrder => {
                any_order_progress(&times, &masks, self.opts.window_ms, self.opts.steps.len())
            }
        }
    }
}

/// One journey against an ordered or strict funnel: per position its time and the funnel steps
/// it matches (bit `s` for step `s`).
struct Chain<'a> {
    times: &'a [i64],
    masks: &'a [u32],
    strict: bool,
    window_ms: Option<i64>,
    /// Per funnel step, the longest time since the previous step; one entry per step.
    step_windows: &'a [Option<i64>],
}

impl Chain<'_> {
    fn matches(&self, position: usize, step: usize) -> bool {
        (self.masks[position] >> step) & 1 == 1
    }

    /// Whether funnel step `step` at position `later` may follow step `step - 1` at `earlier`.
    fn follows(&self, step: usize, earlier: usize, later: usize) -> bool {
        let placed = if self.strict {
            later == earlier + 1
        } else {
            later > earlier
        };
        placed
            && self.step_windows[step]
                .is_none_or(|limit| self.times[later] - self.times[earlier] <= limit)
    }

    /// The lexicographically smallest assignment of the most steps: every entry is tried in
    /// order, and a later one replaces the best only when it reaches more steps.
    fn progress(&self) -> Vec<usize> {
        let step_count = self.step_windows.len();
        let mut best = Vec::new();
        for first in (0..self.times.len()).filter(|&position| self.matches(position, 0)) {
            let end = self.window_end(first);
            let level = self.level_from(first, end);
            if level > best.len() {
                best = self.earliest_assignment(first, end, level);
                if level == step_count {
                    break;
                }
            }
        }
        best
    }

    /// One past the last position within `window_ms` of `first`.
    fn window_end(&self, first: usize) -> usize {
        let Some(window) = self.window_ms else {
            return self.times.len();
        };
        let start_ms = self.times[first];
        first
            + self.times[first..].partition_point(|&at_ms| at_ms.saturating_sub(start_ms) <= window)
    }

    /// The most steps an assignment entering at `first` reaches within positions `first..end`.
    fn level_from(&self, first: usize, end: usize) -> usize {
        // `reached[p - first]`: some assignment of the steps so far ends at position `p`.
        let mut reached = vec![false; end - first];
        reached[0] = true;
        let mut level = 1;
        for step in 1..self.step_windows.len() {
            let mut next = vec![false; end - first];
            // The latest position before `q` that the previous step reached: being the closest
            // in time, it is the best predecessor `q` can have.
            let mut latest: Option<usize> = None;
            for q in first..end {
                if let Some(p) = latest {
                    next[q - first] = self.matches(q, step) && self.follows(step, p, q);
                }
                if reached[q - first] {
                    latest = Some(q);
                }
            }
            if !next.contains(&true) {
                break;
            }
            reached = next;
            level += 1;
        }
        level
    }

    /// The lexicographically smallest assignment of `level` steps entering at `first`, within
    /// positions `first..end`; one must exist.
    fn earliest_assignment(&self, first: usize, end: usize, level: usize) -> Vec<usize> {
        // `completes[step][p - first]`: step `step` at position `p` can be followed through to
        // step `level - 1`. Built backwards; the earliest completing position after `p` is the
        // closest in time, so the best successor `p` can have.
        let mut completes = vec![vec![false; end - first]; level];
        for p in first..end {
            completes[level - 1][p - first] = self.matches(p, level - 1);
        }
        for step in (0..level - 1).rev() {
            let mut earliest: Option<usize> = None;
            for p in (first..end).rev() {
                if let Some(q) = earliest {
                    completes[step][p - first] =
                        self.matches(p, step) && self.follows(step + 1, p, q);
                }
                if completes[step + 1][p - first] {
                    earliest = Some(p);
                }
            }
        }
        debug_assert!(completes[0][0], "level_from found a chain from {first}");
        let mut positions = vec![first];
        for step in 1..level {
            let previous = positions[step - 1];
            let next = (previous + 1..end)
                .find(|&q| completes[step][q - first] && self.follows(step, previous, q))
                .expect("a completing step follows every completing position");
            positions.push(next);
        }
        positions
    }
}

/// Matched positions in an any-order funnel of `step_count` steps (see [`FunnelOptions`]).
fn any_order_progress(
    times: &[i64],
    masks: &[u32],
    window_ms: Option<i64>,
    step_count: usize,
) -> Vec<usize> {
    let all_steps = u32::MAX >> (32 - step_count);
    let mut best = Vec::new();
    for anchor in (0..masks.len()).filter(|&position| masks[position] != 0) {
        let mut done = 0u32;
        let mut reached = Vec::new();
        for position in anchor..masks.len() {
            let late = window_ms
                .is_some_and(|window| times[position].saturating_sub(times[anchor]) > window);
            if late {
                break;
            }
            let new = masks[position] & !done;
            done |= new;
            reached.extend(std::iter::repeat_n(position, new.count_ones() as usize));
            if done == all_steps {
                break;
            }
        }
        if reached.len() > best.len() {
            best = reached;
            if best.len() == step_count {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};
    use uuid::Uuid;

    use super::*;
    use crate::event::{Body, Event, Who};
    use crate::stitch::{JourneyBook, JourneyFilter};

    const MINUTE: i64 = 60_000;

    fn steps(touchpoints: &[&str]) -> Vec<FunnelStep> {
        touchpoints
            .iter()
            .map(|&name| FunnelStep::new(name))
            .collect()
    }

    fn options(touchpoints: &[&str], change: impl FnOnce(&mut FunnelOptions)) -> FunnelOptions {
        let mut opts = FunnelOptions::new(steps(touchpoints));
        change(&mut opts);
        opts
    }

    /// Journeys of `(touchpoint, minutes)` steps, one per customer, on channel `web`.
    fn journeys(sequences: &[&[(&'static str, i64)]]) -> JourneySet {
        JourneySet::from_sequences(sequences.iter().map(|sequence| {
            sequence
                .iter()
                .map(|&(touchpoint, minutes)| (touchpoint, "web", minutes * MINUTE))
                .collect()
        }))
    }

    /// Per step: entered, converted, dropped.
    fn counts(report: &FunnelReport) -> Vec<(usize, usize, usize)> {
        report
            .steps
            .iter()
            .map(|stats| (stats.entered, stats.converted, stats.dropped))
            .collect()
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|actual| (actual - expected).abs() < 1e-9)
    }

    const VISIT_FORM_PURCHASE: [&str; 3] = ["site_visit", "form_submit", "purchase"];

    /// A: all three in a row. B: all three, an email between visit and form. C: form before
    /// visit. D: visit and form. E: none of the steps.
    fn shop() -> JourneySet {
        journeys(&[
            &[("site_visit", 0), ("form_submit", 10), ("purchase", 20)],
            &[
                ("site_visit", 0),
                ("email_open", 5),
                ("form_submit", 10),
                ("purchase", 30),
            ],
            &[("form_submit", 0), ("site_visit", 10), ("purchase", 20)],
            &[("site_visit", 0), ("form_submit", 60)],
            &[("email_open", 0)],
        ])
    }

    #[test]
    fn ordered_funnel_counts_and_times() {
        // Levels: A 3, B 3, C 1 (no form after the visit), D 2, E 0.
        let report = funnel(&shop(), &options(&VISIT_FORM_PURCHASE, |_| {})).unwrap();
        assert_eq!(report.customers, 5);
        assert_eq!(counts(&report), vec![(4, 3, 1), (3, 2, 1), (2, 2, 0)]);
        let second = &report.steps[1];
        assert_eq!(second.conversion_from_previous, 0.75);
        assert_eq!(second.conversion_from_first, 0.75);
        assert!(close(
            Some(report.steps[2].conversion_from_previous),
            2.0 / 3.0
        ));
        assert_eq!(report.steps[2].conversion_from_first, 0.5);
        // Visit to form: A 600 s, B 600 s, D 3600 s. p90 at rank 0.9 * 2 = 1.8:
        // 600 + 0.8 * (3600 - 600) = 3000.
        assert_eq!(second.median_seconds_to_convert, Some(600.0));
        assert!(close(second.p90_seconds_to_convert, 3000.0));
        // Form to purchase: A 600 s, B 1200 s. Median 900; p90 600 + 0.9 * 600 = 1140.
        assert_eq!(report.steps[2].median_seconds_to_convert, Some(900.0));
        assert!(close(report.steps[2].p90_seconds_to_convert, 1140.0));
        assert_eq!(report.steps[0].median_seconds_to_convert, None);
        assert_eq!(
            report.to_csv(),
            "step,label,entered,converted,dropped,conversion_from_previous,conversion_from_first,\
             median_seconds_to_convert,p90_seconds_to_convert\r\n\
             1,site_visit,4,3,1,1,1,,\r\n\
             2,form_submit,3,2,1,0.75,0.75,600,3000\r\n\
             3,purchase,2,2,0,0.6666666666666666,0.5,900,1140\r\n"
        );
    }

    #[test]
    fn a_set_counted_on_two_threads_adds_up_as_on_one() {
        let copies = 30_000;
        let report = funnel(
            &shop().repeated(copies),
            &options(&VISIT_FORM_PURCHASE, |_| {}),
        );
        let report = report.unwrap();
        assert_eq!(report.customers, 5 * copies);
        let scaled = |(entered, converted, dropped)| {
            (entered * copies, converted * copies, dropped * copies)
        };
        let expected: Vec<_> = [(4, 3, 1), (3, 2, 1), (2, 2, 0)].map(scaled).to_vec();
        assert_eq!(counts(&report), expected);
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(600.0));
        assert_eq!(report.steps[2].median_seconds_to_convert, Some(900.0));
    }

    #[test]
    fn strict_funnels_allow_nothing_between_steps() {
        // Levels: A 3; B 1 (an email after the visit); C 1 (a purchase after the visit);
        // D 2; E 0.
        let strict = options(&VISIT_FORM_PURCHASE, |o| o.order = FunnelOrder::Strict);
        let report = funnel(&shop(), &strict).unwrap();
        assert_eq!(counts(&report), vec![(4, 2, 2), (2, 1, 1), (1, 1, 0)]);
        assert_eq!(report.steps[1].conversion_from_previous, 0.5);
        // Visit to form: A 600 s, D 3600 s.
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(2100.0));
    }

    #[test]
    fn any_order_funnels_count_distinct_steps_done() {
        // Steps done: A 3, B 3, C 3 (form before visit counts), D 2, E 0.
        let any = options(&VISIT_FORM_PURCHASE, |o| o.order = FunnelOrder::AnyOrder);
        let report = funnel(&shop(), &any).unwrap();
        assert_eq!(counts(&report), vec![(4, 4, 0), (4, 3, 1), (3, 3, 0)]);
        let labels: Vec<&str> = report.steps.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["1 of 3 steps", "2 of 3 steps", "3 of 3 steps"]);
        // From the first step done to the second: A 10 min, B 10, C 10, D 60.
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(600.0));

        // Within 15 minutes of an anchor: A 2 (visit 0 and form 10; the purchase at 20 is
        // too late for the visit), B 2 (visit 0, form 10), C 2 (form 0 and visit 10), D 1 (the
        // form is 60 minutes after the visit), E 0.
        let windowed = options(&VISIT_FORM_PURCHASE, |o| {
            o.order = FunnelOrder::AnyOrder;
            o.window_ms = Some(15 * MINUTE);
        });
        let report = funnel(&shop(), &windowed).unwrap();
        assert_eq!(counts(&report), vec![(4, 3, 1), (3, 0, 3), (0, 0, 0)]);
    }

    /// F: an early visit too long before the form, a second visit just before it.
    /// G: visit, form, visit, form, purchase, all close together.
    fn late_entries() -> JourneySet {
        journeys(&[
            &[
                ("site_visit", 0),
                ("site_visit", 100),
                ("form_submit", 105),
                ("purchase", 200),
            ],
            &[
                ("site_visit", 0),
                ("form_submit", 5),
                ("site_visit", 10),
                ("form_submit", 12),
                ("purchase", 20),
            ],
        ])
    }

    #[test]
    fn step_windows_pick_the_entry_that_gets_furthest() {
        // The form must come within 10 minutes of the visit. F: the visit at 0 is 105 minutes
        // before the form, so F enters at 100: level 3, 5 min to the form, 95 to the purchase.
        // (Earliest matching would stop F at level 1.) G: the earliest entry works, and its
        // earliest form: 5 min and 15 min (not the later pair's 2 and 8).
        let opts = options(&VISIT_FORM_PURCHASE, |o| {
            o.step_windows_ms = vec![None, Some(10 * MINUTE), None];
        });
        let report = funnel(&late_entries(), &opts).unwrap();
        assert_eq!(counts(&report), vec![(2, 2, 0), (2, 2, 0), (2, 2, 0)]);
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(300.0));
        // 900 s and 5700 s: median 3300, p90 900 + 0.9 * 4800 = 5220.
        assert_eq!(report.steps[2].median_seconds_to_convert, Some(3300.0));
        assert!(close(report.steps[2].p90_seconds_to_convert, 5220.0));

        // And the whole funnel within 90 minutes: F's purchase is 100 minutes after its only
        // working entry, so F stops at the form. G is done in 20.
        let tighter = FunnelOptions {
            window_ms: Some(90 * MINUTE),
            ..opts.clone()
        };
        let report = funnel(&late_entries(), &tighter).unwrap();
        assert_eq!(counts(&report), vec![(2, 2, 0), (2, 1, 1), (1, 1, 0)]);
        assert_eq!(report.steps[2].median_seconds_to_convert, Some(900.0));

        // Windows are inclusive: F's purchase is exactly 100 minutes after its entry.
        let exact = FunnelOptions {
            window_ms: Some(100 * MINUTE),
            ..opts
        };
        let report = funnel(&late_entries(), &exact).unwrap();
        assert_eq!(counts(&report)[2], (2, 2, 0));
    }

    #[test]
    fn without_windows_the_earliest_entry_sets_the_times() {
        // G could also go visit 10, form 12, purchase 20; the earliest entry (0, 5, 20) counts.
        let report = funnel(&late_entries(), &options(&VISIT_FORM_PURCHASE, |_| {})).unwrap();
        // Visit to form: F 105 min (its first visit is the entry), G 5 min.
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(3300.0));
        // Form to purchase: F 95 min, G 15 min.
        assert_eq!(report.steps[2].median_seconds_to_convert, Some(3300.0));
    }

    fn touch(n: u128, who: &str, minutes: i64, touchpoint: &str, properties: Value) -> Event {
        let properties: Map<String, Value> = match properties {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Event {
            event_id: Uuid::from_u128(n),
            at_ms: minutes * MINUTE,
            received_ms: minutes * MINUTE,
            who: Who {
                anonymous_id: None,
                user_id: Some(who.to_owned()),
            },
            body: Body::Touchpoint {
                touchpoint: touchpoint.to_owned(),
                channel: "web".to_owned(),
                direct: true,
                properties,
            },
            ip: None,
        }
    }

    /// The journeys of `events`, stitched.
    fn stitched(events: &[Event]) -> JourneySet {
        let mut book = JourneyBook::new();
        for event in events {
            book.add(event);
        }
        book.journeys(&JourneyFilter::default())
    }

    #[test]
    fn property_filters_narrow_steps() {
        // Customers in name order: ann 0, bob 1, cy 2, dee 3.
        let events = [
            touch(1, "ann", 0, "site_visit", json!({"page": "home"})),
            touch(2, "ann", 1, "site_visit", json!({"page": "pricing"})),
            touch(3, "ann", 2, "purchase", json!({"plan": "pro", "seats": 5})),
            touch(4, "bob", 0, "site_visit", json!({"page": "home"})),
            touch(5, "bob", 1, "purchase", json!({"plan": "pro", "seats": 5})),
            touch(6, "cy", 0, "site_visit", json!({"page": "pricing"})),
            touch(7, "cy", 1, "purchase", json!({"plan": "basic"})),
            touch(8, "dee", 0, "site_visit", json!({"page": "pricing"})),
            touch(9, "dee", 3, "purchase", json!({})),
        ];
        let set = stitched(&events);
        // Pricing visit: ann, cy, dee. Pro purchase with 5 seats after it: ann only (bob's has
        // no pricing visit before it, cy's is basic, dee's has no plan).
        let opts = FunnelOptions::new(vec![
            FunnelStep::new("site_visit").with_property("page", "pricing"),
            FunnelStep::new("purchase")
                .with_property("plan", "pro")
                .with_property("seats", "5"),
        ]);
        let report = funnel(&set, &opts).unwrap();
        assert_eq!(counts(&report), vec![(3, 1, 2), (1, 1, 0)]);
        assert_eq!(report.steps[0].label, "site_visit [page=pricing]");
        assert_eq!(report.steps[1].label, "purchase [plan=pro, seats=5]");
        // Pricing visit at 1, purchase at 2: 60 s.
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(60.0));

        let unknown = FunnelOptions::new(vec![
            FunnelStep::new("site_visit").with_property("page", "careers")
        ]);
        assert_eq!(counts(&funnel(&set, &unknown).unwrap()), vec![(0, 0, 0)]);
        let unseen = FunnelOptions::new(steps(&["webinar", "purchase"]));
        let report = funnel(&set, &unseen).unwrap();
        assert_eq!(counts(&report), vec![(0, 0, 0), (0, 0, 0)]);
        assert_eq!(report.steps[1].conversion_from_previous, 0.0);
        assert_eq!(report.steps[1].p90_seconds_to_convert, None);
    }

    #[test]
    fn in_any_order_one_step_can_satisfy_overlapping_steps() {
        // "Visited" and "visited pricing": ann's one pricing visit does both, then buys;
        // bob visits the home page and buys: 2 of 3.
        let events = [
            touch(1, "ann", 0, "site_visit", json!({"page": "pricing"})),
            touch(2, "ann", 5, "purchase", json!({})),
            touch(3, "bob", 0, "site_visit", json!({"page": "home"})),
            touch(4, "bob", 5, "purchase", json!({})),
        ];
        let set = stitched(&events);
        let opts = FunnelOptions {
            order: FunnelOrder::AnyOrder,
            ..FunnelOptions::new(vec![
                FunnelStep::new("site_visit"),
                FunnelStep::new("site_visit").with_property("page", "pricing"),
                FunnelStep::new("purchase"),
            ])
        };
        let report = funnel(&set, &opts).unwrap();
        assert_eq!(counts(&report), vec![(2, 2, 0), (2, 1, 1), (1, 1, 0)]);
        // ann did her first two steps at once: 0 s; bob's second came 5 minutes later.
        assert_eq!(report.steps[1].median_seconds_to_convert, Some(150.0));
        assert_eq!(report.steps[2].median_seconds_to_convert, Some(300.0));
    }

    #[test]
    fn options_are_checked_and_name_the_field() {
        let set = shop();
        let refused = |opts: FunnelOptions| funnel(&set, &opts).unwrap_err();
        assert_eq!(refused(options(&[], |_| {})), FunnelError::StepCount(0));
        let many = vec!["site_visit"; 21];
        assert_eq!(refused(options(&many, |_| {})), FunnelError::StepCount(21));
        assert!(funnel(&set, &options(&many[..20], |_| {})).is_ok());
        assert_eq!(
            refused(options(&["site_visit", ""], |_| {})),
            FunnelError::EmptyTouchpoint(1)
        );
        assert_eq!(
            refused(options(&VISIT_FORM_PURCHASE, |o| o.window_ms = Some(-1))),
            FunnelError::NegativeWindow(-1)
        );
        let error = refused(options(&VISIT_FORM_PURCHASE, |o| {
            o.step_windows_ms = vec![None, Some(1)];
        }));
        assert_eq!(error, FunnelError::StepWindowCount { given: 2, steps: 3 });
        assert!(
            error.to_string().starts_with("step_windows_ms: "),
            "{error}"
        );
        assert_eq!(
            refused(options(&VISIT_FORM_PURCHASE, |o| {
                o.step_windows_ms = vec![Some(1), None, None];
            })),
            FunnelError::FirstStepWindow
        );
        assert_eq!(
            refused(options(&VISIT_FORM_PURCHASE, |o| {
                o.step_windows_ms = vec![None, None, Some(-5)];
            })),
            FunnelError::NegativeStepWindow {
                index: 2,
                value: -5
            }
        );
        assert_eq!(
            refused(options(&VISIT_FORM_PURCHASE, |o| {
                o.order = FunnelOrder::AnyOrder;
                o.step_windows_ms = vec![None, Some(1), None];
            })),
            FunnelError::StepWindowsInAnyOrder
        );
        assert_eq!(
            refused(options(&["site_visit", "purchase", "site_visit"], |o| {
                o.order = FunnelOrder::AnyOrder;
            })),
            FunnelError::RepeatedStep { index: 2, first: 0 }
        );
        let ordered_repeat = options(&["site_visit", "site_visit"], |_| {});
        assert!(funnel(&set, &ordered_repeat).is_ok());
        let error = drop_off(&set, &options(&VISIT_FORM_PURCHASE, |_| {}), 0).unwrap_err();
        assert_eq!(error, FunnelError::NoNextSteps);
        assert_eq!(error.to_string(), "next_steps: must be at least 1");
    }

    #[test]
    fn every_error_message_starts_with_its_field() {
        let fields = [
            (FunnelError::StepCount(0), "steps: "),
            (FunnelError::EmptyTouchpoint(1), "steps[1].touchpoint: "),
            (
                FunnelError::RepeatedStep { index: 2, first: 0 },
                "steps[2]: ",
            ),
            (FunnelError::NegativeWindow(-1), "window_ms: "),
            (
                FunnelError::StepWindowCount { given: 2, steps: 3 },
                "step_windows_ms: ",
            ),
            (FunnelError::FirstStepWindow, "step_windows_ms[0]: "),
            (
                FunnelError::NegativeStepWindow {
                    index: 2,
                    value: -5,
                },
                "step_windows_ms[2]: ",
            ),
            (FunnelError::StepWindowsInAnyOrder, "step_windows_ms: "),
            (FunnelError::NoNextSteps, "next_steps: "),
        ];
        for (error, field) in fields {
            let message = error.to_string();
            assert!(message.starts_with(field), "{message}");
        }
    }

    #[test]
    fn repeated_steps_in_order_need_repeated_touchpoints() {
        // visit, visit, purchase: A has one visit (level 1), B two (level 3).
        let set = journeys(&[
            &[("site_visit", 0), ("purchase", 1)],
            &[("site_visit", 0), ("site_visit", 1), ("purchase", 2)],
        ]);
        let opts = options(&["site_visit", "site_visit", "purchase"], |_| {});
        let report = funnel(&set, &opts).unwrap();
        assert_eq!(counts(&report), vec![(2, 1, 1), (1, 1, 0), (1, 1, 0)]);
    }

    /// Customers (minutes): A converts; B stops at the visit, then email and chat; C stops at a
    /// visit that ends the journey; D stops at the form (entered at its first visit), then
    /// email; E stops at the visit, then an ad click; F stops at a visit that ends the journey.
    fn droppers() -> JourneySet {
        journeys(&[
            &[
                ("ad_click", 0),
                ("site_visit", 1),
                ("form_submit", 2),
                ("purchase", 3),
            ],
            &[
                ("ad_click", 0),
                ("site_visit", 1),
                ("email_open", 2),
                ("chat_started", 3),
            ],
            &[("email_open", 0), ("site_visit", 1)],
            &[
                ("site_visit", 0),
                ("site_visit", 1),
                ("form_submit", 2),
                ("email_open", 3),
            ],
            &[("ad_click", 0), ("site_visit", 1), ("ad_click", 2)],
            &[("chat_started", 0), ("site_visit", 1)],
        ])
    }

    #[test]
    fn drop_off_shows_what_the_dropped_did_next_and_before() {
        let report = drop_off(&droppers(), &options(&VISIT_FORM_PURCHASE, |_| {}), 2).unwrap();
        assert_eq!(report.steps.len(), 2, "no drop-off after the last step");

        // Step 1: B, C, E, F dropped; C and F have nothing after their visit.
        let visit = &report.steps[0];
        assert_eq!((visit.dropped, visit.ended_there), (4, 2));
        assert_eq!(visit.next.customers, 2);
        let nodes: Vec<(Option<usize>, &str, usize)> = visit
            .next
            .nodes
            .iter()
            .map(|node| (node.step, node.label.as_str(), node.customers))
            .collect();
        // B: email, chat (two steps, the limit: no drop-off node). E: ad click, then nothing.
        assert_eq!(
            nodes,
            [
                (Some(1), "ad_click", 1),
                (Some(1), "email_open", 1),
                (Some(2), DROP_OFF, 1),
                (Some(2), "chat_started", 1),
            ]
        );
        // Before the visit: B and E an ad click, C an email, F a chat; chat before email by name.
        let before: Vec<(&str, usize, f64)> = visit
            .before
            .iter()
            .map(|count| (count.touchpoint.as_str(), count.customers, count.share))
            .collect();
        assert_eq!(
            before,
            [
                ("ad_click", 2, 0.5),
                ("chat_started", 1, 0.25),
                ("email_open", 1, 0.25)
            ]
        );

        // Step 2: D, whose two visits before the form count as one customer.
        let form = &report.steps[1];
        assert_eq!((form.dropped, form.ended_there), (1, 0));
        assert_eq!(form.before.len(), 1);
        assert_eq!(
            (form.before[0].touchpoint.as_str(), form.before[0].customers),
            ("site_visit", 1)
        );

        assert_eq!(
            report.to_csv(),
            "step,label,dropped,direction,position,touchpoint,customers,share_of_dropped\r\n\
             1,site_visit,4,before,,ad_click,2,0.5\r\n\
             1,site_visit,4,before,,chat_started,1,0.25\r\n\
             1,site_visit,4,before,,email_open,1,0.25\r\n\
             1,site_visit,4,next,1,(drop-off),2,0.5\r\n\
             1,site_visit,4,next,1,ad_click,1,0.25\r\n\
             1,site_visit,4,next,1,email_open,1,0.25\r\n\
             1,site_visit,4,next,2,(drop-off),1,0.25\r\n\
             1,site_visit,4,next,2,chat_started,1,0.25\r\n\
             2,form_submit,1,before,,site_visit,1,1\r\n\
             2,form_submit,1,next,1,email_open,1,1\r\n\
             2,form_submit,1,next,2,(drop-off),1,1\r\n"
        );
    }

    #[test]
    fn drop_off_cuts_at_the_strict_match() {
        // Strict: B's visit is followed by an email, so B stops at the visit; D's second visit
        // is followed by the form, so D stops at the form -- entered at its second visit.
        let strict = options(&VISIT_FORM_PURCHASE, |o| o.order = FunnelOrder::Strict);
        let report = drop_off(&droppers(), &strict, 1).unwrap();
        let form = &report.steps[1];
        assert_eq!(form.dropped, 1);
        // One step next: email, and the path stops at the limit without a drop-off node.
        let nodes: Vec<&str> = form.next.nodes.iter().map(|n| n.label.as_str()).collect();
        assert_eq!(nodes, ["email_open"]);
        assert_eq!(report.steps[0].dropped, 4);
    }

    // Property tests: random journeys over three touchpoints and random funnels of one to four
    // steps, checked against an exhaustive search straight from the `FunnelOptions` docs.
    const NAMES: [&str; 3] = ["a", "b", "c"];

    type RawJourney = Vec<(usize, i64)>;

    fn raw_set(raw: &[RawJourney]) -> JourneySet {
        JourneySet::from_sequences(raw.iter().map(|journey| {
            let mut at_ms = 0;
            journey
                .iter()
                .map(|&(name, gap)| {
                    at_ms += gap;
                    (NAMES[name], "web", at_ms)
                })
                .collect()
        }))
    }

    fn funnel_options() -> impl Strategy<Value = FunnelOptions> {
        prop::collection::vec(0..3usize, 1..5)
            .prop_flat_map(|names| {
                let count = names.len();
                (
                    Just(names),
                    0..3usize,
                    prop::option::of(0..8i64),
                    prop::collection::vec(prop::option::of(0..4i64), count),
                    any::<bool>(),
                )
            })
            .prop_map(
                |(names, order, window_ms, mut step_windows, with_step_windows)| {
                    let order = [
                        FunnelOrder::Ordered,
                        FunnelOrder::Strict,
                        FunnelOrder::AnyOrder,
                    ][order];
                    let mut names = names;
                    if order == FunnelOrder::AnyOrder {
                        names.sort_unstable();
                        names.dedup();
                    }
                    step_windows.truncate(names.len());
                    step_windows[0] = None;
                    let step_windows_ms = if with_step_windows && order != FunnelOrder::AnyOrder {
                        step_windows
                    } else {
                        Vec::new()
                    };
                    FunnelOptions {
                        steps: names
                            .iter()
                            .map(|&name| FunnelStep::new(NAMES[name]))
                            .collect(),
                        order,
                        window_ms,
                        step_windows_ms,
                    }
                },
            )
    }

    /// The lexicographically smallest longest assignment, by trying every one in order.
    fn reference_chain(journey: &Journey, set: &JourneySet, opts: &FunnelOptions) -> Vec<usize> {
        fn extend(
            journey: &Journey,
            set: &JourneySet,
            opts: &FunnelOptions,
            prefix: &mut Vec<usize>,
            best: &mut Vec<usize>,
        ) {
            if prefix.len() > best.len() {
                best.clone_from(prefix);
            }
            let step = prefix.len();
            if step == opts.steps.len() {
                return;
            }
            let at = |position: usize| journey.steps[position].at_ms;
            let from = prefix.last().map_or(0, |&last| last + 1);
            for position in from..journey.steps.len() {
                if set.symbols.name(journey.steps[position].touchpoint)
                    != opts.steps[step].touchpoint
                {
                    continue;
                }
                if let Some(&previous) = prefix.last() {
                    if opts.order == FunnelOrder::Strict && position != previous + 1 {
                        continue;
                    }
                    let limit = opts.step_windows_ms.get(step).copied().flatten();
                    if limit.is_some_and(|limit| at(position) - at(previous) > limit) {
                        continue;
                    }
                    let window = opts.window_ms;
                    if window.is_some_and(|window| at(position) - at(prefix[0]) > window) {
                        continue;
                    }
                }
                prefix.push(position);
                extend(journey, set, opts, prefix, best);
                prefix.pop();
            }
        }
        let mut best = Vec::new();
        extend(journey, set, opts, &mut Vec::new(), &mut best);
        best
    }

    /// The any-order level: the most distinct steps done within the window of any anchor.
    fn reference_any_order(journey: &Journey, set: &JourneySet, opts: &FunnelOptions) -> usize {
        let name = |position: usize| set.symbols.name(journey.steps[position].touchpoint);
        (0..journey.steps.len())
            .map(|anchor| {
                let start_ms = journey.steps[anchor].at_ms;
                opts.steps
                    .iter()
                    .filter(|step| {
                        (anchor..journey.steps.len()).any(|position| {
                            name(position) == step.touchpoint
                                && opts.window_ms.is_none_or(|window| {
                                    journey.steps[position].at_ms - start_ms <= window
                                })
                        })
                    })
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    proptest! {
        #[test]
        fn levels_match_an_exhaustive_search(
            raw in prop::collection::vec(prop::collection::vec((0..3usize, 0..4i64), 1..8), 1..12),
            opts in funnel_options(),
        ) {
            let set = raw_set(&raw);
            let matcher = Matcher::new(&set, &opts).unwrap();
            for journey in &set.journeys {
                let positions = matcher.progress(&set, journey);
                if opts.order == FunnelOrder::AnyOrder {
                    prop_assert_eq!(positions.len(), reference_any_order(journey, &set, &opts));
                    prop_assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]));
                } else {
                    prop_assert_eq!(positions, reference_chain(journey, &set, &opts));
                }
            }
        }

        #[test]
        fn counts_never_increase_and_add_up(
            raw in prop::collection::vec(prop::collection::vec((0..3usize, 0..4i64), 1..8), 0..12),
            opts in funnel_options(),
        ) {
            let set = raw_set(&raw);
            let report = funnel(&set, &opts).unwrap();
            prop_assert_eq!(report.steps.len(), opts.steps.len());
            prop_assert!(report.steps[0].entered <= report.customers);
            for pair in report.steps.windows(2) {
                prop_assert!(pair[1].entered <= pair[0].entered);
                prop_assert_eq!(pair[0].converted, pair[1].entered);
            }
            for stats in &report.steps {
                prop_assert_eq!(stats.entered, stats.converted + stats.dropped);
                prop_assert!((0.0..=1.0).contains(&stats.conversion_from_previous));
                prop_assert_eq!(stats.median_seconds_to_convert.is_some(), stats.step > 1 && stats.entered > 0);
            }
            let last = &report.steps[report.steps.len() - 1];
            prop_assert_eq!(last.dropped, 0);

            let drops = drop_off(&set, &opts, 2).unwrap();
            for (stats, dropped) in report.steps.iter().zip(&drops.steps) {
                prop_assert_eq!(dropped.dropped, stats.dropped);
                prop_assert_eq!(dropped.next.customers + dropped.ended_there, dropped.dropped);
                prop_assert!(dropped.before.iter().all(|count| count.customers <= dropped.dropped));
            }
        }
    }
}
