//! The analyst report commands (`funnel`, `drop-off`, `top-paths`, `influence`, `attribution`,
//! `sales-cycle`, `leads`): each turns its flags into the query API's parameters and prints the
//! answer as aligned tables, as the JSON, or as the API's CSV. A breakdown prints one table per
//! segment; a comparison prints side a, side b, and their difference (b - a).

use scribble_domain::compare::IDENTITY_FIELDS;
use scribble_domain::render::human_duration;
use serde_json::Value;

use super::{filter_params, get, pairs};
use crate::cli::{
    AnalystArgs, AttributeBy, AttributionArgs, CompareWith, DropOffArgs, FunnelArgs, FunnelFlags,
    FunnelOrder, InfluenceArgs, LeadsArgs, SalesCycleArgs, TableFormat, TopPathsArgs,
};

type Params = Vec<(String, String)>;

/// Prints one report (or a breakdown or comparison of it) as text.
type Render = fn(&Value) -> String;

pub fn funnel(args: FunnelArgs) -> anyhow::Result<()> {
    run(
        &args.analyst,
        "/v1/funnel",
        funnel_params(&args.funnel),
        funnel_table,
    )
}

pub fn drop_off(args: DropOffArgs) -> anyhow::Result<()> {
    let mut params = funnel_params(&args.funnel);
    params.push(("next_steps".into(), args.next_steps.to_string()));
    run(&args.analyst, "/v1/drop-off", params, drop_off_table)
}

pub fn top_paths(args: TopPathsArgs) -> anyhow::Result<()> {
    let mut params = Params::new();
    optional(&mut params, "goal", args.goal);
    flag(&mut params, "up_to_goal", args.up_to_goal);
    flag(&mut params, "collapse", args.collapse);
    optional(&mut params, "steps", args.steps);
    optional(&mut params, "limit", args.limit);
    run(&args.analyst, "/v1/top-paths", params, top_paths_table)
}

pub fn influence(args: InfluenceArgs) -> anyhow::Result<()> {
    let params = vec![("goal".into(), args.goal)];
    run(&args.analyst, "/v1/influence", params, influence_table)
}

pub fn attribution(args: AttributionArgs) -> anyhow::Result<()> {
    let by = match args.by {
        AttributeBy::Touchpoint => "touchpoint",
        AttributeBy::Channel => "channel",
    };
    let mut params = vec![("goal".into(), args.goal), ("by".into(), by.into())];
    optional(&mut params, "half_life_days", args.half_life_days);
    optional(&mut params, "position_weights", args.position_weights);
    optional(&mut params, "value_property", args.value_property);
    run(&args.analyst, "/v1/attribution", params, attribution_table)
}

pub fn sales_cycle(args: SalesCycleArgs) -> anyhow::Result<()> {
    let params = vec![("goal".into(), args.goal)];
    run(&args.analyst, "/v1/sales-cycle", params, sales_cycle_table)
}

pub fn leads(args: LeadsArgs) -> anyhow::Result<()> {
    let mut params = vec![("goal".into(), args.goal)];
    optional(&mut params, "leads", args.leads);
    optional(&mut params, "within_days", args.within_days);
    optional(&mut params, "as_of", args.as_of);
    run(&args.analyst, "/v1/leads", params, leads_table)
}

fn optional(params: &mut Params, name: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        params.push((name.into(), value.to_string()));
    }
}

fn flag(params: &mut Params, name: &str, set: bool) {
    if set {
        params.push((name.into(), "true".into()));
    }
}

fn funnel_params(funnel: &FunnelFlags) -> Params {
    let order = match funnel.order {
        FunnelOrder::Ordered => "ordered",
        FunnelOrder::Strict => "strict",
        FunnelOrder::Any => "any",
    };
    let mut params = vec![
        ("steps".into(), funnel.steps.clone()),
        ("order".into(), order.into()),
    ];
    optional(&mut params, "window", funnel.window.as_ref());
    optional(&mut params, "step_windows", funnel.step_windows.as_ref());
    params
}

/// Asks `path` with the report's own `params` and the shared flags, and prints the answer.
fn run(args: &AnalystArgs, path: &str, mut params: Params, render: Render) -> anyhow::Result<()> {
    params.extend(filter_params(&args.report)?);
    params.extend(split_params(args)?);
    let client = &args.report.client;
    match args.format {
        TableFormat::Csv => {
            params.push(("format".into(), "csv".into()));
            print!("{}", get(client, path, &params)?.text()?);
        }
        TableFormat::Json => {
            let answer: Value = get(client, path, &params)?.json()?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        TableFormat::Table => {
            let answer: Value = get(client, path, &params)?.json()?;
            print!("{}", tables(&answer, render));
        }
    }
    Ok(())
}

/// The breakdown and comparison flags as query parameters.
fn split_params(args: &AnalystArgs) -> anyhow::Result<Params> {
    let mut params = Params::new();
    optional(&mut params, "breakdown_by", args.breakdown_by.as_ref());
    if let Some(CompareWith::PreviousPeriod) = args.compare {
        params.push(("compare".into(), "previous_period".into()));
    }
    optional(&mut params, "compare.from", args.compare_from.as_ref());
    optional(&mut params, "compare.to", args.compare_to.as_ref());
    params.extend(pairs("compare.prop.", &args.compare_properties)?);
    params.extend(pairs("compare.trait.", &args.compare_traits)?);
    Ok(params)
}

/// The answer as text: one report, one per segment of a breakdown, or both sides of a
/// comparison followed by their difference.
fn tables(answer: &Value, render: Render) -> String {
    if let Some(segments) = answer.get("segments").and_then(Value::as_array) {
        let by = cell(&answer["breakdown_by"]);
        if segments.is_empty() {
            return format!("no customers to break down by {by}\n");
        }
        let parts: Vec<String> = segments
            .iter()
            .map(|segment| {
                format!(
                    "== {by} = {} ({} customers) ==\n{}",
                    cell(&segment["value"]),
                    cell(&segment["customers"]),
                    render(&segment["report"])
                )
            })
            .collect();
        return parts.join("\n");
    }
    if let Some(difference) = answer.get("difference") {
        let side = |name: &str| {
            format!(
                "== {name}: {} ==\n{}",
                describe_filter(&answer[name]["filter"]),
                render(&answer[name]["report"])
            )
        };
        return format!(
            "{}\n{}\n== difference (b - a) ==\n{}",
            side("a"),
            side("b"),
            render(&with_one_sided_items_marked(difference))
        );
    }
    render(answer)
}

/// A comparison side's filter in a few words: `from 2026-11-01 to 2026-11-08, persona=bargain`.
fn describe_filter(filter: &Value) -> String {
    let mut parts = Vec::new();
    for bound in ["from", "to"] {
        if let Some(time) = filter[bound].as_str() {
            let time = time.strip_suffix("T00:00:00.000Z").unwrap_or(time);
            parts.push(format!("{bound} {time}"));
        }
    }
    for (kind, prefix) in [("properties", ""), ("traits", "trait ")] {
        for (key, value) in filter[kind].as_object().into_iter().flatten() {
            parts.push(format!("{prefix}{key}={}", cell(value)));
        }
    }
    if parts.is_empty() {
        return "everything".to_owned();
    }
    parts.join(", ")
}

/// `difference` with each item only one side has (`{"missing_from": "b", "a": item}`) replaced
/// by that side's item, its name marked `(only in a)`, so the report's table can show it.
fn with_one_sided_items_marked(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            if let Some(missing) = fields.get("missing_from").and_then(Value::as_str) {
                let present = if missing == "a" { "b" } else { "a" };
                if let Some(item) = fields.get(present) {
                    return marked(item, &format!("(only in {present})"));
                }
            }
            let fields = fields
                .iter()
                .map(|(key, value)| (key.clone(), with_one_sided_items_marked(value)))
                .collect();
            Value::Object(fields)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(with_one_sided_items_marked).collect())
        }
        other => other.clone(),
    }
}

fn marked(item: &Value, marker: &str) -> Value {
    let mut item = item.clone();
    if let Some(fields) = item.as_object_mut() {
        let field = IDENTITY_FIELDS
            .iter()
            .find(|field| fields.contains_key(**field));
        match field.and_then(|field| fields.get_mut(*field)) {
            Some(Value::String(name)) => *name = format!("{name} {marker}"),
            Some(Value::Array(steps)) => steps.push(Value::from(marker)),
            _ => {}
        }
    }
    item
}

/// A value a comparison changed (`{"a": .., "b": ..}`) as `a -> b`, each side by `format`.
fn changed(value: &Value, format: fn(&Value) -> String) -> Option<String> {
    let fields = value.as_object()?;
    match (fields.get("a"), fields.get("b")) {
        (Some(a), Some(b)) if fields.len() == 2 => Some(format!("{} -> {}", format(a), format(b))),
        _ => None,
    }
}

/// A value as a table cell: whole numbers as they are, others to 3 decimals, null as `-`, and a
/// value a comparison changed as `a -> b`.
fn cell(value: &Value) -> String {
    if let Some(change) = changed(value, cell) {
        return change;
    }
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Number(number) => match number.as_i64() {
            Some(whole) => whole.to_string(),
            None => decimal(number.as_f64().unwrap_or(f64::NAN)),
        },
        other => other.to_string(),
    }
}

fn decimal(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        return format!("{number:.0}");
    }
    let text = format!("{number:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A share (0.25) as a percentage (`25.0%`).
fn percent(value: &Value) -> String {
    if let Some(change) = changed(value, percent) {
        return change;
    }
    match value.as_f64() {
        Some(share) => format!("{:.1}%", share * 100.0),
        None => cell(value),
    }
}

/// Seconds as a readable duration (`2.0h`); a negative difference keeps its sign.
fn duration(value: &Value) -> String {
    if let Some(change) = changed(value, duration) {
        return change;
    }
    match value.as_f64() {
        Some(seconds) if seconds < 0.0 => format!("-{}", human_duration(-seconds)),
        Some(seconds) => human_duration(seconds),
        None => cell(value),
    }
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Rows under a header, each column as wide as its widest cell: the first column left-aligned,
/// the others (mostly numbers) right-aligned.
fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|name| name.chars().count()).collect();
    for row in rows {
        for (width, field) in widths.iter_mut().zip(row) {
            *width = (*width).max(field.chars().count());
        }
    }
    let line = |fields: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = fields
            .zip(&widths)
            .enumerate()
            .map(|(index, (field, &width))| {
                if index == 0 {
                    format!("{field:<width$}")
                } else {
                    format!("{field:>width$}")
                }
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn funnel_table(report: &Value) -> String {
    let window = match report["window_ms"].as_f64() {
        Some(ms) => format!(", within {}", human_duration(ms / 1000.0)),
        None => String::new(),
    };
    let rows: Vec<Vec<String>> = items(&report["steps"])
        .iter()
        .map(|step| {
            vec![
                format!("{}. {}", cell(&step["step"]), cell(&step["label"])),
                cell(&step["entered"]),
                cell(&step["converted"]),
                cell(&step["dropped"]),
                percent(&step["conversion_from_previous"]),
                percent(&step["conversion_from_first"]),
                duration(&step["median_seconds_to_convert"]),
                duration(&step["p90_seconds_to_convert"]),
            ]
        })
        .collect();
    let header = [
        "step",
        "entered",
        "converted",
        "dropped",
        "of previous",
        "of first",
        "median time",
        "p90 time",
    ];
    format!(
        "{} customers, {} funnel{window}\n{}",
        cell(&report["customers"]),
        cell(&report["order"]),
        aligned(&header, &rows)
    )
}

fn drop_off_table(report: &Value) -> String {
    let mut out = String::new();
    for step in items(&report["steps"]) {
        out.push_str(&format!(
            "{}. {}: {} dropped, {} of them ended there\n",
            cell(&step["step"]),
            cell(&step["label"]),
            cell(&step["dropped"]),
            cell(&step["ended_there"]),
        ));
        let before: Vec<Vec<String>> = items(&step["before"])
            .iter()
            .map(|count| {
                vec![
                    format!("  {}", cell(&count["touchpoint"])),
                    cell(&count["customers"]),
                    percent(&count["share"]),
                ]
            })
            .collect();
        if !before.is_empty() {
            out.push_str(&aligned(&["  did before", "customers", "share"], &before));
        }
        let next: Vec<Vec<String>> = items(&step["next"]["nodes"])
            .iter()
            .map(|node| {
                // A comparison names nodes (`2. site_visit`) instead of giving label and step.
                let name = match (&node["node"], &node["step"]) {
                    (Value::String(name), _) => name.clone(),
                    (_, Value::Null) => cell(&node["label"]),
                    (_, step) => format!("{}. {}", cell(step), cell(&node["label"])),
                };
                vec![format!("  {name}"), cell(&node["customers"])]
            })
            .collect();
        if !next.is_empty() {
            out.push_str(&aligned(&["  did next", "customers"], &next));
        }
    }
    out
}

fn top_paths_table(report: &Value) -> String {
    let mut rows: Vec<Vec<String>> = items(&report["paths"])
        .iter()
        .map(|path| {
            let mut steps: Vec<String> = items(&path["steps"]).iter().map(cell).collect();
            // A comparison marks a path only one side has with a last step `(only in a)`.
            let marker = match steps.last() {
                Some(last) if last.starts_with("(only in ") => steps.pop(),
                _ => None,
            };
            let mut text = steps.join(" > ");
            if path["truncated"] == Value::Bool(true) {
                text.push_str(" > ...");
            }
            if let Some(marker) = marker {
                text = format!("{text} {marker}");
            }
            vec![
                text,
                cell(&path["customers"]),
                cell(&path["conversions"]),
                percent(&path["conversion_rate"]),
            ]
        })
        .collect();
    let other = &report["other"];
    if other["paths"].as_i64() != Some(0) {
        rows.push(vec![
            format!("(other: {} paths)", cell(&other["paths"])),
            cell(&other["customers"]),
            cell(&other["conversions"]),
            percent(&other["conversion_rate"]),
        ]);
    }
    let goal = match &report["goal"] {
        Value::Null => String::new(),
        goal => format!(
            ", {} converted to {}",
            cell(&report["conversions"]),
            cell(goal)
        ),
    };
    format!(
        "{} customers{goal}\n{}",
        cell(&report["customers"]),
        aligned(&["path", "customers", "conversions", "rate"], &rows)
    )
}

fn influence_table(report: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&report["rows"])
        .iter()
        .map(|row| {
            vec![
                cell(&row["touchpoint"]),
                cell(&row["customers"]),
                cell(&row["converters"]),
                percent(&row["reach"]),
                percent(&row["converter_reach"]),
                cell(&row["lift"]),
                cell(&row["label"]),
            ]
        })
        .collect();
    let header = [
        "touchpoint",
        "customers",
        "converters",
        "reach",
        "converter reach",
        "lift",
        "label",
    ];
    format!(
        "{} customers, {} converted to {} ({})\n{}",
        cell(&report["customers"]),
        cell(&report["converters"]),
        cell(&report["goal"]),
        percent(&report["conversion_rate"]),
        aligned(&header, &rows)
    )
}

const MODELS: [(&str, &str); 6] = [
    ("first_touch", "first touch"),
    ("last_touch", "last touch"),
    ("linear", "linear"),
    ("time_decay", "time decay"),
    ("position_based", "position"),
    ("data_driven", "data-driven"),
];

fn attribution_table(report: &Value) -> String {
    let credits = |measure: &str| -> Vec<Vec<String>> {
        items(&report["rows"])
            .iter()
            .map(|row| {
                let mut fields = vec![cell(&row["name"])];
                fields.extend(MODELS.iter().map(|(model, _)| cell(&row[*model][measure])));
                fields
            })
            .collect()
    };
    let mut header = vec![""];
    header.extend(MODELS.iter().map(|(_, title)| *title));
    header[0] = "conversions";
    let mut out = format!(
        "{} conversions of {} by {}, value {}\n{}",
        cell(&report["conversions"]),
        cell(&report["goal"]),
        cell(&report["by"]),
        cell(&report["value"]),
        aligned(&header, &credits("conversions"))
    );
    if report["value"].as_f64().is_some_and(|value| value != 0.0) {
        header[0] = "value";
        out.push_str(&aligned(&header, &credits("value")));
    }
    out
}

fn sales_cycle_table(report: &Value) -> String {
    let mut out = format!(
        "{} of {} customers converted to {}\n",
        cell(&report["converters"]),
        cell(&report["customers"]),
        cell(&report["goal"])
    );
    for (measure, title) in [
        ("days", "days to convert"),
        ("touchpoints", "touchpoints before"),
    ] {
        let distribution = &report[measure];
        let rows: Vec<Vec<String>> = items(&distribution["buckets"])
            .iter()
            .map(|bucket| {
                vec![
                    cell(&bucket["label"]),
                    cell(&bucket["customers"]),
                    percent(&bucket["share"]),
                ]
            })
            .collect();
        out.push_str(&aligned(&[title, "customers", "share"], &rows));
        out.push_str(&format!(
            "median {}, p90 {}, mean {}\n",
            cell(&distribution["median"]),
            cell(&distribution["p90"]),
            cell(&distribution["mean"])
        ));
    }
    out
}

fn leads_table(report: &Value) -> String {
    let outcomes = [
        ("converted_in_time", "converted in time"),
        ("converted_late", "converted late"),
        ("converted_before_lead", "converted before the lead"),
        ("pending", "pending"),
        ("zombies", "zombies (went cold)"),
    ];
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|(field, title)| vec![title.to_string(), cell(&report[*field])])
        .collect();
    let mut out = format!(
        "{} leads; converting to {} within {} days is in time\n{}",
        cell(&report["leads"]),
        cell(&report["goal"]),
        cell(&report["within_days"]),
        aligned(&["outcome", "customers"], &rows)
    );
    out.push_str(&format!(
        "median days from lead to conversion: {}\n",
        cell(&report["median_days_lead_to_conversion"])
    ));
    let before: Vec<Vec<String>> = items(&report["before_conversion"])
        .iter()
        .map(|count| {
            vec![
                cell(&count["touchpoint"]),
                cell(&count["customers"]),
                percent(&count["share"]),
            ]
        })
        .collect();
    if !before.is_empty() {
        out.push_str(&aligned(
            &["between lead and conversion", "customers", "share"],
            &before,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_columns_and_show_changes_and_one_sided_rows() {
        let table = aligned(
            &["step", "entered"],
            &[
                vec!["1. site_visit".into(), "12".into()],
                vec!["2. purchase".into(), "3".into()],
            ],
        );
        assert_eq!(
            table,
            "step           entered\n1. site_visit       12\n2. purchase          3\n"
        );
        assert_eq!(
            cell(&json!({"a": "none", "b": "moment_of_impact"})),
            "none -> moment_of_impact"
        );
        assert_eq!(cell(&json!(0.6666666)), "0.667");
        assert_eq!(cell(&json!(-2)), "-2");
        assert_eq!(cell(&json!(2.0)), "2");
        assert_eq!(duration(&json!(-7200.0)), "-2.0h");
        assert_eq!(duration(&json!({"a": 259200.0, "b": null})), "3.0d -> -");
        assert_eq!(percent(&json!({"a": null, "b": 0.5})), "- -> 50.0%");
        let difference = json!({"paths": [
            {"missing_from": "b", "a": {"steps": ["site_visit"], "customers": 2}},
            {"missing_from": "a", "b": {"touchpoint": "ad_click", "customers": 1}},
        ]});
        assert_eq!(
            with_one_sided_items_marked(&difference),
            json!({"paths": [
                {"steps": ["site_visit", "(only in a)"], "customers": 2},
                {"touchpoint": "ad_click (only in b)", "customers": 1},
            ]})
        );
    }

    #[test]
    fn a_breakdown_prints_one_table_per_segment() {
        let answer = json!({"breakdown_by": "trait.persona", "segments": [
            {"value": "researcher", "customers": 2, "report": {"customers": 2}},
            {"value": "(none)", "customers": 1, "report": {"customers": 1}},
        ]});
        let render: Render = |report| format!("{} customers\n", cell(&report["customers"]));
        assert_eq!(
            tables(&answer, render),
            "== trait.persona = researcher (2 customers) ==\n2 customers\n\n\
             == trait.persona = (none) (1 customers) ==\n1 customers\n"
        );
        let filter = json!({"from": "2026-11-01T00:00:00.000Z", "to": "2026-11-08T12:00:00.000Z",
                            "properties": {"campaign": "fall"}, "traits": {"persona": "bargain"}});
        assert_eq!(
            describe_filter(&filter),
            "from 2026-11-01, to 2026-11-08T12:00:00.000Z, campaign=fall, trait persona=bargain"
        );
    }
}
