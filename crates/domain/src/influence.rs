//! Touchpoint influence: how many converters pass through each touchpoint, how much more often
//! the customers who did it convert, and which touchpoints are moments of impact (nearly every
//! converter passes through) or moments of influence (few see it, strong lift).
//!
//! These docs are the reference semantics: any other implementation of the report (the
//! ClickHouse one included) must give the same numbers and labels.
//!
//! A customer **converts** at the first step whose touchpoint is the goal. A touchpoint
//! **reaches** a converter who did it before converting (at a step before that one), and a
//! non-converter who did it at all. Each customer counts once per touchpoint, however often they
//! did it.

use serde::Serialize;

use crate::funnel::customers_per_touchpoint;
use crate::journey::{JourneySet, Step};
use crate::metrics::ratio;
use crate::render::{optional_cell, to_csv};
use crate::symbols::Sym;

/// Thresholds for the labels. Build with [`InfluenceOptions::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct InfluenceOptions {
    /// The conversion touchpoint.
    pub goal: String,
    /// [`InfluenceLabel::MomentOfImpact`] from this converter reach up. Default 0.8.
    pub impact_reach: f64,
    /// [`InfluenceLabel::MomentOfInfluence`] up to this reach among all customers. Default 0.2.
    pub influence_reach: f64,
    /// [`InfluenceLabel::MomentOfInfluence`] from this lift up. Default 1.5.
    pub influence_lift: f64,
}

impl InfluenceOptions {
    /// Options with the default thresholds.
    pub fn new(goal: impl Into<String>) -> Self {
        Self {
            goal: goal.into(),
            impact_reach: 0.8,
            influence_reach: 0.2,
            influence_lift: 1.5,
        }
    }
}

/// What a touchpoint's numbers say to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluenceLabel {
    /// `converter_reach >= impact_reach`.
    MomentOfImpact,
    /// Not a moment of impact, `reach <= influence_reach` and `lift >= influence_lift` (so
    /// never without a lift).
    MomentOfInfluence,
    None,
}

impl InfluenceLabel {
    /// The advice sentence shown with the label.
    pub fn advice(self) -> Option<&'static str> {
        match self {
            InfluenceLabel::MomentOfImpact => {
                Some("Nearly all converters pass through it: make it frictionless.")
            }
            InfluenceLabel::MomentOfInfluence => {
                Some("Few see it, strong lift: find more ways to reach people there.")
            }
            InfluenceLabel::None => None,
        }
    }
}

/// One touchpoint's influence. Shares are `0` when their group (converters, non-converters) is
/// empty. Every share is one division of two integer counts; `lift` is one division of two
/// integer products, so both are the correctly rounded ratios.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfluenceRow {
    pub touchpoint: String,
    /// Customers it reached (converters plus non-converters); at least 1.
    pub customers: usize,
    /// Converters it reached before they converted.
    pub converters: usize,
    /// Non-converters it reached.
    pub non_converters: usize,
    /// `customers` over all customers.
    pub reach: f64,
    /// `converters` over all converters.
    pub converter_reach: f64,
    /// `non_converters` over all non-converters.
    pub non_converter_reach: f64,
    /// `converters` over `customers`.
    pub conversion_rate_with: f64,
    /// `conversion_rate_with` over the overall conversion rate, computed as
    /// `(converters * all customers) / (customers * all converters)`; `None` without converters.
    pub lift: Option<f64>,
    pub label: InfluenceLabel,
    /// [`InfluenceLabel::advice`] of `label`.
    pub advice: Option<&'static str>,
}

/// The influence report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfluenceReport {
    pub goal: String,
    pub customers: usize,
    pub converters: usize,
    /// `converters` over `customers`; 0 without customers.
    pub conversion_rate: f64,
    /// One row per touchpoint other than the goal that reached at least one customer, sorted by
    /// lift, highest first, then by touchpoint name (byte order). Lifts are compared exactly, as
    /// the fractions `converters / customers` (which order them like the lift, and are all 0
    /// when the lift is `None`), so equal lifts always tie and fall to the name.
    pub rows: Vec<InfluenceRow>,
}

impl InfluenceReport {
    /// One line per row, the fields in [`InfluenceRow`] order; an undefined lift and a missing
    /// advice are empty fields.
    pub fn to_csv(&self) -> String {
        let header = [
            "touchpoint",
            "customers",
            "converters",
            "non_converters",
            "reach",
            "converter_reach",
            "non_converter_reach",
            "conversion_rate_with",
            "lift",
            "label",
            "advice",
        ];
        let rows = self.rows.iter().map(|row| {
            vec![
                row.touchpoint.clone(),
                row.customers.to_string(),
                row.converters.to_string(),
                row.non_converters.to_string(),
                row.reach.to_string(),
                row.converter_reach.to_string(),
                row.non_converter_reach.to_string(),
                row.conversion_rate_with.to_string(),
                optional_cell(row.lift),
                label_name(row.label).to_owned(),
                row.advice.unwrap_or_default().to_owned(),
            ]
        });
        to_csv(&header, rows)
    }
}

fn label_name(label: InfluenceLabel) -> &'static str {
    match label {
        InfluenceLabel::MomentOfImpact => "moment_of_impact",
        InfluenceLabel::MomentOfInfluence => "moment_of_influence",
        InfluenceLabel::None => "none",
    }
}

/// The influence of every touchpoint on `opts.goal` in `set`. A goal no journey contains gives
/// no converters, so every lift is `None` and no row is a moment of influence.
pub fn influence(set: &JourneySet, opts: &InfluenceOptions) -> InfluenceReport {
    let goal = set.symbols.get(&opts.goal);
    let mut before_conversion: Vec<&[Step]> = Vec::new();
    let mut unconverted: Vec<&[Step]> = Vec::new();
    for journey in &set.journeys {
        match journey.conversion_index(goal) {
            Some(at) => before_conversion.push(&journey.steps[..at]),
            None => unconverted.push(&journey.steps),
        }
    }
    let customers = set.journeys.len();
    let converters = before_conversion.len();
    let non_converters = unconverted.len();
    let converters_with = customers_per_touchpoint(before_conversion);
    let non_converters_with = customers_per_touchpoint(unconverted);
    let mut touchpoints: Vec<Sym> = converters_with
        .keys()
        .chain(non_converters_with.keys())
        .copied()
        .collect();
    touchpoints.sort_unstable();
    touchpoints.dedup();
    let mut rows: Vec<InfluenceRow> = touchpoints
        .into_iter()
        .map(|touchpoint| {
            let converters_with = converters_with.get(&touchpoint).copied().unwrap_or(0);
            let non_converters_with = non_converters_with.get(&touchpoint).copied().unwrap_or(0);
            let customers_with = converters_with + non_converters_with;
            let lift = (converters > 0).then(|| {
                (converters_with as u128 * customers as u128) as f64
                    / (customers_with as u128 * converters as u128) as f64
            });
            let reach = ratio(customers_with, customers);
            let converter_reach = ratio(converters_with, converters);
            let label = if converter_reach >= opts.impact_reach {
                InfluenceLabel::MomentOfImpact
            } else if reach <= opts.influence_reach
                && lift.is_some_and(|lift| lift >= opts.influence_lift)
            {
                InfluenceLabel::MomentOfInfluence
            } else {
                InfluenceLabel::None
            };
            InfluenceRow {
                touchpoint: set.symbols.name(touchpoint).to_owned(),
                customers: customers_with,
                converters: converters_with,
                non_converters: non_converters_with,
                reach,
                converter_reach,
                non_converter_reach: ratio(non_converters_with, non_converters),
                conversion_rate_with: ratio(converters_with, customers_with),
                lift,
                label,
                advice: label.advice(),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        // a.converters / a.customers against b's, without rounding: cross-multiplied.
        let a_rate = a.converters as u128 * b.customers as u128;
        let b_rate = b.converters as u128 * a.customers as u128;
        b_rate
            .cmp(&a_rate)
            .then_with(|| a.touchpoint.cmp(&b.touchpoint))
    });
    InfluenceReport {
        goal: opts.goal.clone(),
        customers,
        converters,
        conversion_rate: ratio(converters, customers),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten customers, five converters (overall rate 1/2), worked out by hand:
    ///
    /// ```text
    /// C1  ad, site, purchase
    /// C2  site, purchase
    /// C3  site, webinar, purchase
    /// C4  email, site, purchase, webinar      (its webinar comes after converting)
    /// C5  site, email
    /// C6  site
    /// C7  email
    /// C8  ad
    /// C9  site, site                          (counted once)
    /// C10 purchase                            (converts without touches)
    /// ```
    ///
    /// | touchpoint | conv. | non-conv. | reach | conv. reach | non-conv. reach | rate | lift          | label     |
    /// |------------|-------|-----------|-------|-------------|-----------------|------|---------------|-----------|
    /// | webinar    | 1     | 0         | 1/10  | 1/5         | 0               | 1    | 10/5 = 2      | influence |
    /// | site       | 4     | 3         | 7/10  | 4/5         | 3/5             | 4/7  | 40/35 = 8/7   | impact    |
    /// | ad         | 1     | 1         | 2/10  | 1/5         | 1/5             | 1/2  | 10/10 = 1     | none      |
    /// | email      | 1     | 2         | 3/10  | 1/5         | 2/5             | 1/3  | 10/15 = 2/3   | none      |
    ///
    /// ad has reach 0.2 <= 0.2 but lift 1 < 1.5; site's converter reach 0.8 >= 0.8 exactly.
    fn worked_example() -> JourneySet {
        let journey = |touchpoints: &[&'static str]| {
            touchpoints
                .iter()
                .enumerate()
                .map(|(at, &touchpoint)| (touchpoint, "web", at as i64))
                .collect::<Vec<_>>()
        };
        JourneySet::from_sequences([
            journey(&["ad", "site", "purchase"]),
            journey(&["site", "purchase"]),
            journey(&["site", "webinar", "purchase"]),
            journey(&["email", "site", "purchase", "webinar"]),
            journey(&["site", "email"]),
            journey(&["site"]),
            journey(&["email"]),
            journey(&["ad"]),
            journey(&["site", "site"]),
            journey(&["purchase"]),
        ])
    }

    #[test]
    fn influence_matches_the_hand_computed_example() {
        let report = influence(&worked_example(), &InfluenceOptions::new("purchase"));
        assert_eq!(
            (report.customers, report.converters, report.conversion_rate),
            (10, 5, 0.5)
        );
        let row = |touchpoint: &str, customers, converters, non_converters, lift, label| {
            let share = |count: usize, of: usize| count as f64 / of as f64;
            InfluenceRow {
                touchpoint: touchpoint.to_owned(),
                customers,
                converters,
                non_converters,
                reach: share(customers, 10),
                converter_reach: share(converters, 5),
                non_converter_reach: share(non_converters, 5),
                conversion_rate_with: share(converters, customers),
                lift: Some(lift),
                label,
                advice: label.advice(),
            }
        };
        assert_eq!(
            report.rows,
            vec![
                row("webinar", 1, 1, 0, 2.0, InfluenceLabel::MomentOfInfluence),
                row("site", 7, 4, 3, 8.0 / 7.0, InfluenceLabel::MomentOfImpact),
                row("ad", 2, 1, 1, 1.0, InfluenceLabel::None),
                row("email", 3, 1, 2, 2.0 / 3.0, InfluenceLabel::None),
            ]
        );
        assert_eq!(report.rows[1].converter_reach, 0.8);
    }

    #[test]
    fn thresholds_move_the_labels() {
        let opts = InfluenceOptions {
            impact_reach: 0.9,
            influence_reach: 0.7,
            influence_lift: 1.1,
            ..InfluenceOptions::new("purchase")
        };
        let report = influence(&worked_example(), &opts);
        let labels: Vec<(&str, InfluenceLabel)> = report
            .rows
            .iter()
            .map(|row| (row.touchpoint.as_str(), row.label))
            .collect();
        assert_eq!(
            labels,
            [
                ("webinar", InfluenceLabel::MomentOfInfluence),
                ("site", InfluenceLabel::MomentOfInfluence),
                ("ad", InfluenceLabel::None),
                ("email", InfluenceLabel::None),
            ]
        );

        // Thresholds are inclusive: webinar's lift is exactly 2.
        let exact_lift = InfluenceOptions {
            influence_lift: 2.0,
            ..InfluenceOptions::new("purchase")
        };
        let report = influence(&worked_example(), &exact_lift);
        assert_eq!(report.rows[0].touchpoint, "webinar");
        assert_eq!(report.rows[0].label, InfluenceLabel::MomentOfInfluence);
    }

    #[test]
    fn without_converters_lifts_are_undefined_and_rows_go_by_name() {
        let report = influence(&worked_example(), &InfluenceOptions::new("signup"));
        assert_eq!((report.converters, report.conversion_rate), (0, 0.0));
        let names: Vec<&str> = report
            .rows
            .iter()
            .map(|row| row.touchpoint.as_str())
            .collect();
        assert_eq!(names, ["ad", "email", "purchase", "site", "webinar"]);
        assert!(report.rows.iter().all(|row| row.lift.is_none()
            && row.converter_reach == 0.0
            && row.label == InfluenceLabel::None));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][0]["lift"], serde_json::Value::Null);

        let empty = influence(&JourneySet::default(), &InfluenceOptions::new("purchase"));
        assert_eq!((empty.customers, empty.conversion_rate), (0, 0.0));
        assert!(empty.rows.is_empty());
    }

    #[test]
    fn equal_lifts_tie_exactly_and_fall_to_the_name() {
        // b: 2 of 4 convert, a: 1 of 2; both lift 1 over an overall rate of 3/6.
        let set = JourneySet::from_sequences([
            vec![("b", "web", 0), ("purchase", "web", 1)],
            vec![("b", "web", 0), ("a", "web", 1), ("purchase", "web", 2)],
            vec![("b", "web", 0)],
            vec![("b", "web", 0)],
            vec![("a", "web", 0)],
            vec![("purchase", "web", 0)],
        ]);
        let report = influence(&set, &InfluenceOptions::new("purchase"));
        let names: Vec<&str> = report
            .rows
            .iter()
            .map(|row| row.touchpoint.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(report.rows[0].lift, report.rows[1].lift);
    }

    #[test]
    fn csv_and_json_carry_label_and_advice() {
        let report = influence(&worked_example(), &InfluenceOptions::new("purchase"));
        let csv = report.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "touchpoint,customers,converters,non_converters,reach,converter_reach,\
             non_converter_reach,conversion_rate_with,lift,label,advice"
        );
        assert_eq!(
            lines[1],
            "webinar,1,1,0,0.1,0.2,0,1,2,moment_of_influence,\
             \"Few see it, strong lift: find more ways to reach people there.\""
        );
        assert_eq!(lines[3], "ad,2,1,1,0.2,0.2,0.2,0.5,1,none,");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][1]["label"], "moment_of_impact");
        assert_eq!(
            json["rows"][1]["advice"],
            "Nearly all converters pass through it: make it frictionless."
        );
    }
}
