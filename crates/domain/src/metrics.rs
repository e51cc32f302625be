//! Scribble metrics: how far real journeys stray from the straight funnel. The headline numbers
//! are the shares of linear journeys against those that go back to an earlier stage or skip one,
//! then channel switching, time and touchpoints to the first conversion, and the loops customers
//! circle in (groups of touchpoints that lead into each other).

use std::collections::HashMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use serde::Serialize;

use crate::journey::{Journey, JourneySet};
use crate::stages::StageMap;
use crate::symbols::Sym;

/// One day in milliseconds, for durations reported in days.
pub const DAY_MS: f64 = 86_400_000.0;

/// The scribble metrics of one set of journeys. Shares are in `0..=1` and means are per customer;
/// both are 0 when there are no customers. The conversion figures are `None` without converters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScribbleMetrics {
    pub customers: usize,
    /// Journeys whose staged touchpoints never go to an earlier stage nor skip one (staying in a
    /// stage is fine; journeys with fewer than two staged touchpoints are linear).
    pub linear_journeys: usize,
    pub linear_share: f64,
    /// Journeys that go back to an earlier stage at least once.
    pub back_journeys: usize,
    pub back_share: f64,
    /// Journeys that jump more than one stage ahead at least once and never go back.
    pub skip_journeys: usize,
    pub skip_share: f64,
    /// Moves to an earlier stage, per customer.
    pub mean_back_steps: f64,
    /// Consecutive touchpoints on different channels, per customer.
    pub mean_channel_switches: f64,
    /// The goal touchpoint the conversion figures are about.
    pub goal: String,
    /// Customers who reached the goal at least once.
    pub conversions: usize,
    /// Touchpoints before the first goal touchpoint, not counting it.
    pub touchpoints_to_conversion_mean: Option<f64>,
    pub touchpoints_to_conversion_median: Option<f64>,
    /// Days from the first touchpoint to the first goal touchpoint.
    pub days_to_conversion_mean: Option<f64>,
    pub days_to_conversion_median: Option<f64>,
    /// Groups of touchpoints that all lead into each other, busiest first.
    pub loops: Vec<Loop>,
}

/// A strongly connected group of at least two touchpoints in the transition graph (consecutive
/// touchpoints of any journey, repeats of the same touchpoint ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loop {
    /// Sorted by name.
    pub touchpoints: Vec<String>,
    /// Customers circling in the group: they moved between two of its touchpoints at least once
    /// and came back, from elsewhere, to one of its touchpoints they had visited before.
    pub customers: usize,
}

/// How one journey moves through the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Linear,
    Back,
    Skip,
}

/// Computes the scribble metrics of `set` against `stages`, with `goal` as the conversion
/// touchpoint. A goal no journey contains gives zero conversions.
pub fn scribble_metrics(set: &JourneySet, stages: &StageMap, goal: &str) -> ScribbleMetrics {
    let stage_by_symbol: Vec<Option<usize>> = (0..set.symbols.len())
        .map(|symbol| stages.stage_of(set.symbols.name(symbol as Sym)))
        .collect();
    let goal_symbol = set.symbols.get(goal);
    let (mut linear, mut back, mut skip) = (0, 0, 0);
    let mut back_steps = 0usize;
    let mut channel_switches = 0usize;
    let mut touchpoints_to_conversion = Vec::new();
    let mut days_to_conversion = Vec::new();
    for journey in &set.journeys {
        let (shape, backs) = stage_shape(journey, &stage_by_symbol);
        match shape {
            Shape::Linear => linear += 1,
            Shape::Back => back += 1,
            Shape::Skip => skip += 1,
        }
        back_steps += backs;
        channel_switches += journey
            .steps
            .windows(2)
            .filter(|pair| pair[0].channel != pair[1].channel)
            .count();
        let conversion = journey.conversion_index(goal_symbol);
        if let Some(index) = conversion {
            touchpoints_to_conversion.push(index as f64);
            days_to_conversion
                .push((journey.steps[index].at_ms - journey.steps[0].at_ms) as f64 / DAY_MS);
        }
    }
    let customers = set.journeys.len();
    let per_customer = |count: usize| ratio(count, customers);
    ScribbleMetrics {
        customers,
        linear_journeys: linear,
        linear_share: per_customer(linear),
        back_journeys: back,
        back_share: per_customer(back),
        skip_journeys: skip,
        skip_share: per_customer(skip),
        mean_back_steps: per_customer(back_steps),
        mean_channel_switches: per_customer(channel_switches),
        goal: goal.to_owned(),
        conversions: touchpoints_to_conversion.len(),
        touchpoints_to_conversion_mean: mean(&touchpoints_to_conversion),
        touchpoints_to_conversion_median: median(&mut touchpoints_to_conversion),
        days_to_conversion_mean: mean(&days_to_conversion),
        days_to_conversion_median: median(&mut days_to_conversion),
        loops: loops(set),
    }
}

/// The shape of a journey over its staged touchpoints, and how many times it went back a stage.
fn stage_shape(journey: &Journey, stage_by_symbol: &[Option<usize>]) -> (Shape, usize) {
    let mut staged = journey
        .steps
        .iter()
        .filter_map(|step| stage_by_symbol[step.touchpoint as usize]);
    let Some(mut previous) = staged.next() else {
        return (Shape::Linear, 0);
    };
    let (mut backs, mut skipped) = (0, false);
    for stage in staged {
        if stage < previous {
            backs += 1;
        } else if stage > previous + 1 {
            skipped = true;
        }
        previous = stage;
    }
    let shape = match (backs, skipped) {
        (0, false) => Shape::Linear,
        (0, true) => Shape::Skip,
        _ => Shape::Back,
    };
    (shape, backs)
}

/// Share of customers a transition needs before it can close a loop. Over a whole project
/// nearly every touchpoint reaches every other through some rare path, which would make one loop
/// of everything; loops of well-trodden transitions are the ones worth acting on.
pub const LOOP_MIN_CUSTOMER_SHARE: f64 = 0.10;

/// Strongly connected groups of touchpoints, over transitions made by at least
/// [`LOOP_MIN_CUSTOMER_SHARE`] of customers, and the customers circling in each.
fn loops(set: &JourneySet) -> Vec<Loop> {
    let mut customers_per_transition: HashMap<(Sym, Sym), usize> = HashMap::new();
    let mut journey_transitions: Vec<(Sym, Sym)> = Vec::new();
    for journey in &set.journeys {
        journey_transitions.clear();
        journey_transitions.extend(
            journey
                .steps
                .windows(2)
                .map(|pair| (pair[0].touchpoint, pair[1].touchpoint))
                .filter(|(from, to)| from != to),
        );
        journey_transitions.sort_unstable();
        journey_transitions.dedup();
        for transition in &journey_transitions {
            *customers_per_transition.entry(*transition).or_default() += 1;
        }
    }
    let min_customers =
        ((set.journeys.len() as f64 * LOOP_MIN_CUSTOMER_SHARE).ceil() as usize).max(1);
    let transitions: Vec<(Sym, Sym)> = customers_per_transition
        .into_iter()
        .filter(|&(_, customers)| customers >= min_customers)
        .map(|(transition, _)| transition)
        .collect();
    let graph = DiGraph::<(), ()>::from_edges(transitions);
    let groups: Vec<Vec<Sym>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|component| component.len() >= 2)
        .map(|component| {
            component
                .into_iter()
                .map(|node| node.index() as Sym)
                .collect()
        })
        .collect();
    let mut group_of = vec![None; set.symbols.len()];
    for (group, touchpoints) in groups.iter().enumerate() {
        for &touchpoint in touchpoints {
            group_of[touchpoint as usize] = Some(group);
        }
    }

    // Stamps hold the index of the journey that last set them, so nothing is cleared per journey.
    let mut visited = vec![usize::MAX; set.symbols.len()];
    let mut moved_inside = vec![usize::MAX; groups.len()];
    let mut came_back = vec![usize::MAX; groups.len()];
    let mut customers = vec![0usize; groups.len()];
    let mut touched: Vec<usize> = Vec::new();
    for (index, journey) in set.journeys.iter().enumerate() {
        touched.clear();
        let mut previous: Option<Sym> = None;
        for step in &journey.steps {
            let touchpoint = step.touchpoint;
            if let Some(group) = group_of[touchpoint as usize] {
                if !touched.contains(&group) {
                    touched.push(group);
                }
                if previous != Some(touchpoint) && visited[touchpoint as usize] == index {
                    came_back[group] = index;
                }
                let from_inside = previous.is_some_and(|from| {
                    from != touchpoint && group_of[from as usize] == Some(group)
                });
                if from_inside {
                    moved_inside[group] = index;
                }
            }
            visited[touchpoint as usize] = index;
            previous = Some(touchpoint);
        }
        for &group in &touched {
            if moved_inside[group] == index && came_back[group] == index {
                customers[group] += 1;
            }
        }
    }

    let mut loops: Vec<Loop> = groups
        .iter()
        .zip(customers)
        .map(|(touchpoints, customers)| {
            let mut names: Vec<String> = touchpoints
                .iter()
                .map(|&touchpoint| set.symbols.name(touchpoint).to_owned())
                .collect();
            names.sort();
            Loop {
                touchpoints: names,
                customers,
            }
        })
        .collect();
    loops.sort_by(|a, b| {
        b.customers
            .cmp(&a.customers)
            .then_with(|| a.touchpoints.cmp(&b.touchpoints))
    });
    loops
}

/// The mean of `values`, or `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The median of `values` (the mean of the two middle ones for an even count), or `None` when
/// empty. Reorders `values`.
pub fn median(values: &mut [f64]) -> Option<f64> {
    let count = values.len();
    if count == 0 {
        return None;
    }
    let (lower, &mut upper_middle, _) = values.select_nth_unstable_by(count / 2, f64::total_cmp);
    if count % 2 == 1 {
        return Some(upper_middle);
    }
    let lower_middle = lower.iter().copied().max_by(f64::total_cmp)?;
    Some((lower_middle + upper_middle) / 2.0)
}

/// The `fraction` quantile of `values` (`0.9` for p90), or `None` when empty: with the values
/// sorted, the value at rank `h = fraction * (count - 1)`, interpolated linearly between the two
/// values around `h` when it falls between ranks (ClickHouse's `quantileExactInclusive`;
/// `percentile(values, 0.5)` equals [`median`]). `fraction` is clamped to `0..=1`. Sorts `values`.
pub fn percentile(values: &mut [f64], fraction: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = fraction.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (below, above) = (values[rank.floor() as usize], values[rank.ceil() as usize]);
    Some(below + (above - below) * rank.fract())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn at(days: f64) -> i64 {
        (days * DAY as f64) as i64
    }

    /// Seven customers, worked out by hand in `metrics_match_the_hand_computed_scribble`.
    fn journeys() -> JourneySet {
        JourneySet::from_sequences([
            // A: linear, 3 channel switches, converts after 4 touchpoints in 2 days; circles site/email.
            vec![
                ("ad_click", "ads", at(0.0)),
                ("site_visit", "web", at(0.1)),
                ("email_open", "email", at(1.0)),
                ("site_visit", "web", at(1.5)),
                ("purchase", "web", at(2.0)),
            ],
            // B: skips consideration, converts after 1 touchpoint in half a day.
            vec![("ad_click", "ads", at(0.0)), ("purchase", "web", at(0.5))],
            // C: goes back from retention to consideration once; 4 switches; converts after 1
            // touchpoint in a day; circles support ticket and chat.
            vec![
                ("site_visit", "web", at(0.0)),
                ("purchase", "web", at(1.0)),
                ("support_ticket", "support", at(2.0)),
                ("chat_support", "chat", at(3.0)),
                ("support_ticket", "support", at(4.0)),
                ("newsletter_open", "email", at(10.0)),
            ],
            // D: linear once the unstaged scroll is ignored; 2 switches; circles site/email.
            vec![
                ("page_scroll", "web", at(0.0)),
                ("site_visit", "web", at(1.0)),
                ("email_open", "email", at(2.0)),
                ("site_visit", "web", at(3.0)),
            ],
            // E: skips from awareness to retention; 1 switch.
            vec![
                ("review_read", "review", at(0.0)),
                ("mystery", "web", at(1.0)),
                ("login", "web", at(2.0)),
            ],
            // F: goes back from consideration to awareness; 2 switches.
            vec![
                ("email_open", "email", at(0.0)),
                ("ad_impression", "ads", at(1.0)),
                ("email_click", "email", at(2.0)),
            ],
            // G: linear; moves inside the site/email loop but never comes back; 1 switch.
            vec![
                ("site_visit", "web", at(0.0)),
                ("email_open", "email", at(1.0)),
            ],
        ])
    }

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() < 1e-9
    }

    #[test]
    fn metrics_match_the_hand_computed_scribble() {
        let metrics = scribble_metrics(&journeys(), &StageMap::default(), "purchase");
        assert_eq!(metrics.customers, 7);
        assert_eq!(
            (
                metrics.linear_journeys,
                metrics.back_journeys,
                metrics.skip_journeys
            ),
            (3, 2, 2)
        );
        assert!(close(metrics.linear_share, 3.0 / 7.0));
        assert!(close(metrics.back_share, 2.0 / 7.0));
        assert!(close(metrics.skip_share, 2.0 / 7.0));
        assert!(close(metrics.mean_back_steps, 2.0 / 7.0));
        assert!(
            close(metrics.mean_channel_switches, 2.0),
            "{}",
            metrics.mean_channel_switches
        );
        assert_eq!(metrics.goal, "purchase");
        assert_eq!(metrics.conversions, 3);
        assert_eq!(metrics.touchpoints_to_conversion_mean, Some(2.0));
        assert_eq!(metrics.touchpoints_to_conversion_median, Some(1.0));
        assert!(close(metrics.days_to_conversion_mean.unwrap(), 3.5 / 3.0));
        assert_eq!(metrics.days_to_conversion_median, Some(1.0));
        let loops: Vec<(Vec<&str>, usize)> = metrics
            .loops
            .iter()
            .map(|found| {
                (
                    found.touchpoints.iter().map(String::as_str).collect(),
                    found.customers,
                )
            })
            .collect();
        assert_eq!(
            loops,
            vec![
                (vec!["email_open", "site_visit"], 2),
                (vec!["chat_support", "support_ticket"], 1),
            ]
        );
    }

    #[test]
    fn without_customers_or_converters_the_numbers_stay_defined() {
        let empty = scribble_metrics(&JourneySet::default(), &StageMap::default(), "purchase");
        assert_eq!(empty.customers, 0);
        assert_eq!(empty.linear_share, 0.0);
        assert_eq!(empty.mean_channel_switches, 0.0);
        assert_eq!(empty.conversions, 0);
        assert!(empty.loops.is_empty());

        let metrics = scribble_metrics(&journeys(), &StageMap::default(), "webinar");
        assert_eq!(metrics.conversions, 0);
        assert_eq!(metrics.touchpoints_to_conversion_median, None);
        assert_eq!(metrics.days_to_conversion_mean, None);
        let json = serde_json::to_value(&metrics).unwrap();
        assert_eq!(json["days_to_conversion_median"], serde_json::Value::Null);
    }

    #[test]
    fn rare_transitions_do_not_close_loops() {
        // 20 customers circle site_visit <-> email_open; one customer alone goes on to
        // review_read and back to site_visit. At 10% a transition needs 3 of 21 customers, so the
        // lone detour is left out and review_read stays outside the loop.
        let mut sequences: Vec<Vec<(&str, &str, i64)>> = (0..20)
            .map(|_| {
                vec![
                    ("site_visit", "web", 0),
                    ("email_open", "email", 1),
                    ("site_visit", "web", 2),
                ]
            })
            .collect();
        sequences.push(vec![
            ("site_visit", "web", 0),
            ("review_read", "review", 1),
            ("site_visit", "web", 2),
        ]);
        let metrics = scribble_metrics(
            &JourneySet::from_sequences(sequences),
            &StageMap::default(),
            "purchase",
        );
        assert_eq!(metrics.loops.len(), 1);
        assert_eq!(
            metrics.loops[0].touchpoints,
            vec!["email_open", "site_visit"]
        );
        assert_eq!(metrics.loops[0].customers, 20);
    }

    #[test]
    fn repeats_are_neither_loops_nor_returns() {
        let set = JourneySet::from_sequences([
            vec![
                ("site_visit", "web", 0),
                ("site_visit", "web", 1),
                ("email_open", "email", 2),
            ],
            vec![
                ("email_open", "email", 0),
                ("site_visit", "web", 1),
                ("site_visit", "web", 2),
            ],
        ]);
        let metrics = scribble_metrics(&set, &StageMap::default(), "purchase");
        assert_eq!(metrics.loops.len(), 1);
        assert_eq!(
            metrics.loops[0].customers, 0,
            "nobody came back after leaving"
        );
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0, 10.0, 2.0]), Some(3.0));
    }

    #[test]
    fn percentile_interpolates_between_ranks() {
        assert_eq!(percentile(&mut [], 0.9), None);
        assert_eq!(percentile(&mut [7.0], 0.9), Some(7.0));
        // Ranks 0..=10 over 10..=0: p90 sits exactly on rank 9, the value 9.
        let mut eleven: Vec<f64> = (0..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut eleven, 0.9), Some(9.0));
        // Four values: rank 0.9 * 3 = 2.7, so 30 + 0.7 * (40 - 30) = 37.
        let p90 = percentile(&mut [40.0, 10.0, 30.0, 20.0], 0.9).unwrap();
        assert!((p90 - 37.0).abs() < 1e-9, "{p90}");
        assert_eq!(percentile(&mut [4.0, 1.0, 10.0, 2.0], 0.5), Some(3.0));
        assert_eq!(percentile(&mut [4.0, 1.0, 10.0], 0.0), Some(1.0));
        assert_eq!(percentile(&mut [4.0, 1.0, 10.0], 1.0), Some(10.0));
    }
}
