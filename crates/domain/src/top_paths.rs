//! Top paths: the most common whole touchpoint sequences, and how often each one converts.
//!
//! These docs are the reference semantics: any other implementation of the report (the
//! ClickHouse one included) must give the same rows in the same order.
//!
//! Each customer has exactly one path, cut from their journey by [`TopPathsOptions`] in this
//! order (the first two steps commute):
//! 1. with `up_to_goal` and a goal the journey contains, the journey ends at its first goal
//!    step, which stays in;
//! 2. with `collapse_repeats`, consecutive steps with the same touchpoint become one;
//! 3. a path longer than `max_steps` keeps its first `max_steps` steps and is marked truncated.
//!
//! A path is its touchpoint sequence together with the truncated mark: `a > b` cut from a longer
//! journey and `a > b` that ended there are two different paths.

use hashbrown::HashTable;

use serde::Serialize;

use crate::journey::{Journey, JourneySet};
use crate::paths::OTHER;
use crate::render::{optional_cell, to_csv};
use crate::symbols::Sym;

/// Which paths to count and how many to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopPathsOptions {
    /// Conversion touchpoint. A customer converts when their journey contains it anywhere, even
    /// past the part their path keeps. `None`: no conversion figures.
    pub goal: Option<String>,
    /// Cut each journey at its first goal step, inclusive. No effect without a goal, nor on
    /// journeys without it.
    pub up_to_goal: bool,
    /// Merge consecutive steps with the same touchpoint into one.
    pub collapse_repeats: bool,
    /// Longest path, in steps; longer paths are cut and marked truncated. 0 cuts every path to
    /// nothing, so all customers share the one empty, truncated path. Default 10.
    pub max_steps: usize,
    /// Paths shown; the rest are summed in [`TopPathsReport::other`]. Default 20.
    pub limit: usize,
}

impl Default for TopPathsOptions {
    fn default() -> Self {
        Self {
            goal: None,
            up_to_goal: false,
            collapse_repeats: false,
            max_steps: 10,
            limit: 20,
        }
    }
}

/// One distinct path and the customers who took it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopPath {
    /// Touchpoint names, in journey order.
    pub steps: Vec<String>,
    /// The journey went on past `max_steps`.
    pub truncated: bool,
    pub customers: usize,
    /// Customers on the path who converted; `None` without a goal.
    pub conversions: Option<usize>,
    /// `conversions / customers`; `None` without a goal.
    pub conversion_rate: Option<f64>,
}

/// The distinct paths beyond the limit, summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherPaths {
    /// How many distinct paths.
    pub paths: usize,
    pub customers: usize,
    /// `None` without a goal.
    pub conversions: Option<usize>,
    /// `conversions / customers`; `None` without a goal or without customers.
    pub conversion_rate: Option<f64>,
}

/// The top paths report. `customers` equals the customers of `paths` plus `other.customers`;
/// the same holds for conversions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopPathsReport {
    pub goal: Option<String>,
    pub customers: usize,
    /// Converters among all customers; `None` without a goal.
    pub conversions: Option<usize>,
    /// The first `limit` distinct paths, by customers (most first), then by steps compared
    /// name by name in byte order (a path before its own extensions), then untruncated before
    /// truncated.
    pub paths: Vec<TopPath>,
    pub other: OtherPaths,
}

impl TopPathsReport {
    /// One line per shown path: `path` (steps joined by ` > `, which no touchpoint name can
    /// contain), `steps` (their count), `truncated`, `customers`, `conversions` and
    /// `conversion_rate` (empty without a goal). When paths were left out, a last `(other)` row
    /// sums them, with empty `steps` and `truncated`.
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .paths
            .iter()
            .map(|path| {
                vec![
                    path.steps.join(" > "),
                    path.steps.len().to_string(),
                    path.truncated.to_string(),
                    path.customers.to_string(),
                    optional_cell(path.conversions),
                    optional_cell(path.conversion_rate),
                ]
            })
            .collect();
        if self.other.paths > 0 {
            rows.push(vec![
                OTHER.to_owned(),
                String::new(),
                String::new(),
                self.other.customers.to_string(),
                optional_cell(self.other.conversions),
                optional_cell(self.other.conversion_rate),
            ]);
        }
        to_csv(
            &[
                "path",
                "steps",
                "truncated",
                "customers",
                "conversions",
                "conversion_rate",
            ],
            rows,
        )
    }
}

/// Customers and conversions of one path.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    customers: usize,
    conversions: usize,
}

/// One distinct path: its steps (a range of the paths' arena), its truncated mark, its tally.
#[derive(Debug, Clone, Copy)]
struct Counted {
    start: usize,
    len: usize,
    truncated: bool,
    tally: Tally,
}

impl Counted {
    fn steps<'a>(&self, arena: &'a [Sym]) -> &'a [Sym] {
        &arena[self.start..self.start + self.len]
    }
}

/// A hash of a path: its symbols folded in one multiply each, then mixed, so that every bit
/// of the hash depends on every step. A general byte hasher spent longer on a million short
/// paths than the rest of the count.
fn path_hash(truncated: bool, steps: &[Sym]) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    let folded = steps.iter().fold(u64::from(truncated), |hash, &step| {
        (hash.rotate_left(5) ^ u64::from(step)).wrapping_mul(MULTIPLIER)
    });
    let mixed = u128::from(folded) * u128::from(MULTIPLIER);
    (mixed as u64) ^ ((mixed >> 64) as u64)
}

/// Distinct paths with their tallies. Each distinct path's steps are copied once into one
/// arena, and the table holds ranges of it: a million one-of-a-kind journeys cost no
/// allocation each.
#[derive(Default)]
struct PathCounts {
    arena: Vec<Sym>,
    counted: HashTable<Counted>,
}

impl PathCounts {
    /// Adds `tally` to the path `steps` with its `truncated` mark.
    fn add(&mut self, truncated: bool, steps: &[Sym], tally: Tally) {
        let arena = &mut self.arena;
        let hash = path_hash(truncated, steps);
        let same = |entry: &Counted| entry.truncated == truncated && entry.steps(arena) == steps;
        let counted = match self.counted.find_mut(hash, same) {
            Some(entry) => &mut entry.tally,
            None => {
                let entry = Counted {
                    start: arena.len(),
                    len: steps.len(),
                    truncated,
                    tally: Tally::default(),
                };
                arena.extend_from_slice(steps);
                let rehash = |entry: &Counted| path_hash(entry.truncated, entry.steps(arena));
                &mut self
                    .counted
                    .insert_unique(hash, entry, rehash)
                    .into_mut()
                    .tally
            }
        };
        counted.customers += tally.customers;
        counted.conversions += tally.conversions;
    }

    /// These counts and `other`'s together.
    fn join(mut self, other: PathCounts) -> PathCounts {
        let arena = &self.arena;
        self.counted.reserve(other.counted.len(), |entry| {
            path_hash(entry.truncated, entry.steps(arena))
        });
        self.arena.reserve(other.arena.len());
        for entry in &other.counted {
            self.add(entry.truncated, entry.steps(&other.arena), entry.tally);
        }
        self
    }
}

/// Counts every customer's path in `set` and keeps the most common `opts.limit`.
pub fn top_paths(set: &JourneySet, opts: &TopPathsOptions) -> TopPathsReport {
    let goal = opts.goal.as_deref().and_then(|name| set.symbols.get(name));
    let count = |journeys: &[Journey]| {
        let mut counts = PathCounts::default();
        let mut path: Vec<Sym> = Vec::new();
        for journey in journeys {
            let conversion = journey.conversion_index(goal);
            let end = match conversion {
                Some(at) if opts.up_to_goal => at + 1,
                _ => journey.steps.len(),
            };
            path.clear();
            for step in &journey.steps[..end] {
                if opts.collapse_repeats && path.last() == Some(&step.touchpoint) {
                    continue;
                }
                path.push(step.touchpoint);
            }
            let truncated = path.len() > opts.max_steps;
            path.truncate(opts.max_steps);
            let tally = Tally {
                customers: 1,
                conversions: usize::from(conversion.is_some()),
            };
            counts.add(truncated, &path, tally);
        }
        counts
    };
    let PathCounts { arena, counted } = set.count_in_halves(count, PathCounts::join);

    let with_goal = opts.goal.is_some();
    let rate = |conversions: usize, customers: usize| {
        (with_goal && customers > 0).then(|| conversions as f64 / customers as f64)
    };
    let counted: Vec<Counted> = counted.into_iter().collect();
    let conversions: usize = counted.iter().map(|path| path.tally.conversions).sum();
    // The report's order, comparing steps by name without spelling every path out: only the
    // shown paths get names, and only they are sorted (most journeys are one of a kind).
    let report_order = |a: &Counted, b: &Counted| {
        b.tally
            .customers
            .cmp(&a.tally.customers)
            .then_with(|| {
                let names = |path: &Counted| {
                    path.steps(&arena)
                        .iter()
                        .map(|&step| set.symbols.name(step))
                };
                names(a).cmp(names(b))
            })
            .then_with(|| a.truncated.cmp(&b.truncated))
    };
    let shown = opts.limit.min(counted.len());
    // Only paths with at least as many customers as the last shown one can be shown: find that
    // count on plain numbers first, so names are compared among those few alone.
    let least_shown = match shown.checked_sub(1) {
        Some(last) if shown < counted.len() => {
            let mut customers: Vec<usize> =
                counted.iter().map(|path| path.tally.customers).collect();
            *customers.select_nth_unstable_by(last, |a, b| b.cmp(a)).1
        }
        Some(_) => 0,
        None => usize::MAX,
    };
    let mut candidates: Vec<Counted> = counted
        .iter()
        .filter(|path| path.tally.customers >= least_shown)
        .copied()
        .collect();
    candidates.sort_unstable_by(report_order);
    candidates.truncate(shown);
    let paths: Vec<TopPath> = candidates
        .iter()
        .map(|path| TopPath {
            steps: path
                .steps(&arena)
                .iter()
                .map(|&touchpoint| set.symbols.name(touchpoint).to_owned())
                .collect(),
            truncated: path.truncated,
            customers: path.tally.customers,
            conversions: with_goal.then_some(path.tally.conversions),
            conversion_rate: rate(path.tally.conversions, path.tally.customers),
        })
        .collect();
    // The other paths are all but the shown ones; every customer has one path.
    let shown_customers: usize = paths.iter().map(|path| path.customers).sum();
    let shown_conversions: usize = candidates.iter().map(|path| path.tally.conversions).sum();
    let other_customers = set.journeys.len() - shown_customers;
    let other_conversions = conversions - shown_conversions;
    TopPathsReport {
        goal: opts.goal.clone(),
        customers: set.journeys.len(),
        conversions: with_goal.then_some(conversions),
        paths,
        other: OtherPaths {
            paths: counted.len() - shown,
            customers: other_customers,
            conversions: with_goal.then_some(other_conversions),
            conversion_rate: rate(other_conversions, other_customers),
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn journeys(sequences: &[&[&'static str]]) -> JourneySet {
        JourneySet::from_sequences(sequences.iter().map(|touchpoints| {
            touchpoints
                .iter()
                .enumerate()
                .map(|(at, &touchpoint)| (touchpoint, "web", at as i64))
                .collect::<Vec<_>>()
        }))
    }

    /// J1-J3 reach the same `ad > site > purchase` once cut at the goal and collapsed; J6 is cut
    /// by `max_steps` to the same steps J7 ends with.
    fn worked_example() -> JourneySet {
        journeys(&[
            &["ad", "site", "site", "purchase", "email"],
            &["ad", "site", "purchase"],
            &["ad", "site", "purchase", "support", "purchase"],
            &["site", "email"],
            &["site", "email"],
            &["email", "site", "site", "site", "ad", "webinar"],
            &["email", "site", "ad"],
            &["purchase"],
        ])
    }

    /// A row as `(steps, truncated, customers, conversions)`.
    type Row = (Vec<&'static str>, bool, usize, Option<usize>);

    fn rows(report: &TopPathsReport) -> Vec<(Vec<&str>, bool, usize, Option<usize>)> {
        report
            .paths
            .iter()
            .map(|path| {
                (
                    path.steps.iter().map(String::as_str).collect(),
                    path.truncated,
                    path.customers,
                    path.conversions,
                )
            })
            .collect()
    }

    /// Paths up to a purchase, repeats collapsed, at most 3 steps, the top 3 shown.
    fn cut_at_purchase() -> TopPathsOptions {
        TopPathsOptions {
            goal: Some("purchase".into()),
            up_to_goal: true,
            collapse_repeats: true,
            max_steps: 3,
            limit: 3,
        }
    }

    #[test]
    fn paths_are_cut_collapsed_truncated_and_ranked() {
        let opts = cut_at_purchase();
        let report = top_paths(&worked_example(), &opts);
        let expected: Vec<Row> = vec![
            (vec!["ad", "site", "purchase"], false, 3, Some(3)),
            (vec!["site", "email"], false, 2, Some(0)),
            // Ties on one customer: "email..." before "purchase", untruncated first.
            (vec!["email", "site", "ad"], false, 1, Some(0)),
        ];
        assert_eq!(rows(&report), expected);
        assert_eq!(report.paths[0].conversion_rate, Some(1.0));
        assert_eq!((report.customers, report.conversions), (8, Some(4)));
        assert_eq!(
            report.other,
            OtherPaths {
                paths: 2,
                customers: 2,
                conversions: Some(1),
                conversion_rate: Some(0.5),
            }
        );

        let all = top_paths(
            &worked_example(),
            &TopPathsOptions {
                limit: 20,
                ..opts.clone()
            },
        );
        let expected: Vec<Row> = vec![
            (vec!["ad", "site", "purchase"], false, 3, Some(3)),
            (vec!["site", "email"], false, 2, Some(0)),
            (vec!["email", "site", "ad"], false, 1, Some(0)),
            (vec!["email", "site", "ad"], true, 1, Some(0)),
            (vec!["purchase"], false, 1, Some(1)),
        ];
        assert_eq!(rows(&all), expected);
        assert_eq!(all.other.paths, 0);
        assert_eq!(
            (all.other.conversions, all.other.conversion_rate),
            (Some(0), None),
            "no customers left over, so no rate"
        );
    }

    #[test]
    fn a_set_counted_on_two_threads_adds_up_as_on_one() {
        let opts = cut_at_purchase();
        let copies = 20_000;
        let report = top_paths(&worked_example().repeated(copies), &opts);
        let expected: Vec<Row> = vec![
            (
                vec!["ad", "site", "purchase"],
                false,
                3 * copies,
                Some(3 * copies),
            ),
            (vec!["site", "email"], false, 2 * copies, Some(0)),
            (vec!["email", "site", "ad"], false, copies, Some(0)),
        ];
        assert_eq!(rows(&report), expected);
        assert_eq!(
            (report.customers, report.conversions),
            (8 * copies, Some(4 * copies))
        );
        assert_eq!(
            (report.other.paths, report.other.customers),
            (2, 2 * copies)
        );
    }

    #[test]
    fn without_cutting_or_collapsing_every_journey_keeps_its_own_path() {
        let opts = TopPathsOptions {
            goal: Some("purchase".into()),
            ..TopPathsOptions::default()
        };
        let report = top_paths(&worked_example(), &opts);
        let expected: Vec<Row> = vec![
            (vec!["site", "email"], false, 2, Some(0)),
            (vec!["ad", "site", "purchase"], false, 1, Some(1)),
            (
                vec!["ad", "site", "purchase", "support", "purchase"],
                false,
                1,
                Some(1),
            ),
            (
                vec!["ad", "site", "site", "purchase", "email"],
                false,
                1,
                Some(1),
            ),
            (vec!["email", "site", "ad"], false, 1, Some(0)),
            (
                vec!["email", "site", "site", "site", "ad", "webinar"],
                false,
                1,
                Some(0),
            ),
            (vec!["purchase"], false, 1, Some(1)),
        ];
        assert_eq!(rows(&report), expected);
    }

    #[test]
    fn conversions_count_the_whole_journey_not_just_the_path() {
        let opts = TopPathsOptions {
            goal: Some("purchase".into()),
            max_steps: 2,
            ..TopPathsOptions::default()
        };
        let report = top_paths(&worked_example(), &opts);
        assert_eq!(
            rows(&report)[0],
            (vec!["ad", "site"], true, 3, Some(3)),
            "cut before the purchase, still converted"
        );
    }

    #[test]
    fn without_a_goal_there_are_no_conversion_figures() {
        let opts = TopPathsOptions {
            up_to_goal: true,
            limit: 1,
            ..TopPathsOptions::default()
        };
        let report = top_paths(&worked_example(), &opts);
        assert_eq!(rows(&report), [(vec!["site", "email"], false, 2, None)]);
        assert_eq!(report.conversions, None);
        assert_eq!(report.paths[0].conversion_rate, None);
        assert_eq!((report.other.paths, report.other.customers), (6, 6));
        assert_eq!(
            (report.other.conversions, report.other.conversion_rate),
            (None, None)
        );

        let unknown_goal = TopPathsOptions {
            goal: Some("signup".into()),
            ..opts
        };
        let report = top_paths(&worked_example(), &unknown_goal);
        assert_eq!(report.conversions, Some(0));
        assert_eq!(report.paths[0].conversion_rate, Some(0.0));
    }

    #[test]
    fn zero_max_steps_gives_everyone_the_empty_truncated_path() {
        let opts = TopPathsOptions {
            max_steps: 0,
            ..TopPathsOptions::default()
        };
        let report = top_paths(&worked_example(), &opts);
        assert_eq!(rows(&report), [(vec![], true, 8, None)]);
    }

    #[test]
    fn csv_shows_paths_and_sums_the_rest() {
        let opts = TopPathsOptions {
            goal: Some("purchase".into()),
            up_to_goal: true,
            collapse_repeats: true,
            max_steps: 3,
            limit: 2,
        };
        let csv = top_paths(&worked_example(), &opts).to_csv();
        assert_eq!(
            csv,
            "path,steps,truncated,customers,conversions,conversion_rate\r\n\
             ad > site > purchase,3,false,3,3,1\r\n\
             site > email,2,false,2,0,0\r\n\
             (other),,,3,1,0.3333333333333333\r\n"
        );
    }

    const TOUCHPOINTS: [&str; 4] = ["ad", "site", "email", "purchase"];

    fn options() -> impl Strategy<Value = TopPathsOptions> {
        (
            prop::option::of(0..5usize),
            any::<bool>(),
            any::<bool>(),
            0..6usize,
            0..8usize,
        )
            .prop_map(|(goal, up_to_goal, collapse_repeats, max_steps, limit)| {
                TopPathsOptions {
                    // Index 4 names a goal no journey contains.
                    goal: goal.map(|index| TOUCHPOINTS.get(index).unwrap_or(&"signup").to_string()),
                    up_to_goal,
                    collapse_repeats,
                    max_steps,
                    limit,
                }
            })
    }

    proptest! {
        #[test]
        fn every_customer_is_counted_once(
            raw in prop::collection::vec(prop::collection::vec(0..4usize, 1..9), 0..30),
            opts in options(),
        ) {
            let sequences: Vec<Vec<&'static str>> = raw
                .iter()
                .map(|journey| journey.iter().map(|&index| TOUCHPOINTS[index]).collect())
                .collect();
            let slices: Vec<&[&'static str]> = sequences.iter().map(Vec::as_slice).collect();
            let set = journeys(&slices);
            let report = top_paths(&set, &opts);
            prop_assert_eq!(report.customers, raw.len());
            prop_assert!(report.paths.len() <= opts.limit);
            let shown: usize = report.paths.iter().map(|path| path.customers).sum();
            prop_assert_eq!(shown + report.other.customers, report.customers);
            let converted: Option<usize> = report.paths.iter().map(|path| path.conversions).sum();
            prop_assert_eq!(
                converted.zip(report.other.conversions).map(|(shown, other)| shown + other),
                report.conversions
            );
            for path in &report.paths {
                prop_assert!(path.steps.len() <= opts.max_steps);
                prop_assert!(!path.truncated || path.steps.len() == opts.max_steps);
                prop_assert!(path.conversions.is_none_or(|conversions| conversions <= path.customers));
                if opts.collapse_repeats {
                    prop_assert!(path.steps.windows(2).all(|pair| pair[0] != pair[1]));
                }
            }
            for pair in report.paths.windows(2) {
                let key = |path: &TopPath| (std::cmp::Reverse(path.customers), path.steps.clone(), path.truncated);
                prop_assert!(key(&pair[0]) < key(&pair[1]), "strictly ordered, so no path shows twice");
            }
            // The shown paths are the first of all paths in the report's order, ties included.
            let every = top_paths(&set, &TopPathsOptions { limit: usize::MAX, ..opts.clone() });
            prop_assert_eq!(&report.paths[..], &every.paths[..report.paths.len()]);
            prop_assert_eq!(report.other.paths, every.paths.len() - report.paths.len());
        }
    }
}
