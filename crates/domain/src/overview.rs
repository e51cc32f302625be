//! The overview a dashboard opens with: customers, events and conversions over time, in buckets
//! of an hour, a day or a week (UTC; weeks start on Monday). Every bucket between the first and
//! the last event is present, also when empty, so the series draws without gaps.

use std::collections::HashSet;

use serde::Serialize;

use crate::event::format_time;
use crate::journey::JourneySet;
use crate::render::to_csv;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 1970-01-01 was a Thursday: the first Monday is 4 days later.
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

/// Most buckets one overview may have; a wider span needs a coarser interval.
pub const MAX_BUCKETS: usize = 10_000;

/// The width of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    Week,
}

impl Interval {
    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            _ => None,
        }
    }

    fn width_ms(self) -> i64 {
        match self {
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS,
            Interval::Week => 7 * DAY_MS,
        }
    }

    /// The start of the bucket holding `at_ms`.
    fn floor(self, at_ms: i64) -> i64 {
        let origin = if self == Interval::Week {
            FIRST_MONDAY_MS
        } else {
            0
        };
        origin + (at_ms - origin).div_euclid(self.width_ms()) * self.width_ms()
    }
}

/// Customers, events and conversions per bucket, and their totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub interval: &'static str,
    pub goal: String,
    /// Customers in the set; the sum of `new_customers` over the buckets.
    pub customers: usize,
    /// Events (touchpoints) in the set; the sum of `events` over the buckets.
    pub events: usize,
    /// Customers who reached the goal; the sum of `conversions` over the buckets.
    pub conversions: usize,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, RFC 3339 UTC.
    pub start: String,
    /// Distinct customers with at least one touchpoint in the bucket.
    pub customers: usize,
    /// Customers whose first touchpoint is in the bucket.
    pub new_customers: usize,
    pub events: usize,
    /// Customers whose first `goal` touchpoint is in the bucket.
    pub conversions: usize,
}

/// Why an overview cannot be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverviewError {
    #[error("{buckets} buckets of one {interval} are over the limit of {MAX_BUCKETS}; use a coarser interval or narrow from and to")]
    TooManyBuckets {
        buckets: usize,
        interval: &'static str,
    },
}

/// The overview of `set` in buckets of `interval`, counting conversions to `goal` (a customer
/// converts at their first `goal` touchpoint; a goal no journey has gives none). An empty set
/// has no buckets.
pub fn overview(
    set: &JourneySet,
    goal: &str,
    interval: Interval,
) -> Result<Overview, OverviewError> {
    let goal_symbol = set.symbols.get(goal);
    let first = set
        .journeys
        .iter()
        .filter_map(|journey| journey.steps.first());
    let last = set
        .journeys
        .iter()
        .filter_map(|journey| journey.steps.last());
    let (Some(min_ms), Some(max_ms)) = (
        first.map(|step| step.at_ms).min(),
        last.map(|step| step.at_ms).max(),
    ) else {
        return Ok(Overview {
            interval: interval.name(),
            goal: goal.to_owned(),
            customers: 0,
            events: 0,
            conversions: 0,
            buckets: Vec::new(),
        });
    };
    let origin = interval.floor(min_ms);
    let count = ((interval.floor(max_ms) - origin) / interval.width_ms()) as usize + 1;
    if count > MAX_BUCKETS {
        return Err(OverviewError::TooManyBuckets {
            buckets: count,
            interval: interval.name(),
        });
    }
    let index = |at_ms: i64| ((interval.floor(at_ms) - origin) / interval.width_ms()) as usize;
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|offset| Bucket {
            start: format_time(origin + offset as i64 * interval.width_ms()),
            customers: 0,
            new_customers: 0,
            events: 0,
            conversions: 0,
        })
        .collect();
    let mut conversions = 0;
    for journey in &set.journeys {
        debug_assert!(!journey.steps.is_empty(), "journeys are never empty");
        buckets[index(journey.steps[0].at_ms)].new_customers += 1;
        let mut active = HashSet::new();
        for step in &journey.steps {
            let bucket = index(step.at_ms);
            buckets[bucket].events += 1;
            if active.insert(bucket) {
                buckets[bucket].customers += 1;
            }
        }
        if let Some(converted) = journey.conversion_index(goal_symbol) {
            buckets[index(journey.steps[converted].at_ms)].conversions += 1;
            conversions += 1;
        }
    }
    Ok(Overview {
        interval: interval.name(),
        goal: goal.to_owned(),
        customers: set.journeys.len(),
        events: set.event_count(),
        conversions,
        buckets,
    })
}

impl Overview {
    /// One row per bucket: `start, customers, new_customers, events, conversions`.
    pub fn to_csv(&self) -> String {
        to_csv(
            &[
                "start",
                "customers",
                "new_customers",
                "events",
                "conversions",
            ],
            self.buckets.iter().map(|bucket| {
                vec![
                    bucket.start.clone(),
                    bucket.customers.to_string(),
                    bucket.new_customers.to_string(),
                    bucket.events.to_string(),
                    bucket.conversions.to_string(),
                ]
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::parse_time;

    fn at(text: &str) -> i64 {
        parse_time(text).unwrap()
    }

    #[test]
    fn days_count_active_new_events_and_first_conversions() {
        let set = JourneySet::from_sequences([
            vec![
                ("site_visit", "web", at("2026-11-02T09:00:00Z")),
                ("site_visit", "web", at("2026-11-02T10:00:00Z")),
                ("purchase", "web", at("2026-11-04T10:00:00Z")),
                ("purchase", "web", at("2026-11-04T11:00:00Z")),
            ],
            vec![
                ("email_open", "email", at("2026-11-03T23:59:59Z")),
                ("site_visit", "web", at("2026-11-04T00:00:00Z")),
            ],
        ]);
        let overview = overview(&set, "purchase", Interval::Day).unwrap();
        assert_eq!(
            (overview.customers, overview.events, overview.conversions),
            (2, 6, 1)
        );
        let rows: Vec<_> = overview
            .buckets
            .iter()
            .map(|b| {
                (
                    b.start.as_str(),
                    b.customers,
                    b.new_customers,
                    b.events,
                    b.conversions,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("2026-11-02T00:00:00.000Z", 1, 1, 2, 0),
                ("2026-11-03T00:00:00.000Z", 1, 1, 1, 0),
                ("2026-11-04T00:00:00.000Z", 2, 0, 3, 1),
            ]
        );
        assert_eq!(
            overview.to_csv().lines().nth(3),
            Some("2026-11-04T00:00:00.000Z,2,0,3,1")
        );
    }

    #[test]
    fn weeks_start_on_monday_and_empty_buckets_are_kept() {
        // 2026-11-01 is a Sunday, 2026-11-16 a Monday.
        let set = JourneySet::from_sequences([vec![
            ("a", "web", at("2026-11-01T12:00:00Z")),
            ("b", "web", at("2026-11-16T00:00:00Z")),
        ]]);
        let overview = overview(&set, "purchase", Interval::Week).unwrap();
        let starts: Vec<_> = overview.buckets.iter().map(|b| b.start.as_str()).collect();
        assert_eq!(
            starts,
            vec![
                "2026-10-26T00:00:00.000Z",
                "2026-11-02T00:00:00.000Z",
                "2026-11-09T00:00:00.000Z",
                "2026-11-16T00:00:00.000Z",
            ]
        );
        assert_eq!(overview.buckets[1].events, 0);
        assert_eq!(overview.conversions, 0);
    }

    #[test]
    fn empty_sets_have_no_buckets_and_wide_spans_are_refused() {
        let empty = overview(&JourneySet::default(), "purchase", Interval::Hour).unwrap();
        assert!(empty.buckets.is_empty());
        assert_eq!(
            empty.to_csv(),
            "start,customers,new_customers,events,conversions\r\n"
        );
        let wide =
            JourneySet::from_sequences([vec![("a", "web", 0), ("b", "web", 2 * 365 * DAY_MS)]]);
        assert!(matches!(
            overview(&wide, "purchase", Interval::Hour),
            Err(OverviewError::TooManyBuckets {
                interval: "hour",
                ..
            })
        ));
        assert_eq!(
            overview(&wide, "purchase", Interval::Day)
                .unwrap()
                .buckets
                .len(),
            731
        );
    }

    #[test]
    fn intervals_parse_by_name() {
        for interval in [Interval::Hour, Interval::Day, Interval::Week] {
            assert_eq!(Interval::parse(interval.name()), Some(interval));
        }
        assert_eq!(Interval::parse("month"), None);
    }

    proptest! {
        #[test]
        fn buckets_add_up_to_the_totals(
            journeys in prop::collection::vec(
                prop::collection::vec((0usize..3, -5 * DAY_MS..30 * DAY_MS), 1..8),
                0..20,
            ),
            interval in prop_oneof![Just(Interval::Hour), Just(Interval::Day), Just(Interval::Week)],
        ) {
            let names = ["site_visit", "purchase", "email_open"];
            let set = JourneySet::from_sequences(journeys.iter().map(|steps| {
                steps.iter().map(|&(name, at_ms)| (names[name], "web", at_ms)).collect()
            }));
            let overview = overview(&set, "purchase", interval).unwrap();
            let sum = |field: fn(&Bucket) -> usize| overview.buckets.iter().map(field).sum::<usize>();
            prop_assert_eq!(sum(|b| b.new_customers), overview.customers);
            prop_assert_eq!(sum(|b| b.events), overview.events);
            prop_assert_eq!(sum(|b| b.conversions), overview.conversions);
            prop_assert!(overview.buckets.iter().all(|b| b.customers <= overview.customers));
            prop_assert!(sum(|b| b.customers) >= overview.customers);
        }
    }
}
