//! Attribution: which touchpoints (or channels) earn the credit for conversions, under the five
//! rule-based models analysts know (first touch, last touch, linear, time decay, position based)
//! and the data-driven Markov-chain removal effect.
//!
//! These docs are the reference semantics: any other implementation of the report (the
//! ClickHouse one included) must give the same numbers, up to floating-point rounding.
//!
//! - A customer **converts** at the first step whose touchpoint is the goal; the customer's
//!   **touches** are the steps before that one, in journey order. Steps after the conversion
//!   (a second purchase included) are ignored. Customers without the goal are non-converters.
//! - Each touch is credited to its **key**: its touchpoint or its channel
//!   ([`AttributionOptions::by`]). A converter without touches credits [`DIRECT`], in every model.
//! - A conversion's **value** is the [`AttributionOptions::value_property`] of its conversion
//!   step; every model credits a key the same share of the value as of the conversion.

use serde::Serialize;

use crate::journey::{JourneySet, Step};
use crate::metrics::DAY_MS;
use crate::render::to_csv;
use crate::symbols::Sym;

/// Row name for the conversions of customers who had no touch before the goal. Real touchpoint
/// and channel names cannot contain parentheses, so it never clashes with one.
pub const DIRECT: &str = "(direct)";

/// What a touch is credited to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeBy {
    #[default]
    Touchpoint,
    Channel,
}

/// How to attribute. Build with [`AttributionOptions::new`]; [`attribution`] validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionOptions {
    /// The conversion touchpoint.
    pub goal: String,
    pub by: AttributeBy,
    /// Time decay: a touch this many days before the conversion weighs half as much as one at
    /// the conversion. Finite and above 0. Default 7.
    pub half_life_days: f64,
    /// Position based: `(first, middle, last)` shares, each at least 0, summing to 1 within
    /// 1e-9. `middle` is split evenly between the touches between the first and the last.
    /// Default `(0.4, 0.2, 0.4)`.
    pub position_weights: (f64, f64, f64),
    /// Property of the conversion step holding the conversion's value, read as a number
    /// (`12`, `12.5`, `-3`, `1e3`); missing, or not a finite number, counts as 0. `None`: every
    /// value is 0.
    pub value_property: Option<String>,
}

impl AttributionOptions {
    /// Options with the defaults, attributing `goal` by touchpoint without values.
    pub fn new(goal: impl Into<String>) -> Self {
        Self {
            goal: goal.into(),
            by: AttributeBy::Touchpoint,
            half_life_days: 7.0,
            position_weights: (0.4, 0.2, 0.4),
            value_property: None,
        }
    }

    /// Checks the numbers the models divide by or share out.
    pub fn validate(&self) -> Result<(), AttributionError> {
        if !(self.half_life_days.is_finite() && self.half_life_days > 0.0) {
            return Err(AttributionError::HalfLifeDays(self.half_life_days));
        }
        let (first, middle, last) = self.position_weights;
        let each_valid = [first, middle, last]
            .iter()
            .all(|weight| weight.is_finite() && *weight >= 0.0);
        if !each_valid || (first + middle + last - 1.0).abs() > 1e-9 {
            return Err(AttributionError::PositionWeights(first, middle, last));
        }
        Ok(())
    }
}

/// Options [`attribution`] refuses, naming the field and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttributionError {
    #[error("half_life_days: must be a positive number of days, got {0}")]
    HalfLifeDays(f64),
    #[error(
        "position_weights: first, middle and last must each be at least 0 and sum to 1, got ({0}, {1}, {2})"
    )]
    PositionWeights(f64, f64, f64),
}

/// The attribution models, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// All credit to the first touch.
    FirstTouch,
    /// All credit to the last touch.
    LastTouch,
    /// Each of the `n` touches gets `1/n`.
    Linear,
    /// Touch `i` weighs `2^(-(conversion_ms - touch_ms) / (half_life_days * 86_400_000))`, and
    /// gets its weight over the sum of the conversion's weights. Touches at the conversion's
    /// time weigh 1. (Computed relative to the last touch, which the normalisation cancels, so
    /// touches thousands of half-lives old still share the credit instead of dividing by 0.)
    TimeDecay,
    /// With weights `(first, middle, last)`: one touch gets everything; two touches get
    /// `first / (first + last)` and `last / (first + last)` (half each when both are 0; 50/50
    /// with the defaults); three or more: `first` to the first, `last` to the last, and
    /// `middle / (n - 2)` to each touch between them.
    PositionBased,
    /// Markov-chain removal effect, see [`attribution`]: credit in proportion to the row's
    /// [`AttributionRow::removal_effect`].
    DataDriven,
}

impl Model {
    /// Every model, in report (and CSV column) order.
    pub const ALL: [Model; 6] = [
        Model::FirstTouch,
        Model::LastTouch,
        Model::Linear,
        Model::TimeDecay,
        Model::PositionBased,
        Model::DataDriven,
    ];

    /// The snake_case name used in JSON field names and CSV headers.
    pub fn name(self) -> &'static str {
        match self {
            Model::FirstTouch => "first_touch",
            Model::LastTouch => "last_touch",
            Model::Linear => "linear",
            Model::TimeDecay => "time_decay",
            Model::PositionBased => "position_based",
            Model::DataDriven => "data_driven",
        }
    }
}

/// What one model credits to one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Credit {
    /// Conversions, fractional: a conversion is shared between its touches.
    pub conversions: f64,
    pub value: f64,
}

/// The credit of one touchpoint (or channel, or [`DIRECT`]) under every model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionRow {
    pub name: String,
    /// Markov removal effect in `0..=1`: the share of the chain's conversion probability lost
    /// when the row's state is removed. 0 when nothing converts.
    pub removal_effect: f64,
    pub first_touch: Credit,
    pub last_touch: Credit,
    pub linear: Credit,
    pub time_decay: Credit,
    pub position_based: Credit,
    pub data_driven: Credit,
}

impl AttributionRow {
    /// The row's credit under `model`.
    pub fn credit(&self, model: Model) -> Credit {
        match model {
            Model::FirstTouch => self.first_touch,
            Model::LastTouch => self.last_touch,
            Model::Linear => self.linear,
            Model::TimeDecay => self.time_decay,
            Model::PositionBased => self.position_based,
            Model::DataDriven => self.data_driven,
        }
    }
}

/// The attribution report. Under every model the rows' conversions sum to `conversions` and
/// their values to `value` (up to rounding).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionReport {
    pub goal: String,
    pub by: AttributeBy,
    /// Converters.
    pub conversions: usize,
    /// Sum of the conversions' values.
    pub value: f64,
    /// The Markov chain's probability of reaching the conversion from the start.
    pub conversion_probability: f64,
    /// One row per key in the Markov chain (every key of a converter's touches or of a
    /// non-converter's steps, even with no credit), plus [`DIRECT`] when a converter had no
    /// touch; sorted by name (byte order).
    pub rows: Vec<AttributionRow>,
}

impl AttributionReport {
    /// One line per row: `name,removal_effect`, then `<model>_conversions,<model>_value` for
    /// each model in [`Model::ALL`] order.
    pub fn to_csv(&self) -> String {
        let mut header = vec!["name", "removal_effect"];
        let names: Vec<[String; 2]> = Model::ALL
            .iter()
            .map(|model| {
                [
                    format!("{}_conversions", model.name()),
                    format!("{}_value", model.name()),
                ]
            })
            .collect();
        header.extend(names.iter().flatten().map(String::as_str));
        let rows = self.rows.iter().map(|row| {
            let mut fields = vec![row.name.clone(), row.removal_effect.to_string()];
            for model in Model::ALL {
                let credit = row.credit(model);
                fields.push(credit.conversions.to_string());
                fields.push(credit.value.to_string());
            }
            fields
        });
        to_csv(&header, rows)
    }
}

/// Attributes the conversions to `opts.goal` in `set` under every [`Model`].
///
/// The data-driven model is a first-order Markov chain over all journeys. A converter's path is
/// `(start)`, its touches' keys (or [`DIRECT`] when it has none), then `(conversion)`; a
/// non-converter's is `(start)`, all its steps' keys, then `(null)`. Every consecutive pair of a
/// path is one transition, consecutive repeats of a key included: they are self-loops. (A
/// self-loop only keeps the chain in its state for longer, so counting repeats or collapsing
/// them gives the same `P` and removal effects.) Transition probabilities are transition counts
/// over the counts out of the same state. `P` is the
/// probability of absorption in `(conversion)` from `(start)`, solved exactly. Removing a state
/// sends every transition into it to `(null)`; its removal effect is `1 - P_without / P` (0
/// when `P` is 0). The data-driven credits are the removal effects scaled so they sum to the
/// conversions, and separately to the value; with no conversions every credit is 0.
pub fn attribution(
    set: &JourneySet,
    opts: &AttributionOptions,
) -> Result<AttributionReport, AttributionError> {
    opts.validate()?;
    let goal = set.symbols.get(&opts.goal);
    let key = |step: &Step| match opts.by {
        AttributeBy::Touchpoint => step.touchpoint,
        AttributeBy::Channel => step.channel,
    };
    let mut rows = RowNames::default();
    // Indexed by row, then by model in `Model::ALL` order.
    let mut credits: Vec<[Credit; 6]> = Vec::new();
    let mut chain = Chain::default();
    let mut conversions = 0;
    let mut total_value = 0.0;
    let mut path: Vec<usize> = Vec::new();
    let mut times: Vec<i64> = Vec::new();
    for journey in &set.journeys {
        let conversion = journey.conversion_index(goal);
        let touches = &journey.steps[..conversion.unwrap_or(journey.steps.len())];
        path.clear();
        times.clear();
        for step in touches {
            path.push(rows.of(key(step), set));
            times.push(step.at_ms);
        }
        let Some(index) = conversion else {
            chain.record(&path, false);
            continue;
        };
        let converted = &journey.steps[index];
        if path.is_empty() {
            path.push(rows.direct());
            times.push(converted.at_ms);
        }
        chain.record(&path, true);
        let value = opts
            .value_property
            .as_deref()
            .and_then(|property| set.property(converted, property))
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|value| value.is_finite())
            .unwrap_or(0.0);
        conversions += 1;
        total_value += value;
        credits.resize(rows.names.len(), [Credit::default(); 6]);
        let mut credit = |row: usize, model: Model, share: f64| {
            let slot = &mut credits[row][model as usize];
            slot.conversions += share;
            slot.value += share * value;
        };
        let last = path.len() - 1;
        credit(path[0], Model::FirstTouch, 1.0);
        credit(path[last], Model::LastTouch, 1.0);
        for (touch, decay) in decay_shares(&times, opts.half_life_days).enumerate() {
            credit(path[touch], Model::Linear, 1.0 / path.len() as f64);
            credit(path[touch], Model::TimeDecay, decay);
            credit(
                path[touch],
                Model::PositionBased,
                position_share(touch, path.len(), opts.position_weights),
            );
        }
    }
    credits.resize(rows.names.len(), [Credit::default(); 6]);

    let system = chain.absorbing_system(rows.names.len() + 1);
    let (probability, removal_effects) = removal_effects(&system);
    let effect_sum: f64 = removal_effects.iter().sum();
    let mut report_rows: Vec<AttributionRow> = rows
        .names
        .into_iter()
        .zip(credits)
        .zip(removal_effects)
        .map(|((name, credits), removal_effect)| {
            let share = if effect_sum > 0.0 {
                removal_effect / effect_sum
            } else {
                0.0
            };
            AttributionRow {
                name,
                removal_effect,
                first_touch: credits[Model::FirstTouch as usize],
                last_touch: credits[Model::LastTouch as usize],
                linear: credits[Model::Linear as usize],
                time_decay: credits[Model::TimeDecay as usize],
                position_based: credits[Model::PositionBased as usize],
                data_driven: Credit {
                    conversions: share * conversions as f64,
                    value: share * total_value,
                },
            }
        })
        .collect();
    report_rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(AttributionReport {
        goal: opts.goal.clone(),
        by: opts.by,
        conversions,
        value: total_value,
        conversion_probability: probability,
        rows: report_rows,
    })
}

/// Row numbers for keys, in order of first appearance; [`DIRECT`] gets one when first needed.
#[derive(Default)]
struct RowNames {
    names: Vec<String>,
    /// Indexed by key: its row once it has one. (A hash map here cost a 10M-step report
    /// about a tenth of a second in hashing alone.)
    by_key: Vec<Option<usize>>,
    direct: Option<usize>,
}

impl RowNames {
    fn of(&mut self, key: Sym, set: &JourneySet) -> usize {
        let slot = key as usize;
        if self.by_key.len() <= slot {
            self.by_key.resize(slot + 1, None);
        }
        *self.by_key[slot].get_or_insert_with(|| {
            self.names.push(set.symbols.name(key).to_owned());
            self.names.len() - 1
        })
    }

    fn direct(&mut self) -> usize {
        let next = self.names.len();
        let row = *self.direct.get_or_insert(next);
        if row == next {
            self.names.push(DIRECT.to_owned());
        }
        row
    }
}

/// Time-decay shares of touches at `times` (ascending), see [`Model::TimeDecay`].
fn decay_shares(times: &[i64], half_life_days: f64) -> impl Iterator<Item = f64> + '_ {
    let half_life_ms = half_life_days * DAY_MS;
    let latest = times.last().copied().unwrap_or_default();
    let weight = move |at_ms: i64| (-((latest - at_ms) as f64) / half_life_ms).exp2();
    let total: f64 = times.iter().map(|&at_ms| weight(at_ms)).sum();
    times.iter().map(move |&at_ms| weight(at_ms) / total)
}

/// Position-based share of touch `touch` of `touches`, see [`Model::PositionBased`].
fn position_share(touch: usize, touches: usize, (first, middle, last): (f64, f64, f64)) -> f64 {
    debug_assert!(touch < touches);
    match touches {
        1 => 1.0,
        2 if first + last == 0.0 => 0.5,
        2 if touch == 0 => first / (first + last),
        2 => last / (first + last),
        _ if touch == 0 => first,
        _ if touch == touches - 1 => last,
        _ => middle / (touches - 2) as f64,
    }
}

/// Transition counts of the Markov chain. State 0 is `(start)`, state `row + 1` is a row's key;
/// `(conversion)` and `(null)` are absorbing and kept only as counts out of each state.
#[derive(Default)]
struct Chain {
    /// Indexed by state, then by the state moved to.
    between: Vec<Vec<u64>>,
    to_conversion: Vec<u64>,
    out: Vec<u64>,
}

impl Chain {
    fn record(&mut self, path: &[usize], converted: bool) {
        let mut from = 0;
        for &row in path {
            let to = row + 1;
            if self.between.len() <= from {
                self.between.resize_with(from + 1, Vec::new);
            }
            bump(&mut self.between[from], to);
            bump(&mut self.out, from);
            from = to;
        }
        bump(&mut self.out, from);
        if converted {
            bump(&mut self.to_conversion, from);
        }
    }

    /// The chain over `states` transient states, as the system [`removal_effects`] solves.
    fn absorbing_system(&self, states: usize) -> AbsorbingSystem {
        let out = |state: usize| self.out.get(state).copied().unwrap_or(0) as f64;
        let mut matrix = identity(states);
        for (from, counts) in self.between.iter().enumerate() {
            for (to, &count) in counts.iter().enumerate().filter(|(_, &count)| count > 0) {
                matrix[from][to] -= count as f64 / out(from);
            }
        }
        let to_conversion = (0..states)
            .map(|state| match self.to_conversion.get(state) {
                Some(&count) if count > 0 => count as f64 / out(state),
                _ => 0.0,
            })
            .collect();
        AbsorbingSystem {
            matrix,
            to_conversion,
        }
    }
}

/// `I - Q` and `r` of an absorbing chain: `Q` holds the transition probabilities between
/// transient states, `r` each state's probability of moving straight to `(conversion)`.
#[derive(Clone)]
struct AbsorbingSystem {
    matrix: Vec<Vec<f64>>,
    to_conversion: Vec<f64>,
}

fn bump(counts: &mut Vec<u64>, state: usize) {
    if counts.len() <= state {
        counts.resize(state + 1, 0);
    }
    counts[state] += 1;
}

/// `P` from `(start)` and the removal effect of every state but `(start)` (indexed by row).
///
/// One inverse instead of one solve per removed state: with `N = (I - Q)^-1` and `x = N r` (each
/// state's conversion probability), the paths that never reach `s` are untouched by removing
/// it, and those that do convert with probability `h(s) x(s)`, where `h(s) = N[start][s] /
/// N[s][s]` is the probability of ever reaching `s`. So `P_without = P - h(s) x(s)`.
fn removal_effects(system: &AbsorbingSystem) -> (f64, Vec<f64>) {
    let inverse = invert(system.matrix.clone());
    let converts: Vec<f64> = inverse
        .iter()
        .map(|row| {
            row.iter()
                .zip(&system.to_conversion)
                .map(|(n, r)| n * r)
                .sum()
        })
        .collect();
    let probability = converts[0];
    let effects = (1..inverse.len())
        .map(|state| {
            if probability <= 0.0 {
                return 0.0;
            }
            let reach = inverse[0][state] / inverse[state][state];
            reach * converts[state] / probability
        })
        .collect();
    (probability, effects)
}

/// Inverse by Gauss-Jordan elimination with partial pivoting. The caller passes `I - Q` of an
/// absorbing chain (every state leads to absorption), which is always invertible.
fn invert(mut matrix: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let size = matrix.len();
    let mut inverse = identity(size);
    for column in 0..size {
        let pivot = (column..size)
            .max_by(|&a, &b| matrix[a][column].abs().total_cmp(&matrix[b][column].abs()))
            .unwrap_or(column);
        matrix.swap(column, pivot);
        inverse.swap(column, pivot);
        let divisor = matrix[column][column];
        debug_assert!(divisor != 0.0, "I - Q of an absorbing chain is invertible");
        for entry in 0..size {
            matrix[column][entry] /= divisor;
            inverse[column][entry] /= divisor;
        }
        for row in 0..size {
            let factor = matrix[row][column];
            if row == column || factor == 0.0 {
                continue;
            }
            for entry in 0..size {
                matrix[row][entry] -= factor * matrix[column][entry];
                inverse[row][entry] -= factor * inverse[column][entry];
            }
        }
    }
    inverse
}

fn identity(size: usize) -> Vec<Vec<f64>> {
    (0..size)
        .map(|row| {
            let mut unit = vec![0.0; size];
            unit[row] = 1.0;
            unit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DAY: i64 = 86_400_000;

    /// Gives step `step` of journey `journey` the property `value = text`.
    fn set_value(set: &mut JourneySet, journey: usize, step: usize, text: &str) {
        if set.properties.is_empty() {
            // `from_sequences` points every step at property list 0; keep that one empty.
            set.properties.push(Box::new([]));
        }
        let pair = (set.symbols.intern("value"), set.symbols.intern(text));
        set.journeys[journey].steps[step].touch = set.properties.len() as u32;
        set.properties.push(Box::new([pair]));
    }

    /// Five customers (half life 7 days, default weights), worked out by hand:
    ///
    /// ```text
    /// J1: ad_click d0, email_open d7, site_visit d14, purchase d14 (100), email_open d20
    /// J2: site_visit d0, email_open d7, purchase d14 (50), purchase d15 (999)
    /// J3: purchase d0 (30)                                  -> (direct)
    /// J4: ad_click d0, site_visit d1                         -> no conversion
    /// J5: email_open d0, email_open d1                       -> no conversion
    /// ```
    /// Conversions 3 (J2's second purchase and J1's later email are ignored), value 180.
    ///
    /// - First touch: ad 1 (100), site 1 (50), direct 1 (30).
    /// - Last touch: site 1 (100), email 1 (50), direct 1 (30).
    /// - Linear: J1 gives ad, email, site 1/3 each (100/3); J2 site, email 1/2 (25).
    ///   ad 1/3 (100/3), email 5/6 (175/3), site 5/6 (175/3), direct 1 (30).
    /// - Time decay: J1 weights ad 2^-2, email 2^-1, site 1: shares 1/7, 2/7, 4/7. J2 (converts
    ///   d14): site 2^-2, email 2^-1: shares 1/3, 2/3. ad 1/7 (100/7), email 2/7 + 2/3 = 20/21
    ///   (200/7 + 100/3 = 1300/21), site 4/7 + 1/3 = 19/21 (400/7 + 50/3 = 1550/21), direct 1.
    /// - Position based: J1 ad 0.4, email 0.2, site 0.4; J2 two touches 0.5/0.5.
    ///   ad 0.4 (40), email 0.7 (20 + 25 = 45), site 0.9 (40 + 25 = 65), direct 1 (30).
    /// - Markov. Paths: start-A-E-S-conv, start-S-E-conv, start-D-conv, start-A-S-null,
    ///   start-E-E-null. Out of start: A 2/5, S 1/5, D 1/5, E 1/5. Out of A: E 1/2, S 1/2. Out of
    ///   E (4): S, conv, E (self-loop), null, 1/4 each. Out of S (3): conv, E, null, 1/3 each.
    ///   D: conv 1. Solving: x_E = (x_S + 1) / 3, x_S = 1/3 + x_E / 3, so x_S = x_E = 1/2,
    ///   x_A = 1/2, x_D = 1, P = 2/5 * 1/2 + 1/5 * 1/2 + 1/5 * 1 + 1/5 * 1/2 = 3/5.
    ///   - without A: P = 1/10 + 1/5 + 1/10 = 2/5, effect 1/3;
    ///   - without E: x_S = 1/3, x_A = 1/6, P = 1/15 + 1/15 + 1/5 = 1/3, effect 4/9;
    ///   - without S: x_E = 1/4 + x_E / 4 = 1/3, x_A = 1/6, P = 1/15 + 1/5 + 1/15 = 1/3, effect 4/9;
    ///   - without D: P = 2/5, effect 1/3.
    ///
    ///   Sum 14/9, so shares 3/14, 4/14, 4/14, 3/14 of 3 conversions and of 180.
    fn worked_example() -> JourneySet {
        let mut set = JourneySet::from_sequences([
            vec![
                ("ad_click", "ads", 0),
                ("email_open", "email", 7 * DAY),
                ("site_visit", "web", 14 * DAY),
                ("purchase", "web", 14 * DAY),
                ("email_open", "email", 20 * DAY),
            ],
            vec![
                ("site_visit", "web", 0),
                ("email_open", "email", 7 * DAY),
                ("purchase", "web", 14 * DAY),
                ("purchase", "web", 15 * DAY),
            ],
            vec![("purchase", "web", 0)],
            vec![("ad_click", "ads", 0), ("site_visit", "web", DAY)],
            vec![("email_open", "email", 0), ("email_open", "email", DAY)],
        ]);
        set_value(&mut set, 0, 3, "100");
        set_value(&mut set, 1, 2, "50");
        set_value(&mut set, 1, 3, "999");
        set_value(&mut set, 2, 0, "30");
        set
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{what}: got {actual}, expected {expected}"
        );
    }

    fn row<'a>(report: &'a AttributionReport, name: &str) -> &'a AttributionRow {
        report
            .rows
            .iter()
            .find(|row| row.name == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    }

    /// `(conversions, value)` per model, in [`Model::ALL`] order.
    type ModelCredits = [(f64, f64); 6];

    #[test]
    fn every_model_matches_the_hand_computed_example() {
        let mut opts = AttributionOptions::new("purchase");
        opts.value_property = Some("value".into());
        let report = attribution(&worked_example(), &opts).unwrap();
        assert_eq!(report.conversions, 3);
        assert_close(report.value, 180.0, "value");
        assert_close(report.conversion_probability, 0.6, "P");
        let names: Vec<&str> = report.rows.iter().map(|row| row.name.as_str()).collect();
        assert_eq!(names, ["(direct)", "ad_click", "email_open", "site_visit"]);

        let expected: [(&str, f64, ModelCredits); 4] = [
            (
                "(direct)",
                1.0 / 3.0,
                [
                    (1.0, 30.0),
                    (1.0, 30.0),
                    (1.0, 30.0),
                    (1.0, 30.0),
                    (1.0, 30.0),
                    (9.0 / 14.0, 270.0 / 7.0),
                ],
            ),
            (
                "ad_click",
                1.0 / 3.0,
                [
                    (1.0, 100.0),
                    (0.0, 0.0),
                    (1.0 / 3.0, 100.0 / 3.0),
                    (1.0 / 7.0, 100.0 / 7.0),
                    (0.4, 40.0),
                    (9.0 / 14.0, 270.0 / 7.0),
                ],
            ),
            (
                "email_open",
                4.0 / 9.0,
                [
                    (0.0, 0.0),
                    (1.0, 50.0),
                    (5.0 / 6.0, 175.0 / 3.0),
                    (20.0 / 21.0, 1300.0 / 21.0),
                    (0.7, 45.0),
                    (6.0 / 7.0, 360.0 / 7.0),
                ],
            ),
            (
                "site_visit",
                4.0 / 9.0,
                [
                    (1.0, 50.0),
                    (1.0, 100.0),
                    (5.0 / 6.0, 175.0 / 3.0),
                    (19.0 / 21.0, 1550.0 / 21.0),
                    (0.9, 65.0),
                    (6.0 / 7.0, 360.0 / 7.0),
                ],
            ),
        ];
        for (name, removal_effect, credits) in expected {
            let actual = row(&report, name);
            assert_close(actual.removal_effect, removal_effect, name);
            for (model, (conversions, value)) in Model::ALL.into_iter().zip(credits) {
                let what = format!("{name} {}", model.name());
                assert_close(actual.credit(model).conversions, conversions, &what);
                assert_close(actual.credit(model).value, value, &what);
            }
        }
    }

    /// `P` after removing `state` the slow way, straight from the definition: transitions into
    /// it go to `(null)`, so it is cut off from every other state.
    fn probability_without(system: &AbsorbingSystem, state: usize) -> f64 {
        let AbsorbingSystem {
            mut matrix,
            mut to_conversion,
        } = system.clone();
        for entries in &mut matrix {
            entries[state] = 0.0;
        }
        matrix[state].iter_mut().for_each(|entry| *entry = 0.0);
        matrix[state][state] = 1.0;
        to_conversion[state] = 0.0;
        let inverse = invert(matrix);
        inverse[0]
            .iter()
            .zip(&to_conversion)
            .map(|(n, r)| n * r)
            .sum()
    }

    #[test]
    fn channels_pool_their_touchpoints() {
        let set = JourneySet::from_sequences([vec![
            ("site_visit", "web", 0),
            ("blog_read", "web", DAY),
            ("email_open", "email", 2 * DAY),
            ("purchase", "web", 3 * DAY),
        ]]);
        let mut opts = AttributionOptions::new("purchase");
        opts.by = AttributeBy::Channel;
        let report = attribution(&set, &opts).unwrap();
        let names: Vec<&str> = report.rows.iter().map(|row| row.name.as_str()).collect();
        assert_eq!(
            names,
            ["email", "web"],
            "the goal's own channel is no touch"
        );
        assert_close(row(&report, "web").linear.conversions, 2.0 / 3.0, "linear");
        assert_close(row(&report, "web").first_touch.conversions, 1.0, "first");
        assert_close(row(&report, "email").last_touch.conversions, 1.0, "last");
    }

    #[test]
    fn position_based_splits_the_middle_evenly_and_renormalises_two_touches() {
        let set = JourneySet::from_sequences([
            vec![
                ("a", "web", 0),
                ("b", "web", 1),
                ("c", "web", 2),
                ("d", "web", 3),
                ("purchase", "web", 4),
            ],
            vec![("e", "web", 0), ("f", "web", 1), ("purchase", "web", 2)],
        ]);
        let mut opts = AttributionOptions::new("purchase");
        opts.position_weights = (0.3, 0.5, 0.2);
        let report = attribution(&set, &opts).unwrap();
        let share = |name| row(&report, name).position_based.conversions;
        assert_close(share("a"), 0.3, "first of four");
        assert_close(share("b"), 0.25, "middle of four");
        assert_close(share("c"), 0.25, "middle of four");
        assert_close(share("d"), 0.2, "last of four");
        assert_close(share("e"), 0.6, "first of two: 0.3 / 0.5");
        assert_close(share("f"), 0.4, "last of two: 0.2 / 0.5");

        opts.position_weights = (0.0, 1.0, 0.0);
        let report = attribution(&set, &opts).unwrap();
        assert_close(row(&report, "e").position_based.conversions, 0.5, "no ends");
        assert_close(row(&report, "a").position_based.conversions, 0.0, "first");
    }

    #[test]
    fn ancient_touches_still_share_the_time_decay_credit() {
        let set = JourneySet::from_sequences([vec![
            ("a", "web", 0),
            ("b", "web", 0),
            ("purchase", "web", 100_000 * DAY),
        ]]);
        let mut opts = AttributionOptions::new("purchase");
        opts.half_life_days = 1.0;
        let report = attribution(&set, &opts).unwrap();
        assert_close(row(&report, "a").time_decay.conversions, 0.5, "a");
        assert_close(row(&report, "b").time_decay.conversions, 0.5, "b");
    }

    #[test]
    fn without_conversions_every_credit_is_zero_not_nan() {
        let report = attribution(&worked_example(), &AttributionOptions::new("webinar")).unwrap();
        assert_eq!(report.conversions, 0);
        assert_eq!(report.conversion_probability, 0.0);
        // Every key of the (now non-converting) journeys is a state with a row.
        let names: Vec<&str> = report.rows.iter().map(|row| row.name.as_str()).collect();
        assert_eq!(names, ["ad_click", "email_open", "purchase", "site_visit"]);
        for row in &report.rows {
            assert_eq!(row.removal_effect, 0.0);
            for model in Model::ALL {
                assert_eq!(row.credit(model), Credit::default(), "{}", row.name);
            }
        }

        let empty = attribution(&JourneySet::default(), &AttributionOptions::new("purchase"));
        let empty = empty.unwrap();
        assert_eq!((empty.conversions, empty.rows.len()), (0, 0));
        assert_eq!(empty.conversion_probability, 0.0);
    }

    #[test]
    fn values_that_are_not_finite_numbers_count_zero() {
        let mut set = JourneySet::from_sequences([
            vec![("a", "web", 0), ("purchase", "web", 1)],
            vec![("b", "web", 0), ("purchase", "web", 1)],
            vec![("c", "web", 0), ("purchase", "web", 1)],
            vec![("d", "web", 0), ("purchase", "web", 1)],
        ]);
        set_value(&mut set, 0, 1, "12.5");
        set_value(&mut set, 1, 1, "twelve");
        set_value(&mut set, 2, 1, "inf");
        let mut opts = AttributionOptions::new("purchase");
        opts.value_property = Some("value".into());
        let report = attribution(&set, &opts).unwrap();
        assert_eq!(report.value, 12.5);
        assert_eq!(row(&report, "a").last_touch.value, 12.5);
        assert_eq!(row(&report, "b").last_touch.value, 0.0);
        assert_eq!(row(&report, "c").last_touch.value, 0.0);
        assert_eq!(row(&report, "d").last_touch.value, 0.0, "no property");
    }

    #[test]
    fn invalid_options_are_refused_naming_the_field() {
        let refused = |change: fn(&mut AttributionOptions)| {
            let mut opts = AttributionOptions::new("purchase");
            change(&mut opts);
            attribution(&worked_example(), &opts)
                .unwrap_err()
                .to_string()
        };
        for change in [
            (|o: &mut AttributionOptions| o.half_life_days = 0.0) as fn(&mut _),
            |o| o.half_life_days = -1.0,
            |o| o.half_life_days = f64::NAN,
            |o| o.half_life_days = f64::INFINITY,
        ] {
            assert!(refused(change).starts_with("half_life_days: "));
        }
        for change in [
            (|o: &mut AttributionOptions| o.position_weights = (0.5, 0.5, 0.5)) as fn(&mut _),
            |o| o.position_weights = (-0.2, 0.8, 0.4),
            |o| o.position_weights = (f64::NAN, 0.5, 0.5),
        ] {
            assert!(refused(change).starts_with("position_weights: "));
        }
        let mut near = AttributionOptions::new("purchase");
        near.position_weights = (0.1, 0.2, 0.7 + 1e-12);
        assert_eq!(near.validate(), Ok(()));
    }

    #[test]
    fn csv_has_a_column_pair_per_model() {
        let report = attribution(&worked_example(), &AttributionOptions::new("purchase")).unwrap();
        let csv = report.to_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(
                "name,removal_effect,first_touch_conversions,first_touch_value,\
                 last_touch_conversions,last_touch_value,linear_conversions,linear_value,\
                 time_decay_conversions,time_decay_value,position_based_conversions,\
                 position_based_value,data_driven_conversions,data_driven_value"
            )
        );
        // Values round-trip: each field parses back to the number it shows, in column order.
        let ad_click = lines.nth(1).unwrap();
        let fields: Vec<&str> = ad_click.split(',').collect();
        assert_eq!(fields[0], "ad_click");
        let numbers: Vec<f64> = fields[1..]
            .iter()
            .map(|field| field.parse().unwrap())
            .collect();
        let row = row(&report, "ad_click");
        let mut expected = vec![row.removal_effect];
        for model in Model::ALL {
            expected.extend([row.credit(model).conversions, row.credit(model).value]);
        }
        assert_eq!(numbers, expected);
        assert_eq!(&numbers[..5], [1.0 / 3.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(csv.lines().count(), 5);
    }

    const TOUCHPOINTS: [&str; 5] = ["ad_click", "email_open", "site_visit", "chat", "purchase"];
    const VALUES: [Option<&str>; 4] = [None, Some("10"), Some("2.5"), Some("oops")];

    /// Journeys of `(touchpoint, channel, gap in hours, value)` steps.
    type RawJourney = Vec<(usize, usize, i64, usize)>;

    fn raw_journeys() -> impl Strategy<Value = Vec<RawJourney>> {
        prop::collection::vec(
            prop::collection::vec((0..5usize, 0..3usize, 0..400i64, 0..4usize), 1..8),
            0..20,
        )
    }

    fn options() -> impl Strategy<Value = AttributionOptions> {
        (any::<bool>(), 0.01..60.0f64, 0.0..1.0f64, 0.0..1.0f64).prop_map(
            |(by_channel, half_life_days, a, b)| {
                let (low, high) = if a < b { (a, b) } else { (b, a) };
                AttributionOptions {
                    by: if by_channel {
                        AttributeBy::Channel
                    } else {
                        AttributeBy::Touchpoint
                    },
                    half_life_days,
                    position_weights: (low, high - low, 1.0 - high),
                    value_property: Some("value".into()),
                    ..AttributionOptions::new("purchase")
                }
            },
        )
    }

    fn journey_set(raw: &[RawJourney]) -> JourneySet {
        let mut set = JourneySet::from_sequences(raw.iter().map(|journey| {
            let mut at_ms = 0;
            journey
                .iter()
                .map(|&(touchpoint, channel, gap_hours, _)| {
                    at_ms += gap_hours * 3_600_000;
                    (
                        TOUCHPOINTS[touchpoint],
                        ["web", "email", "ads"][channel],
                        at_ms,
                    )
                })
                .collect()
        }));
        for (journey, steps) in raw.iter().enumerate() {
            for (step, &(_, _, _, value)) in steps.iter().enumerate() {
                if let Some(text) = VALUES[value] {
                    set_value(&mut set, journey, step, text);
                }
            }
        }
        set
    }

    proptest! {
        #[test]
        fn every_model_shares_out_exactly_the_conversions_and_value(
            raw in raw_journeys(),
            opts in options(),
        ) {
            let set = journey_set(&raw);
            let report = attribution(&set, &opts).unwrap();
            let converters = set
                .journeys
                .iter()
                .filter(|journey| journey.steps.iter().any(|step| set.symbols.name(step.touchpoint) == "purchase"))
                .count();
            prop_assert_eq!(report.conversions, converters);
            for model in Model::ALL {
                let conversions: f64 = report.rows.iter().map(|row| row.credit(model).conversions).sum();
                let value: f64 = report.rows.iter().map(|row| row.credit(model).value).sum();
                prop_assert!((conversions - report.conversions as f64).abs() < 1e-9, "{:?}: {}", model, conversions);
                prop_assert!((value - report.value).abs() < 1e-9, "{:?}: {} of {}", model, value, report.value);
                prop_assert!(report.rows.iter().all(|row| row.credit(model).conversions >= -1e-12));
            }
            for row in &report.rows {
                prop_assert!((-1e-12..=1.0 + 1e-12).contains(&row.removal_effect), "{}", row.removal_effect);
            }
            prop_assert!(report.rows.windows(2).all(|pair| pair[0].name < pair[1].name));
        }

        #[test]
        fn collapsing_repeats_leaves_the_data_driven_credits_alone(raw in raw_journeys()) {
            let repeated = journey_set(&raw);
            let collapsed = JourneySet::from_sequences(repeated.journeys.iter().map(|journey| {
                let mut steps: Vec<(&str, &str, i64)> = journey
                    .steps
                    .iter()
                    .map(|step| (repeated.symbols.name(step.touchpoint), "web", step.at_ms))
                    .collect();
                steps.dedup_by_key(|step| step.0);
                steps
            }));
            let opts = AttributionOptions::new("purchase");
            let with_loops = attribution(&repeated, &opts).unwrap();
            let without = attribution(&collapsed, &opts).unwrap();
            prop_assert!((with_loops.conversion_probability - without.conversion_probability).abs() < 1e-9);
            prop_assert_eq!(with_loops.rows.len(), without.rows.len());
            for (a, b) in with_loops.rows.iter().zip(&without.rows) {
                prop_assert_eq!(&a.name, &b.name);
                prop_assert!((a.removal_effect - b.removal_effect).abs() < 1e-9, "{}", a.name);
                prop_assert!((a.data_driven.conversions - b.data_driven.conversions).abs() < 1e-9);
            }
        }

        #[test]
        fn removal_effects_match_solving_each_removal_on_its_own(
            paths in prop::collection::vec((prop::collection::vec(0..5usize, 1..7), any::<bool>()), 1..12),
        ) {
            let mut chain = Chain::default();
            for (path, converted) in &paths {
                chain.record(path, *converted);
            }
            let states = 1 + paths.iter().flat_map(|(path, _)| path).max().map_or(0, |row| row + 1);
            let system = chain.absorbing_system(states);
            let (probability, effects) = removal_effects(&system);
            let converted = paths.iter().filter(|(_, converted)| *converted).count();
            prop_assert!((probability > 0.0) == (converted > 0));
            for (row, effect) in effects.into_iter().enumerate() {
                let expected = if probability > 0.0 {
                    1.0 - probability_without(&system, row + 1) / probability
                } else {
                    0.0
                };
                prop_assert!((effect - expected).abs() < 1e-9, "row {}: {} vs {}", row, effect, expected);
            }
        }
    }
}
