//! Parameters of the analyst reports (funnel, drop-off, top paths, influence, attribution, sales
//! cycle, leads) and what they all take besides the filters: `format=json|csv`, a breakdown
//! (`breakdown_by=trait.<name>|prop.<name>`) or a comparison (`compare=previous_period`,
//! `compare.from`, `compare.to`, `compare.prop.<key>`, `compare.trait.<key>`).
//!
//! Options are checked here, before any journey is read, by running the domain's own checks on
//! an empty journey set: a breakdown with no segment still refuses a bad funnel.

use scribble_domain::attribution::{AttributeBy, AttributionOptions};
use scribble_domain::funnel::{drop_off, FunnelOptions, FunnelOrder, FunnelStep, MAX_FUNNEL_STEPS};
use scribble_domain::influence::InfluenceOptions;
use scribble_domain::journey::JourneySet;
use scribble_domain::leads::{lead_follow_up, LeadOptions};
use scribble_domain::stitch::{Dimension, JourneyFilter};
use scribble_domain::top_paths::TopPathsOptions;

use super::{non_empty, time, Pairs};
use crate::error::ApiError;

/// Output format of an analyst report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Json,
    /// `text/csv`, the report's own CSV.
    Csv,
}

/// A breakdown: the parameter as given (`trait.persona`) and what it splits by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownBy {
    pub parameter: String,
    pub dimension: Dimension,
}

/// Whether a report is answered once, per segment, or for two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    Whole,
    Breakdown(BreakdownBy),
    /// Side b's filter; side a is the query's own.
    Compare(JourneyFilter),
}

/// A decoded analyst-report request: the report's own options and what every report takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery<O> {
    pub options: O,
    pub filter: JourneyFilter,
    pub format: TableFormat,
    pub split: Split,
}

/// Whether a report's options make it read step properties. A report that reads none can run
/// on journeys without them, which the ClickHouse store builds without reading raw events.
pub trait ReadsStepProperties {
    fn reads_step_properties(&self) -> bool;
}

impl ReadsStepProperties for FunnelOptions {
    fn reads_step_properties(&self) -> bool {
        self.steps.iter().any(|step| !step.properties.is_empty())
    }
}

impl ReadsStepProperties for DropOffOptions {
    fn reads_step_properties(&self) -> bool {
        self.funnel.reads_step_properties()
    }
}

impl ReadsStepProperties for AttributionOptions {
    fn reads_step_properties(&self) -> bool {
        self.value_property.is_some()
    }
}

/// Top paths, influence, the sales cycle (its goal) and leads look at touchpoints only.
macro_rules! reads_no_step_properties {
    ($($options:ty),*) => {$(
        impl ReadsStepProperties for $options {
            fn reads_step_properties(&self) -> bool {
                false
            }
        }
    )*};
}
reads_no_step_properties!(TopPathsOptions, InfluenceOptions, String, LeadOptions);

/// A funnel and how many steps to draw after each drop-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropOffOptions {
    pub funnel: FunnelOptions,
    pub next_steps: usize,
}

/// The longest duration a window, half-life or lead window may have.
const MAX_DAYS: u64 = 3650;
const DAY_MS: i64 = 86_400_000;

/// Decodes `/v1/funnel` parameters.
pub fn funnel_query(pairs: Vec<(String, String)>) -> Result<ReportQuery<FunnelOptions>, ApiError> {
    report_query(pairs, |pairs| {
        let options = funnel_options(pairs)?;
        scribble_domain::funnel::funnel(&JourneySet::default(), &options)?;
        Ok(options)
    })
}

/// Decodes `/v1/drop-off` parameters.
pub fn drop_off_query(
    pairs: Vec<(String, String)>,
) -> Result<ReportQuery<DropOffOptions>, ApiError> {
    report_query(pairs, |pairs| {
        let funnel = funnel_options(pairs)?;
        let next_steps = pairs.take_number("next_steps", 1..=10)?.unwrap_or(3);
        drop_off(&JourneySet::default(), &funnel, next_steps)?;
        Ok(DropOffOptions { funnel, next_steps })
    })
}

/// Decodes `/v1/top-paths` parameters.
pub fn top_paths_query(
    pairs: Vec<(String, String)>,
) -> Result<ReportQuery<TopPathsOptions>, ApiError> {
    report_query(pairs, |pairs| {
        let defaults = TopPathsOptions::default();
        let options = TopPathsOptions {
            goal: non_empty("goal", pairs.take("goal"))?,
            up_to_goal: pairs
                .take_flag("up_to_goal")?
                .unwrap_or(defaults.up_to_goal),
            collapse_repeats: pairs
                .take_flag("collapse")?
                .unwrap_or(defaults.collapse_repeats),
            max_steps: pairs
                .take_number("steps", 0..=50)?
                .unwrap_or(defaults.max_steps),
            limit: pairs
                .take_number("limit", 1..=1000)?
                .unwrap_or(defaults.limit),
        };
        if options.up_to_goal && options.goal.is_none() {
            return Err(ApiError::invalid(
                "up_to_goal",
                "cuts each path at the goal, so it needs goal=<touchpoint>",
            ));
        }
        Ok(options)
    })
}

/// Decodes `/v1/influence` parameters.
pub fn influence_query(
    pairs: Vec<(String, String)>,
) -> Result<ReportQuery<InfluenceOptions>, ApiError> {
    report_query(pairs, |pairs| {
        let defaults = InfluenceOptions::new(goal(pairs)?);
        let share = |value: f64| (0.0..=1.0).contains(&value);
        Ok(InfluenceOptions {
            impact_reach: pairs
                .take_float("impact_reach", share, "a share from 0 to 1")?
                .unwrap_or(defaults.impact_reach),
            influence_reach: pairs
                .take_float("influence_reach", share, "a share from 0 to 1")?
                .unwrap_or(defaults.influence_reach),
            influence_lift: pairs
                .take_float(
                    "influence_lift",
                    |lift| (0.0..=1000.0).contains(&lift),
                    "a lift from 0 to 1000 (1.5: converts 1.5 times as often)",
                )?
                .unwrap_or(defaults.influence_lift),
            ..defaults
        })
    })
}

/// Decodes `/v1/attribution` parameters.
pub fn attribution_query(
    pairs: Vec<(String, String)>,
) -> Result<ReportQuery<AttributionOptions>, ApiError> {
    report_query(pairs, |pairs| {
        let defaults = AttributionOptions::new(goal(pairs)?);
        let by = match pairs.take("by").as_deref() {
            None | Some("touchpoint") => AttributeBy::Touchpoint,
            Some("channel") => AttributeBy::Channel,
            Some(_) => return Err(ApiError::invalid("by", "must be touchpoint or channel")),
        };
        let options = AttributionOptions {
            by,
            half_life_days: pairs
                .take_float("half_life_days", positive_days, POSITIVE_DAYS)?
                .unwrap_or(defaults.half_life_days),
            position_weights: match pairs.take("position_weights") {
                Some(text) => position_weights(&text)?,
                None => defaults.position_weights,
            },
            value_property: non_empty("value_property", pairs.take("value_property"))?,
            ..defaults
        };
        options.validate()?;
        Ok(options)
    })
}

/// Decodes `/v1/sales-cycle` parameters: the goal.
pub fn sales_cycle_query(pairs: Vec<(String, String)>) -> Result<ReportQuery<String>, ApiError> {
    report_query(pairs, goal)
}

/// Decodes `/v1/leads` parameters; `as_of` defaults to `now_ms`.
pub fn leads_query(
    pairs: Vec<(String, String)>,
    now_ms: i64,
) -> Result<ReportQuery<LeadOptions>, ApiError> {
    report_query(pairs, |pairs| {
        let defaults = LeadOptions::new(now_ms);
        let lead_touchpoints = match pairs.take("leads") {
            Some(text) => names("leads", &text)?,
            None => defaults.lead_touchpoints.clone(),
        };
        let options = LeadOptions {
            lead_touchpoints,
            goal: goal(pairs)?,
            within_days: pairs
                .take_float("within_days", positive_days, POSITIVE_DAYS)?
                .unwrap_or(defaults.within_days),
            as_of_ms: match pairs.take("as_of") {
                Some(text) => time("as_of", &text)?,
                None => defaults.as_of_ms,
            },
        };
        lead_follow_up(&JourneySet::default(), &options)?;
        Ok(options)
    })
}

/// The report's options from `options`, then what every analyst report takes.
fn report_query<O>(
    pairs: Vec<(String, String)>,
    options: impl FnOnce(&mut Pairs) -> Result<O, ApiError>,
) -> Result<ReportQuery<O>, ApiError> {
    let mut pairs = Pairs(pairs);
    let options = options(&mut pairs)?;
    let format = pairs.take_table_format()?;
    let breakdown = breakdown_by(&mut pairs)?;
    let comparison = Comparison::take(&mut pairs)?;
    let filter = pairs.take_filter()?;
    pairs.finish()?;
    let split = match (breakdown, comparison) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "compare",
                "cannot be combined with breakdown_by; ask for a breakdown or a comparison",
            ))
        }
        (Some(breakdown), None) => Split::Breakdown(breakdown),
        (None, Some(comparison)) => Split::Compare(comparison.side_b(&filter)?),
        (None, None) => Split::Whole,
    };
    Ok(ReportQuery {
        options,
        filter,
        format,
        split,
    })
}

fn breakdown_by(pairs: &mut Pairs) -> Result<Option<BreakdownBy>, ApiError> {
    let Some(parameter) = pairs.take("breakdown_by") else {
        return Ok(None);
    };
    let (dimension, name): (fn(String) -> Dimension, &str) =
        if let Some(name) = parameter.strip_prefix("trait.") {
            (Dimension::Trait, name)
        } else if let Some(name) = parameter.strip_prefix("prop.") {
            (Dimension::Property, name)
        } else {
            return Err(ApiError::invalid(
                "breakdown_by",
                "must be trait.<trait> or prop.<property>, e.g. trait.persona",
            ));
        };
    if name.is_empty() {
        return Err(ApiError::invalid(
            "breakdown_by",
            "name the trait or property after the dot, e.g. trait.persona",
        ));
    }
    let dimension = dimension(name.to_owned());
    Ok(Some(BreakdownBy {
        parameter,
        dimension,
    }))
}

/// What the `compare` parameters change to make side b from side a.
#[derive(Debug, Default)]
struct Comparison {
    previous_period: bool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    properties: Vec<(String, String)>,
    traits: Vec<(String, String)>,
}

impl Comparison {
    /// Takes `compare` and every `compare.*` parameter; `None` when there are none.
    fn take(pairs: &mut Pairs) -> Result<Option<Self>, ApiError> {
        let mut comparison = Comparison::default();
        let mut asked = false;
        if let Some(kind) = pairs.take("compare") {
            if kind != "previous_period" {
                return Err(ApiError::invalid(
                    "compare",
                    "must be previous_period; to compare segments use compare.prop.<key>, \
                     compare.trait.<key>, compare.from or compare.to",
                ));
            }
            comparison.previous_period = true;
            asked = true;
        }
        if let Some(text) = pairs.take("compare.from") {
            comparison.from_ms = Some(time("compare.from", &text)?);
            asked = true;
        }
        if let Some(text) = pairs.take("compare.to") {
            comparison.to_ms = Some(time("compare.to", &text)?);
            asked = true;
        }
        (comparison.properties, comparison.traits) =
            pairs.take_prefixed("compare.prop.", "compare.trait.");
        asked |= !comparison.properties.is_empty() || !comparison.traits.is_empty();
        Ok(asked.then_some(comparison))
    }

    /// Side b: `a` with this comparison's time range, properties and traits in place of a's.
    fn side_b(self, a: &JourneyFilter) -> Result<JourneyFilter, ApiError> {
        let mut b = a.clone();
        if self.previous_period {
            let (Some(from), Some(to)) = (a.from_ms, a.to_ms) else {
                return Err(ApiError::invalid(
                    "compare",
                    "previous_period needs from and to: side b covers as long a time just \
                     before from",
                ));
            };
            for (name, given) in [("compare.from", self.from_ms), ("compare.to", self.to_ms)] {
                if given.is_some() {
                    return Err(ApiError::invalid(
                        name,
                        "compare=previous_period already sets side b's time range; leave one \
                         of them out",
                    ));
                }
            }
            b.from_ms = Some(from - (to - from));
            b.to_ms = Some(from);
        }
        b.from_ms = self.from_ms.or(b.from_ms);
        b.to_ms = self.to_ms.or(b.to_ms);
        if let (Some(from), Some(to)) = (b.from_ms, b.to_ms) {
            if from >= to {
                return Err(ApiError::invalid(
                    "compare.to",
                    "side b must end after it starts; check compare.from, compare.to, from and to",
                ));
            }
        }
        replace_pairs(&mut b.properties, self.properties);
        replace_pairs(&mut b.traits, self.traits);
        Ok(b)
    }
}

/// `filters` with every key of `replacements` replaced by the replacements' values.
fn replace_pairs(filters: &mut Vec<(String, String)>, replacements: Vec<(String, String)>) {
    filters.retain(|(key, _)| !replacements.iter().any(|(replaced, _)| replaced == key));
    filters.extend(replacements);
}

fn goal(pairs: &mut Pairs) -> Result<String, ApiError> {
    Ok(non_empty("goal", pairs.take("goal"))?.unwrap_or_else(|| "purchase".to_owned()))
}

const POSITIVE_DAYS: &str = "a number of days above 0 and at most 3650";

fn positive_days(days: f64) -> bool {
    days > 0.0 && days <= MAX_DAYS as f64
}

/// The funnel parameters shared by `/v1/funnel` and `/v1/drop-off`.
fn funnel_options(pairs: &mut Pairs) -> Result<FunnelOptions, ApiError> {
    let Some(text) = pairs.take("steps") else {
        return Err(ApiError::invalid(
            "steps",
            "required: the funnel's touchpoints in order, comma-separated, e.g. \
             site_visit,form_submit,purchase",
        ));
    };
    let steps = funnel_steps(&text)?;
    let order =
        match pairs.take("order").as_deref() {
            None | Some("ordered") => FunnelOrder::Ordered,
            Some("strict") => FunnelOrder::Strict,
            Some("any") => FunnelOrder::AnyOrder,
            Some(_) => return Err(ApiError::invalid(
                "order",
                "must be ordered (other touchpoints may come between steps), strict (none may) \
                 or any (steps in any order)",
            )),
        };
    let window_ms = pairs
        .take("window")
        .map(|text| duration_ms("window", &text))
        .transpose()?;
    let step_windows_ms = match pairs.take("step_windows") {
        Some(text) => step_windows(&text, steps.len())?,
        None => Vec::new(),
    };
    Ok(FunnelOptions {
        steps,
        order,
        window_ms,
        step_windows_ms,
    })
}

/// `site_visit,form_submit[form=demo;plan=pro],purchase`: commas between steps, properties in
/// brackets separated by semicolons.
fn funnel_steps(text: &str) -> Result<Vec<FunnelStep>, ApiError> {
    let mut steps = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                steps.push(funnel_step(&text[start..at], steps.len())?);
                start = at + 1;
            }
            _ => {}
        }
    }
    steps.push(funnel_step(&text[start..], steps.len())?);
    if steps.len() > MAX_FUNNEL_STEPS {
        return Err(ApiError::invalid(
            "steps",
            format!(
                "a funnel has at most {MAX_FUNNEL_STEPS} steps, not {}",
                steps.len()
            ),
        ));
    }
    Ok(steps)
}

/// One step: `touchpoint` or `touchpoint[key=value;key2=value2]`; `index` counts from 0.
fn funnel_step(text: &str, index: usize) -> Result<FunnelStep, ApiError> {
    let number = index + 1;
    let malformed = |what: &str| {
        ApiError::invalid(
            "steps",
            format!(
                "step {number} ({text:?}) {what}; write a step as touchpoint or \
                 touchpoint[key=value;key2=value2]"
            ),
        )
    };
    let text = text.trim();
    let (touchpoint, filters) = match text.split_once('[') {
        None => (text, None),
        Some((touchpoint, rest)) => match rest.strip_suffix(']') {
            Some(filters) => (touchpoint.trim(), Some(filters)),
            None => return Err(malformed("opens [ without closing it at the end")),
        },
    };
    if touchpoint.is_empty() {
        return Err(malformed("names no touchpoint"));
    }
    if touchpoint.contains([']', '[']) {
        return Err(malformed("has a bracket in its touchpoint"));
    }
    let mut step = FunnelStep::new(touchpoint);
    for filter in filters.into_iter().flat_map(|filters| filters.split(';')) {
        match filter.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                step = step.with_property(key.trim(), value.trim());
            }
            _ => return Err(malformed("has a property filter that is not key=value")),
        }
    }
    Ok(step)
}

/// `,7d,30d`: one entry per step, the first empty, an empty entry for no limit.
fn step_windows(text: &str, steps: usize) -> Result<Vec<Option<i64>>, ApiError> {
    let entries: Vec<&str> = text.split(',').map(str::trim).collect();
    if entries.len() != steps {
        return Err(ApiError::invalid(
            "step_windows",
            format!(
                "give one entry per step ({steps}), the first empty, e.g. ,7d,30d; got {}",
                entries.len()
            ),
        ));
    }
    if !entries[0].is_empty() {
        return Err(ApiError::invalid(
            "step_windows",
            "the first entry must be empty: the first step has no step before it",
        ));
    }
    entries
        .iter()
        .map(|entry| {
            (!entry.is_empty())
                .then(|| duration_ms("step_windows", entry))
                .transpose()
        })
        .collect()
}

/// `30d`, `12h`, `90m`, `45s`, or a bare number of days, as milliseconds.
fn duration_ms(name: &str, text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit_ms = match &text[digits.len()..] {
        "" | "d" => DAY_MS,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(amount)
            if unit_ms > 0 && amount.saturating_mul(unit_ms as u64) <= MAX_DAYS * DAY_MS as u64 =>
        {
            Ok(amount as i64 * unit_ms)
        }
        _ => Err(ApiError::invalid(
            name,
            format!(
                "must be a duration such as 30d, 12h, 90m or 45s (a bare number is days), at \
                 most {MAX_DAYS} days; got {text:?}"
            ),
        )),
    }
}

/// `0.4,0.2,0.4`: the first, middle and last shares.
fn position_weights(text: &str) -> Result<(f64, f64, f64), ApiError> {
    let weights: Vec<f64> = text
        .split(',')
        .map(|part| part.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    match weights[..] {
        [first, middle, last] => Ok((first, middle, last)),
        _ => Err(ApiError::invalid(
            "position_weights",
            "must be three numbers first,middle,last summing to 1, e.g. 0.4,0.2,0.4",
        )),
    }
}

/// A comma-separated list of touchpoint names, none empty.
fn names(name: &str, text: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = text.split(',').map(|part| part.trim().to_owned()).collect();
    if names.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            name,
            "must be touchpoint names separated by commas, none empty, e.g. form_submit,chat_started",
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use scribble_domain::event::parse_time;

    use super::*;
    use crate::params::tests::pairs;

    #[test]
    fn only_property_steps_and_conversion_values_read_step_properties() {
        let reads = |query: Result<ReportQuery<FunnelOptions>, ApiError>| {
            query.unwrap().options.reads_step_properties()
        };
        assert!(!reads(funnel_query(pairs(&[(
            "steps",
            "site_visit,purchase"
        )]))));
        assert!(reads(funnel_query(pairs(&[(
            "steps",
            "site_visit[page=pricing],purchase"
        )]))));
        let attribution = |extra: &[(&str, &str)]| {
            attribution_query(pairs(extra))
                .unwrap()
                .options
                .reads_step_properties()
        };
        assert!(!attribution(&[]));
        assert!(attribution(&[("value_property", "revenue")]));
        assert!(!top_paths_query(vec![])
            .unwrap()
            .options
            .reads_step_properties());
    }

    /// The name of the parameter an invalid request is refused for.
    fn refused<O: std::fmt::Debug>(result: Result<ReportQuery<O>, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidParameter { name, .. }) => name,
            other => panic!("not refused as an invalid parameter: {other:?}"),
        }
    }

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn funnel_steps_order_and_windows_decode() {
        let query = funnel_query(pairs(&[
            (
                "steps",
                "site_visit, form_submit[form=demo;plan = pro],purchase",
            ),
            ("order", "strict"),
            ("window", "30d"),
            ("step_windows", ",12h,"),
        ]))
        .unwrap();
        let options = query.options;
        assert_eq!(
            options.steps,
            vec![
                FunnelStep::new("site_visit"),
                FunnelStep::new("form_submit")
                    .with_property("form", "demo")
                    .with_property("plan", "pro"),
                FunnelStep::new("purchase"),
            ]
        );
        assert_eq!(options.order, FunnelOrder::Strict);
        assert_eq!(options.window_ms, Some(30 * DAY_MS));
        assert_eq!(
            options.step_windows_ms,
            vec![None, Some(12 * HOUR_MS), None]
        );
        assert_eq!(query.format, TableFormat::Json);
        assert_eq!(query.split, Split::Whole);

        let defaults = funnel_query(pairs(&[("steps", "a,b")])).unwrap().options;
        assert_eq!(defaults.order, FunnelOrder::Ordered);
        assert_eq!(defaults.window_ms, None);
        assert!(defaults.step_windows_ms.is_empty());
        let any = funnel_query(pairs(&[("steps", "a,b"), ("order", "any")])).unwrap();
        assert_eq!(any.options.order, FunnelOrder::AnyOrder);
    }

    #[test]
    fn durations_take_days_hours_minutes_seconds_or_bare_days() {
        for (text, ms) in [
            ("2", 2 * DAY_MS),
            ("2d", 2 * DAY_MS),
            ("12h", 12 * HOUR_MS),
            ("90m", 90 * 60_000),
            ("45s", 45_000),
            ("0", 0),
            ("3650d", 3650 * DAY_MS),
        ] {
            assert_eq!(duration_ms("window", text).unwrap(), ms, "{text}");
        }
        for text in [
            "",
            "d",
            "1.5d",
            "-1d",
            "2w",
            "3651d",
            "87601h",
            "30 days",
            "99999999999999999999s",
        ] {
            assert!(duration_ms("window", text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn bad_funnel_parameters_are_named() {
        let twenty_one = vec!["a"; 21].join(",");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "steps"),
            (vec![("steps", "")], "steps"),
            (vec![("steps", "a,,b")], "steps"),
            (vec![("steps", twenty_one.as_str())], "steps"),
            (vec![("steps", "a[form=demo")], "steps"),
            (vec![("steps", "a[form]")], "steps"),
            (vec![("steps", "[form=demo]")], "steps"),
            (vec![("steps", "a,b,a"), ("order", "any")], "steps"),
            (vec![("steps", "a,b"), ("order", "sideways")], "order"),
            (vec![("steps", "a,b"), ("window", "soon")], "window"),
            (
                vec![("steps", "a,b"), ("step_windows", "1d")],
                "step_windows",
            ),
            (
                vec![("steps", "a,b"), ("step_windows", "1d,2d")],
                "step_windows",
            ),
            (
                vec![("steps", "a,b"), ("step_windows", ",2x")],
                "step_windows",
            ),
            (
                vec![("steps", "a,b"), ("order", "any"), ("step_windows", ",2d")],
                "step_windows",
            ),
            (vec![("steps", "a,b"), ("next_steps", "3")], "next_steps"),
        ];
        for (input, name) in cases {
            assert_eq!(refused(funnel_query(pairs(&input))), name, "{input:?}");
        }
    }

    #[test]
    fn drop_off_takes_the_funnel_and_next_steps() {
        let query = drop_off_query(pairs(&[("steps", "a,b"), ("next_steps", "10")])).unwrap();
        assert_eq!(query.options.next_steps, 10);
        assert_eq!(query.options.funnel.steps.len(), 2);
        let default = drop_off_query(pairs(&[("steps", "a,b")])).unwrap();
        assert_eq!(default.options.next_steps, 3);
        for next in ["0", "11", "x"] {
            let input = pairs(&[("steps", "a,b"), ("next_steps", next)]);
            assert_eq!(refused(drop_off_query(input)), "next_steps", "{next}");
        }
        assert_eq!(refused(drop_off_query(pairs(&[]))), "steps");
    }

    #[test]
    fn top_paths_parameters_decode_with_defaults_and_ranges() {
        let query = top_paths_query(pairs(&[
            ("goal", "purchase"),
            ("up_to_goal", "true"),
            ("collapse", ""),
            ("steps", "0"),
            ("limit", "1000"),
        ]))
        .unwrap();
        assert_eq!(
            query.options,
            TopPathsOptions {
                goal: Some("purchase".into()),
                up_to_goal: true,
                collapse_repeats: true,
                max_steps: 0,
                limit: 1000,
            }
        );
        assert_eq!(
            top_paths_query(vec![]).unwrap().options,
            TopPathsOptions::default()
        );
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("steps", "51")], "steps"),
            (&[("limit", "0")], "limit"),
            (&[("limit", "1001")], "limit"),
            (&[("goal", " ")], "goal"),
            (&[("up_to_goal", "true")], "up_to_goal"),
            (&[("collapse", "maybe")], "collapse"),
        ];
        for (input, name) in cases {
            assert_eq!(refused(top_paths_query(pairs(input))), name, "{input:?}");
        }
    }

    #[test]
    fn influence_thresholds_decode_and_are_range_checked() {
        let query = influence_query(pairs(&[
            ("goal", "signup"),
            ("impact_reach", "0.9"),
            ("influence_reach", "0"),
            ("influence_lift", "2"),
        ]))
        .unwrap();
        let options = query.options;
        assert_eq!(options.goal, "signup");
        assert_eq!(
            (
                options.impact_reach,
                options.influence_reach,
                options.influence_lift
            ),
            (0.9, 0.0, 2.0)
        );
        assert_eq!(
            influence_query(vec![]).unwrap().options,
            InfluenceOptions::new("purchase")
        );
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("impact_reach", "1.1")], "impact_reach"),
            (&[("influence_reach", "-0.1")], "influence_reach"),
            (&[("influence_reach", "NaN")], "influence_reach"),
            (&[("influence_lift", "lots")], "influence_lift"),
            (&[("influence_lift", "inf")], "influence_lift"),
        ];
        for (input, name) in cases {
            assert_eq!(refused(influence_query(pairs(input))), name, "{input:?}");
        }
    }

    #[test]
    fn attribution_parameters_decode_and_bad_ones_are_named() {
        let query = attribution_query(pairs(&[
            ("goal", "signup"),
            ("by", "channel"),
            ("half_life_days", "3.5"),
            ("position_weights", "0.3, 0.4, 0.3"),
            ("value_property", "value"),
        ]))
        .unwrap();
        let options = query.options;
        assert_eq!(options.goal, "signup");
        assert_eq!(options.by, AttributeBy::Channel);
        assert_eq!(options.half_life_days, 3.5);
        assert_eq!(options.position_weights, (0.3, 0.4, 0.3));
        assert_eq!(options.value_property.as_deref(), Some("value"));
        assert_eq!(
            attribution_query(vec![]).unwrap().options,
            AttributionOptions::new("purchase")
        );
        let cases: [(&[(&str, &str)], &str); 8] = [
            (&[("by", "campaign")], "by"),
            (&[("half_life_days", "0")], "half_life_days"),
            (&[("half_life_days", "3651")], "half_life_days"),
            (&[("position_weights", "0.5,0.5")], "position_weights"),
            (&[("position_weights", "0.5,0.5,0.5")], "position_weights"),
            (&[("position_weights", "1.2,-0.2,0")], "position_weights"),
            (&[("position_weights", "a,b,c")], "position_weights"),
            (&[("value_property", "")], "value_property"),
        ];
        for (input, name) in cases {
            assert_eq!(refused(attribution_query(pairs(input))), name, "{input:?}");
        }
    }

    #[test]
    fn sales_cycle_takes_a_goal_only() {
        assert_eq!(sales_cycle_query(vec![]).unwrap().options, "purchase");
        let query = sales_cycle_query(pairs(&[("goal", "signup")])).unwrap();
        assert_eq!(query.options, "signup");
        assert_eq!(refused(sales_cycle_query(pairs(&[("goal", "")]))), "goal");
        assert_eq!(
            refused(sales_cycle_query(pairs(&[("steps", "3")]))),
            "steps"
        );
    }

    #[test]
    fn leads_parameters_decode_with_now_as_the_default_moment() {
        let now_ms = 1_800_000_000_000;
        let query = leads_query(
            pairs(&[
                ("leads", "form_submit, demo_request"),
                ("goal", "signup"),
                ("within_days", "14"),
                ("as_of", "2026-12-01"),
            ]),
            now_ms,
        )
        .unwrap();
        let options = query.options;
        assert_eq!(options.lead_touchpoints, ["form_submit", "demo_request"]);
        assert_eq!(options.goal, "signup");
        assert_eq!(options.within_days, 14.0);
        assert_eq!(Some(options.as_of_ms), parse_time("2026-12-01T00:00:00Z"));
        assert_eq!(
            leads_query(vec![], now_ms).unwrap().options,
            LeadOptions::new(now_ms)
        );
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[("leads", "")], "leads"),
            (&[("leads", "form_submit,,chat")], "leads"),
            (&[("goal", "form_submit")], "goal"),
            (&[("within_days", "0")], "within_days"),
            (&[("within_days", "-3")], "within_days"),
            (&[("as_of", "next week")], "as_of"),
        ];
        for (input, name) in cases {
            assert_eq!(
                refused(leads_query(pairs(input), now_ms)),
                name,
                "{input:?}"
            );
        }
    }

    #[test]
    fn format_is_json_or_csv() {
        let csv = sales_cycle_query(pairs(&[("format", "csv")])).unwrap();
        assert_eq!(csv.format, TableFormat::Csv);
        let json = sales_cycle_query(pairs(&[("format", "json")])).unwrap();
        assert_eq!(json.format, TableFormat::Json);
        assert_eq!(
            refused(sales_cycle_query(pairs(&[("format", "dot")]))),
            "format"
        );
    }

    #[test]
    fn breakdowns_split_by_a_named_trait_or_property() {
        let by_trait = sales_cycle_query(pairs(&[("breakdown_by", "trait.persona")])).unwrap();
        assert_eq!(
            by_trait.split,
            Split::Breakdown(BreakdownBy {
                parameter: "trait.persona".into(),
                dimension: Dimension::Trait("persona".into()),
            })
        );
        let by_property = sales_cycle_query(pairs(&[("breakdown_by", "prop.utm_source")])).unwrap();
        assert_eq!(
            by_property.split,
            Split::Breakdown(BreakdownBy {
                parameter: "prop.utm_source".into(),
                dimension: Dimension::Property("utm_source".into()),
            })
        );
        for bad in ["persona", "trait.", "prop.", "channel"] {
            let input = pairs(&[("breakdown_by", bad)]);
            assert_eq!(refused(sales_cycle_query(input)), "breakdown_by", "{bad}");
        }
        let both = pairs(&[
            ("breakdown_by", "trait.persona"),
            ("compare.trait.persona", "b"),
        ]);
        assert_eq!(refused(sales_cycle_query(both)), "compare");
    }

    fn side_b(input: &[(&str, &str)]) -> JourneyFilter {
        match sales_cycle_query(pairs(input)).unwrap().split {
            Split::Compare(b) => b,
            other => panic!("not a comparison: {other:?}"),
        }
    }

    #[test]
    fn previous_period_is_as_long_and_ends_where_a_starts() {
        let b = side_b(&[
            ("from", "2026-11-10"),
            ("to", "2026-11-17"),
            ("compare", "previous_period"),
            ("prop.campaign", "fall"),
        ]);
        assert_eq!(b.from_ms, parse_time("2026-11-03T00:00:00Z"));
        assert_eq!(b.to_ms, parse_time("2026-11-10T00:00:00Z"));
        assert_eq!(b.properties, vec![("campaign".into(), "fall".into())]);
        // With another segment too.
        let b = side_b(&[
            ("from", "2026-11-10T12:00:00Z"),
            ("to", "2026-11-10T18:00:00Z"),
            ("compare", "previous_period"),
            ("compare.trait.persona", "bargain"),
        ]);
        assert_eq!(b.from_ms, parse_time("2026-11-10T06:00:00Z"));
        assert_eq!(b.traits, vec![("persona".into(), "bargain".into())]);
    }

    #[test]
    fn compare_parameters_replace_or_add_to_side_as_filter() {
        let b = side_b(&[
            ("from", "2026-11-01"),
            ("prop.campaign", "fall"),
            ("prop.utm_medium", "email"),
            ("trait.persona", "researcher"),
            ("compare.prop.campaign", "spring"),
            ("compare.trait.country", "NL"),
            ("compare.to", "2026-12-01"),
        ]);
        assert_eq!(b.from_ms, parse_time("2026-11-01T00:00:00Z"));
        assert_eq!(b.to_ms, parse_time("2026-12-01T00:00:00Z"));
        assert_eq!(
            b.properties,
            vec![
                ("utm_medium".into(), "email".into()),
                ("campaign".into(), "spring".into())
            ]
        );
        assert_eq!(
            b.traits,
            vec![
                ("persona".into(), "researcher".into()),
                ("country".into(), "NL".into())
            ]
        );
        let b = side_b(&[("compare.from", "2026-10-01")]);
        assert_eq!(b.from_ms, parse_time("2026-10-01T00:00:00Z"));
        assert_eq!(b.to_ms, None);
    }

    #[test]
    fn bad_comparisons_are_named() {
        let cases: [(&[(&str, &str)], &str); 8] = [
            (&[("compare", "last_year")], "compare"),
            (&[("compare", "previous_period")], "compare"),
            (
                &[("compare", "previous_period"), ("from", "2026-11-01")],
                "compare",
            ),
            (
                &[
                    ("compare", "previous_period"),
                    ("from", "2026-11-01"),
                    ("to", "2026-11-08"),
                    ("compare.from", "2026-10-01"),
                ],
                "compare.from",
            ),
            (&[("compare.from", "yesterday")], "compare.from"),
            (&[("compare.to", "2026-13-01")], "compare.to"),
            (
                &[("from", "2026-11-10"), ("compare.to", "2026-11-01")],
                "compare.to",
            ),
            (&[("compare.goal", "signup")], "compare.goal"),
        ];
        for (input, name) in cases {
            assert_eq!(refused(sales_cycle_query(pairs(input))), name, "{input:?}");
        }
    }
}
