//! Report parameters: decoded from the query string into plain values, with an error naming the
//! parameter for anything unknown or malformed (a typo must not silently widen a report). The read
//! key is not among them: the routes' auth takes `key` out first. The analyst reports' parameters
//! are in [`reports`].

mod reports;

pub use reports::{
    attribution_query, drop_off_query, funnel_query, influence_query, leads_query,
    sales_cycle_query, top_paths_query, BreakdownBy, DropOffOptions, ReadsStepProperties,
    ReportQuery, Split, TableFormat,
};

use scribble_domain::event::parse_time;
use scribble_domain::overview::Interval;
use scribble_domain::paths::{Breakdown, GraphView, PathOptions};
use scribble_domain::stitch::JourneyFilter;

use crate::error::ApiError;

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Dot,
    Mermaid,
}

/// A decoded `/v1/paths` request.
#[derive(Debug, Clone, PartialEq)]
pub struct PathQuery {
    pub view: GraphView,
    pub options: PathOptions,
    pub filter: JourneyFilter,
    pub format: Format,
}

/// A decoded `/v1/metrics` request.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsQuery {
    pub goal: String,
    pub filter: JourneyFilter,
}

/// A `(name, value)` filter pair: a property or a trait and the value it must have.
type NamedValue = (String, String);

/// Query-string pairs, consumed parameter by parameter; whatever is left at the end is unknown.
struct Pairs(Vec<(String, String)>);

impl Pairs {
    fn take(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(key, _)| key == name)?;
        Some(self.0.remove(index).1)
    }

    fn take_number(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<Option<usize>, ApiError> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        match text.parse::<usize>() {
            Ok(number) if range.contains(&number) => Ok(Some(number)),
            _ => Err(ApiError::invalid(
                name,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A number `accept` approves of; `expectation` completes "must be ..." otherwise.
    fn take_float(
        &mut self,
        name: &str,
        accept: impl Fn(f64) -> bool,
        expectation: &str,
    ) -> Result<Option<f64>, ApiError> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        match text.trim().parse::<f64>() {
            Ok(number) if number.is_finite() && accept(number) => Ok(Some(number)),
            _ => Err(ApiError::invalid(name, format!("must be {expectation}"))),
        }
    }

    fn take_flag(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        match text.as_str() {
            "" | "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => Err(ApiError::invalid(name, "must be true or false")),
        }
    }

    fn take_filter(&mut self) -> Result<JourneyFilter, ApiError> {
        let from_ms = self
            .take("from")
            .map(|text| time("from", &text))
            .transpose()?;
        let to_ms = self.take("to").map(|text| time("to", &text)).transpose()?;
        if let (Some(from), Some(to)) = (from_ms, to_ms) {
            if from >= to {
                return Err(ApiError::invalid("to", "must be after from"));
            }
        }
        let mut filter = JourneyFilter {
            from_ms,
            to_ms,
            ..Default::default()
        };
        (filter.properties, filter.traits) = self.take_prefixed("prop.", "trait.");
        Ok(filter)
    }

    /// Takes every `<property_prefix>KEY=VALUE` and `<trait_prefix>KEY=VALUE` pair, as
    /// `(properties, traits)` of `(KEY, VALUE)`.
    fn take_prefixed(
        &mut self,
        property_prefix: &str,
        trait_prefix: &str,
    ) -> (Vec<NamedValue>, Vec<NamedValue>) {
        let (mut properties, mut traits, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in self.0.drain(..) {
            if let Some(property) = key.strip_prefix(property_prefix) {
                properties.push((property.to_owned(), value));
            } else if let Some(trait_name) = key.strip_prefix(trait_prefix) {
                traits.push((trait_name.to_owned(), value));
            } else {
                rest.push((key, value));
            }
        }
        self.0 = rest;
        (properties, traits)
    }

    /// `format` of a report answered as a table: `json` (default) or `csv`.
    fn take_table_format(&mut self) -> Result<TableFormat, ApiError> {
        match self.take("format").as_deref() {
            None | Some("json") => Ok(TableFormat::Json),
            Some("csv") => Ok(TableFormat::Csv),
            Some(_) => Err(ApiError::invalid("format", "must be json or csv")),
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some((key, _)) => Err(ApiError::invalid(
                key,
                "unknown parameter; filters are written prop.<property>=<value> or trait.<trait>=<value>",
            )),
        }
    }
}

/// Accepts RFC 3339 or a plain date (midnight UTC).
fn time(name: &str, text: &str) -> Result<i64, ApiError> {
    parse_time(text)
        .or_else(|| parse_time(&format!("{text}T00:00:00Z")))
        .ok_or_else(|| ApiError::invalid(name, "must be a date (2026-11-01) or an RFC 3339 time"))
}

fn format(pairs: &mut Pairs) -> Result<Format, ApiError> {
    match pairs.take("format").as_deref() {
        None | Some("json") => Ok(Format::Json),
        Some("dot") => Ok(Format::Dot),
        Some("mermaid") => Ok(Format::Mermaid),
        Some(_) => Err(ApiError::invalid("format", "must be json, dot or mermaid")),
    }
}

fn non_empty(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(text) if text.trim().is_empty() => Err(ApiError::invalid(
            name,
            "must not be empty; leave it out instead",
        )),
        other => Ok(other),
    }
}

/// Decodes `/v1/paths` parameters.
pub fn path_query(pairs: Vec<(String, String)>) -> Result<PathQuery, ApiError> {
    let mut pairs = Pairs(pairs);
    let view = match pairs.take("view").as_deref() {
        None | Some("state") => GraphView::State,
        Some("positional") | Some("sankey") => GraphView::Positional,
        Some(_) => {
            return Err(ApiError::invalid(
                "view",
                "must be state (the scribble) or positional (Sankey)",
            ))
        }
    };
    let defaults = PathOptions::default();
    let options = PathOptions {
        start: non_empty("start", pairs.take("start"))?,
        end: non_empty("end", pairs.take("end"))?,
        max_steps: pairs
            .take_number("steps", 1..=50)?
            .unwrap_or(defaults.max_steps),
        top_n: match pairs.take_number("top", 0..=1000)? {
            Some(0) => None,
            Some(top) => Some(top),
            None => defaults.top_n,
        },
        collapse_repeats: pairs
            .take_flag("collapse")?
            .unwrap_or(defaults.collapse_repeats),
        drop_offs: pairs.take_flag("drop_offs")?.unwrap_or(defaults.drop_offs),
        breakdown: match pairs.take("breakdown").as_deref() {
            None | Some("") | Some("none") => Breakdown::None,
            Some("channel") => Breakdown::Channel,
            Some(_) => return Err(ApiError::invalid("breakdown", "must be none or channel")),
        },
    };
    let format = format(&mut pairs)?;
    let filter = pairs.take_filter()?;
    pairs.finish()?;
    Ok(PathQuery {
        view,
        options,
        filter,
        format,
    })
}

/// Decodes `/v1/metrics` parameters.
pub fn metrics_query(pairs: Vec<(String, String)>) -> Result<MetricsQuery, ApiError> {
    let mut pairs = Pairs(pairs);
    let goal = non_empty("goal", pairs.take("goal"))?.unwrap_or_else(|| "purchase".to_owned());
    let filter = pairs.take_filter()?;
    pairs.finish()?;
    Ok(MetricsQuery { goal, filter })
}

/// A decoded `/v1/overview` request.
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewQuery {
    pub interval: Interval,
    pub goal: String,
    pub format: TableFormat,
    pub filter: JourneyFilter,
}

/// Decodes `/v1/overview` parameters: `interval` (`hour`, `day`, `week`) [day], `goal`
/// [purchase], `format` (`json`, `csv`) [json], and the filters.
pub fn overview_query(pairs: Vec<(String, String)>) -> Result<OverviewQuery, ApiError> {
    let mut pairs = Pairs(pairs);
    let interval = match pairs.take("interval") {
        None => Interval::Day,
        Some(text) => Interval::parse(&text)
            .ok_or_else(|| ApiError::invalid("interval", "must be hour, day or week"))?,
    };
    let goal = non_empty("goal", pairs.take("goal"))?.unwrap_or_else(|| "purchase".to_owned());
    let format = pairs.take_table_format()?;
    let filter = pairs.take_filter()?;
    pairs.finish()?;
    Ok(OverviewQuery {
        interval,
        goal,
        format,
        filter,
    })
}

/// Decodes filter-only parameters (the touchpoint list).
pub fn filter_query(pairs: Vec<(String, String)>) -> Result<JourneyFilter, ApiError> {
    let mut pairs = Pairs(pairs);
    let filter = pairs.take_filter()?;
    pairs.finish()?;
    Ok(filter)
}

/// Checks that a report without parameters (a customer's journey) got none.
pub fn no_parameters(pairs: Vec<(String, String)>) -> Result<(), ApiError> {
    Pairs(pairs).finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Query-string pairs from literals.
    pub(crate) fn pairs(text: &[(&str, &str)]) -> Vec<(String, String)> {
        text.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn path_parameters_decode_with_defaults() {
        let query = path_query(pairs(&[
            ("view", "positional"),
            ("start", "site_visit"),
            ("steps", "4"),
            ("top", "0"),
            ("collapse", "true"),
            ("breakdown", "channel"),
            ("from", "2026-11-01"),
            ("prop.campaign", "fall"),
            ("trait.persona", "researcher"),
            ("format", "mermaid"),
        ]))
        .unwrap();
        assert_eq!(query.view, GraphView::Positional);
        assert_eq!(query.options.start.as_deref(), Some("site_visit"));
        assert_eq!(query.options.max_steps, 4);
        assert_eq!(query.options.top_n, None);
        assert!(query.options.collapse_repeats);
        assert_eq!(query.options.breakdown, Breakdown::Channel);
        assert_eq!(query.format, Format::Mermaid);
        assert_eq!(query.filter.from_ms, parse_time("2026-11-01T00:00:00Z"));
        assert_eq!(
            query.filter.properties,
            vec![("campaign".to_owned(), "fall".to_owned())]
        );
        assert_eq!(
            query.filter.traits,
            vec![("persona".to_owned(), "researcher".to_owned())]
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[("view", "pie")], "view"),
            (&[("steps", "0")], "steps"),
            (&[("steps", "many")], "steps"),
            (&[("from", "last week")], "from"),
            (&[("from", "2026-11-02"), ("to", "2026-11-01")], "to"),
            (&[("strat", "site_visit")], "strat"),
            (&[("start", " ")], "start"),
        ];
        for (input, name) in cases {
            match path_query(pairs(input)) {
                Err(ApiError::InvalidParameter { name: actual, .. }) => {
                    assert_eq!(actual, name, "{input:?}")
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn overview_parameters_decode_with_defaults_and_bad_ones_are_named() {
        let query = overview_query(vec![]).unwrap();
        assert_eq!(
            (query.interval, query.goal.as_str(), query.format),
            (Interval::Day, "purchase", TableFormat::Json)
        );
        let query = overview_query(pairs(&[
            ("interval", "week"),
            ("format", "csv"),
            ("trait.persona", "researcher"),
        ]))
        .unwrap();
        assert_eq!(
            (query.interval, query.format),
            (Interval::Week, TableFormat::Csv)
        );
        assert_eq!(query.filter.traits.len(), 1);
        for (input, name) in [
            (("interval", "month"), "interval"),
            (("goal", " "), "goal"),
            (("format", "dot"), "format"),
            (("intervall", "day"), "intervall"),
        ] {
            match overview_query(pairs(&[input])) {
                Err(ApiError::InvalidParameter { name: actual, .. }) => assert_eq!(actual, name),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn metrics_goal_defaults_to_purchase() {
        assert_eq!(metrics_query(vec![]).unwrap().goal, "purchase");
        assert!(metrics_query(pairs(&[("format", "dot")])).is_err());
    }
}
