//! The sales cycle: how long, in days and in touchpoints, customers take from their first touch
//! to their conversion, as the distribution a marketer plans campaigns by ("most buy within a
//! week, after two or three touchpoints"). These docs are the reference semantics a ClickHouse
//! implementation must match.

use serde::Serialize;

use crate::journey::JourneySet;
use crate::metrics::{mean, median, percentile, ratio, DAY_MS};
use crate::render::{optional_cell, to_csv};

/// Day buckets: a customer goes in the first bucket whose bound is above their days.
const DAY_BUCKETS: [(&str, f64); 5] = [
    ("same day", 1.0),
    ("within a week", 7.0),
    ("within 30 days", 30.0),
    ("1-6 months", 182.0),
    ("over 6 months", f64::INFINITY),
];

/// Touchpoint buckets, the same way.
const TOUCHPOINT_BUCKETS: [(&str, f64); 6] = [
    ("0", 1.0),
    ("1", 2.0),
    ("2-3", 4.0),
    ("4-7", 8.0),
    ("8-15", 16.0),
    ("16+", f64::INFINITY),
];

/// The sales cycle of one goal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SalesCycle {
    pub goal: String,
    /// All customers in the journey set.
    pub customers: usize,
    /// Customers with at least one goal step; the distributions are over them.
    pub converters: usize,
    /// Days (fractional) from the customer's first step to their first goal step. Buckets:
    /// `same day` (under 1), `within a week` (under 7), `within 30 days` (under 30),
    /// `1-6 months` (under 182), `over 6 months`.
    pub days: CycleDistribution,
    /// Steps before the first goal step, the goal step not counted (as the scribble metrics
    /// count them). Buckets: `0`, `1`, `2-3`, `4-7`, `8-15`, `16+`.
    pub touchpoints: CycleDistribution,
}

/// One measure over the converters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CycleDistribution {
    /// Every bucket, in order, also when empty.
    pub buckets: Vec<CycleBucket>,
    /// `None` without converters; the median and p90 as [`percentile`] defines them.
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub mean: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CycleBucket {
    pub label: String,
    pub customers: usize,
    /// Of the converters; 0 without converters.
    pub share: f64,
}

/// The sales cycle of `set` towards `goal`. A customer converts at their first step on the
/// `goal` touchpoint; a goal no journey contains gives no converters.
pub fn sales_cycle(set: &JourneySet, goal: &str) -> SalesCycle {
    let goal_symbol = set.symbols.get(goal);
    let mut days = Vec::new();
    let mut touchpoints = Vec::new();
    for journey in &set.journeys {
        let conversion = journey.conversion_index(goal_symbol);
        if let Some(index) = conversion {
            let elapsed_ms = journey.steps[index].at_ms - journey.steps[0].at_ms;
            days.push(elapsed_ms as f64 / DAY_MS);
            touchpoints.push(index as f64);
        }
    }
    SalesCycle {
        goal: goal.to_owned(),
        customers: set.journeys.len(),
        converters: days.len(),
        days: distribution(&mut days, &DAY_BUCKETS),
        touchpoints: distribution(&mut touchpoints, &TOUCHPOINT_BUCKETS),
    }
}

/// Buckets and statistics of `values`, each value in the first bucket whose bound is above it.
fn distribution(values: &mut [f64], buckets: &[(&str, f64)]) -> CycleDistribution {
    let mut counts = vec![0usize; buckets.len()];
    for &value in values.iter() {
        let bucket = buckets
            .iter()
            .position(|&(_, bound)| value < bound)
            .unwrap_or(buckets.len() - 1);
        counts[bucket] += 1;
    }
    CycleDistribution {
        buckets: buckets
            .iter()
            .zip(counts)
            .map(|(&(label, _), customers)| CycleBucket {
                label: label.to_owned(),
                customers,
                share: ratio(customers, values.len()),
            })
            .collect(),
        median: median(values),
        p90: percentile(values, 0.9),
        // Summed after `percentile` sorted them, so the mean does not depend on journey order.
        mean: mean(values),
    }
}

impl SalesCycle {
    /// One table: per measure (`days`, `touchpoints`), a row per bucket with its customers and
    /// share, then rows `median`, `p90` and `mean` with their `value` (empty without converters).
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (measure, distribution) in [("days", &self.days), ("touchpoints", &self.touchpoints)] {
            for bucket in &distribution.buckets {
                rows.push(vec![
                    measure.to_owned(),
                    bucket.label.clone(),
                    bucket.customers.to_string(),
                    bucket.share.to_string(),
                    String::new(),
                ]);
            }
            let statistics = [
                ("median", distribution.median),
                ("p90", distribution.p90),
                ("mean", distribution.mean),
            ];
            for (name, value) in statistics {
                rows.push(vec![
                    measure.to_owned(),
                    name.to_owned(),
                    String::new(),
                    String::new(),
                    optional_cell(value),
                ]);
            }
        }
        to_csv(&["measure", "bucket", "customers", "share", "value"], rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// `filler` site visits from time 0, then a purchase at `purchase_ms`.
    fn converter(filler: usize, purchase_ms: i64) -> Vec<(&'static str, &'static str, i64)> {
        let mut steps: Vec<_> = (0..filler)
            .map(|index| ("site_visit", "web", index as i64))
            .collect();
        steps.push(("purchase", "web", purchase_ms));
        steps
    }

    /// Ten converters, each on or next to a bucket edge, and one customer who never buys.
    fn journeys() -> JourneySet {
        let mut twice = converter(1, 2 * DAY);
        twice.extend([
            ("site_visit", "web", 3 * DAY),
            ("purchase", "web", 50 * DAY),
        ]);
        JourneySet::from_sequences([
            converter(0, 0),         // 0 days, 0 touchpoints
            converter(1, DAY - 1),   // just under a day, 1
            converter(2, DAY),       // exactly a day: within a week; 2
            converter(3, 7 * DAY),   // exactly 7 days: within 30 days; 3
            converter(4, 30 * DAY),  // exactly 30: 1-6 months; 4
            converter(7, 182 * DAY), // exactly 182: over 6 months; 7
            converter(8, 10 * DAY),  // within 30 days; 8
            converter(15, 3 * DAY),  // within a week; 15
            converter(16, 2 * DAY),  // within a week; 16
            twice,                   // the first purchase counts: 2 days, 1
            vec![("site_visit", "web", 0), ("email_open", "email", DAY)],
        ])
    }

    fn buckets(distribution: &CycleDistribution) -> Vec<(&str, usize)> {
        distribution
            .buckets
            .iter()
            .map(|bucket| (bucket.label.as_str(), bucket.customers))
            .collect()
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|actual| (actual - expected).abs() < 1e-6)
    }

    #[test]
    fn cycles_fall_in_the_buckets_by_their_edges() {
        let cycle = sales_cycle(&journeys(), "purchase");
        assert_eq!((cycle.customers, cycle.converters), (11, 10));
        assert_eq!(
            buckets(&cycle.days),
            [
                ("same day", 2),
                ("within a week", 4),
                ("within 30 days", 2),
                ("1-6 months", 1),
                ("over 6 months", 1),
            ]
        );
        assert_eq!(cycle.days.buckets[1].share, 0.4);
        assert_eq!(
            buckets(&cycle.touchpoints),
            [
                ("0", 1),
                ("1", 2),
                ("2-3", 2),
                ("4-7", 2),
                ("8-15", 2),
                ("16+", 1)
            ]
        );
        // Touchpoints sorted: 0 1 1 2 3 4 7 8 15 16. Median (3 + 4) / 2; mean 57 / 10;
        // p90 at rank 8.1: 15 + 0.1 * (16 - 15).
        assert_eq!(cycle.touchpoints.median, Some(3.5));
        assert!(close(cycle.touchpoints.mean, 5.7));
        assert!(close(cycle.touchpoints.p90, 15.1));
        // Days sorted: 0, ~1, 1, 2, 2, 3, 7, 10, 30, 182. Median (2 + 3) / 2; mean ~238 / 10;
        // p90 30 + 0.1 * (182 - 30).
        assert_eq!(cycle.days.median, Some(2.5));
        assert!(close(cycle.days.mean, 23.8));
        assert!(close(cycle.days.p90, 45.2));
    }

    #[test]
    fn csv_lists_every_bucket_then_the_statistics() {
        let set = JourneySet::from_sequences([converter(2, 3 * DAY), converter(0, 0)]);
        let csv = sales_cycle(&set, "purchase").to_csv();
        // Days 3 and 0; touchpoints 2 and 0.
        assert_eq!(
            csv,
            "measure,bucket,customers,share,value\r\n\
             days,same day,1,0.5,\r\n\
             days,within a week,1,0.5,\r\n\
             days,within 30 days,0,0,\r\n\
             days,1-6 months,0,0,\r\n\
             days,over 6 months,0,0,\r\n\
             days,median,,,1.5\r\n\
             days,p90,,,2.7\r\n\
             days,mean,,,1.5\r\n\
             touchpoints,0,1,0.5,\r\n\
             touchpoints,1,0,0,\r\n\
             touchpoints,2-3,1,0.5,\r\n\
             touchpoints,4-7,0,0,\r\n\
             touchpoints,8-15,0,0,\r\n\
             touchpoints,16+,0,0,\r\n\
             touchpoints,median,,,1\r\n\
             touchpoints,p90,,,1.8\r\n\
             touchpoints,mean,,,1\r\n"
        );
    }

    #[test]
    fn without_converters_buckets_stay_and_statistics_are_empty() {
        let cycle = sales_cycle(&journeys(), "webinar");
        assert_eq!(cycle.converters, 0);
        assert_eq!(cycle.days.buckets.len(), 5);
        assert!(cycle
            .touchpoints
            .buckets
            .iter()
            .all(|bucket| bucket.customers == 0 && bucket.share == 0.0));
        assert_eq!(
            (cycle.days.median, cycle.days.p90, cycle.days.mean),
            (None, None, None)
        );
        let json = serde_json::to_value(&cycle).unwrap();
        assert_eq!(json["touchpoints"]["median"], serde_json::Value::Null);
    }
}
