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
    let format = match pairs.take("format").as_deref() {
        None | Some("json") => TableFormat::Json,
        Some("csv") => TableFormat::Csv,
        Some(_) => return Err(ApiError::invalid("format", "must be json or csv")),
    };
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
        let mut rest = Vec::new();
        for (key, value) in pairs.0.drain(..) {
            if let Some(property) = key.strip_prefix("compare.prop.") {
                comparison.properties.push((property.to_owned(), value));
            } else if let Some(trait_name) = key.strip_prefix("compare.trait.") {
                comparison.traits.push((trait_name.to_owned(), value));
            } else {
                rest.push((key, value));
            }
        }
        pairs.0 = rest;
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
