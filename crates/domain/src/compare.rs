//! The difference between two answers of one report (two segments, two periods), as JSON shaped
//! like the report itself, so a reader finds each change where the number sits in the report.
//! Generic over the report: it knows JSON, not funnels or attribution.
//!
//! The rules, applied from the top down:
//! - Numbers become `b - a`: whole when both are whole, floating point otherwise. A field named
//!   [`POSITION_FIELD`] is a row's position (funnel step 2), not a count: it is compared like a
//!   label.
//! - Equal strings, booleans and nulls are kept as they are, so labels stay readable.
//! - Other values that differ (two strings, a null and a number, different kinds, arrays of
//!   scalars) become `{"a": <a's value>, "b": <b's value>}`.
//! - Objects recurse key by key. A key only one side has becomes
//!   `{"missing_from": "b", "a": <value>}` (or the other way round).
//! - Arrays of objects (report rows) are matched by identity, not position: an item's identity
//!   is the first of the fields [`IDENTITY_FIELDS`] it has, together with its boolean fields (a
//!   truncated path is another path than the whole one) and its [`POSITION_FIELD`]. Items with equal identities on one
//!   side match in order of appearance (a funnel may list a touchpoint twice). Matched items
//!   recurse; an item only one side has appears as `{"missing_from": "b", "a": <item>}` (or the
//!   other way round). Items come in `a`'s order, then `b`'s unmatched ones in `b`'s order.
//!   Items without any identity field match by position.
//! - Path graphs (objects with `nodes` and `edges`) are compared by name: node ids differ between
//!   two graphs, so each node becomes `{"node": "<step>. <label>", ..}` (the label alone without
//!   a step) and each edge `{"edge": "<from node> -> <to node>", ..}` before comparing.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Number, Value};

/// Fields that name a report row, in the order they are looked for: the touchpoint of a row
/// per touchpoint, the name of an attribution row, the label of a funnel step or a bucket, the
/// node and edge names of a path graph, the steps of a top path.
pub const IDENTITY_FIELDS: [&str; 6] = ["touchpoint", "name", "label", "node", "edge", "steps"];

/// The field holding a row's position (funnel and drop-off steps count from 1).
pub const POSITION_FIELD: &str = "step";

/// The difference from `a` to `b`, by the rules in the module docs.
pub fn difference(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => number_difference(a, b),
        (Value::Object(a), Value::Object(b)) => {
            if is_graph(a) && is_graph(b) {
                return object_difference(&named_graph(a), &named_graph(b));
            }
            object_difference(a, b)
        }
        (Value::Array(a), Value::Array(b)) if all_objects(a) && all_objects(b) => {
            array_difference(a, b)
        }
        _ if a == b => a.clone(),
        _ => json!({"a": a, "b": b}),
    }
}

fn number_difference(a: &Number, b: &Number) -> Value {
    let whole = |number: &Number| {
        number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from))
    };
    if let (Some(a), Some(b)) = (whole(a), whole(b)) {
        if let Ok(change) = i64::try_from(b - a) {
            return Value::from(change);
        }
    }
    // Every JSON number has an f64 reading; a non-finite change becomes null.
    let reading = |number: &Number| number.as_f64().unwrap_or(f64::NAN);
    Value::from(reading(b) - reading(a))
}

fn object_difference(a: &Map<String, Value>, b: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (key, a_value) in a {
        let change = match b.get(key) {
            Some(b_value) if key == POSITION_FIELD && a_value == b_value => a_value.clone(),
            Some(b_value) if key == POSITION_FIELD => json!({"a": a_value, "b": b_value}),
            Some(b_value) => difference(a_value, b_value),
            None => missing_from("b", a_value),
        };
        out.insert(key.clone(), change);
    }
    for (key, b_value) in b {
        if !a.contains_key(key) {
            out.insert(key.clone(), missing_from("a", b_value));
        }
    }
    Value::Object(out)
}

/// A value only the other side has: `side` is where it is missing.
fn missing_from(side: &str, value: &Value) -> Value {
    let other = if side == "a" { "b" } else { "a" };
    json!({"missing_from": side, other: value})
}

fn all_objects(items: &[Value]) -> bool {
    items.iter().all(Value::is_object)
}

/// An item's identity (see the module docs), or `None` when it has no identity field.
fn identity(item: &Value) -> Option<Vec<&Value>> {
    let fields = item.as_object()?;
    let name = IDENTITY_FIELDS
        .iter()
        .find_map(|&field| fields.get(field).filter(|value| is_name(value)))?;
    let mut identity = vec![name];
    identity.extend(fields.values().filter(|value| value.is_boolean()));
    identity.extend(fields.get(POSITION_FIELD));
    Some(identity)
}

/// A string, or an array of strings.
fn is_name(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    }
}

fn array_difference(a: &[Value], b: &[Value]) -> Value {
    let identities_a: Vec<Option<Vec<&Value>>> = a.iter().map(identity).collect();
    let identities_b: Vec<Option<Vec<&Value>>> = b.iter().map(identity).collect();
    if identities_a
        .iter()
        .chain(&identities_b)
        .any(Option::is_none)
    {
        return positional_difference(a, b);
    }
    // Per identity, the positions in `b` not matched yet, in order.
    let mut unmatched_b: HashMap<&Vec<&Value>, VecDeque<usize>> = HashMap::new();
    for (index, key) in identities_b.iter().enumerate() {
        let key = key.as_ref().expect("checked above");
        unmatched_b.entry(key).or_default().push_back(index);
    }
    let mut matched_b = vec![false; b.len()];
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    for (item, key) in a.iter().zip(&identities_a) {
        let key = key.as_ref().expect("checked above");
        match unmatched_b.get_mut(key).and_then(|queue| queue.pop_front()) {
            Some(index) => {
                matched_b[index] = true;
                out.push(difference(item, &b[index]));
            }
            None => out.push(missing_from("b", item)),
        }
    }
    for (item, matched) in b.iter().zip(matched_b) {
        if !matched {
            out.push(missing_from("a", item));
        }
    }
    Value::Array(out)
}

fn positional_difference(a: &[Value], b: &[Value]) -> Value {
    let mut out: Vec<Value> = a.iter().zip(b).map(|(a, b)| difference(a, b)).collect();
    out.extend(a.iter().skip(b.len()).map(|item| missing_from("b", item)));
    out.extend(b.iter().skip(a.len()).map(|item| missing_from("a", item)));
    Value::Array(out)
}

/// Whether `object` is a path graph: nodes with ids, and edges.
fn is_graph(object: &Map<String, Value>) -> bool {
    let nodes = object.get("nodes").and_then(Value::as_array);
    let edges = object.get("edges").and_then(Value::as_array);
    match (nodes, edges) {
        (Some(nodes), Some(_)) => nodes.iter().all(|node| node.get("id").is_some()),
        _ => false,
    }
}

/// The graph with node ids replaced by node names (see the module docs).
fn named_graph(graph: &Map<String, Value>) -> Map<String, Value> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut nodes = Vec::new();
    for node in graph["nodes"].as_array().into_iter().flatten() {
        let Some(fields) = node.as_object() else {
            continue;
        };
        let label = fields.get("label").and_then(Value::as_str).unwrap_or("?");
        let name = match fields.get("step").and_then(Value::as_u64) {
            Some(step) => format!("{step}. {label}"),
            None => label.to_owned(),
        };
        names.insert(fields["id"].to_string(), name.clone());
        let mut named = fields.clone();
        for field in ["id", "label", "step"] {
            named.remove(field);
        }
        named.insert("node".to_owned(), Value::from(name));
        nodes.push(Value::Object(named));
    }
    let node_name = |id: Option<&Value>| {
        id.and_then(|id| names.get(&id.to_string()))
            .map_or("?", String::as_str)
            .to_owned()
    };
    let mut edges = Vec::new();
    for edge in graph["edges"].as_array().into_iter().flatten() {
        let Some(fields) = edge.as_object() else {
            continue;
        };
        let name = format!(
            "{} -> {}",
            node_name(fields.get("from")),
            node_name(fields.get("to"))
        );
        let mut named = fields.clone();
        named.remove("from");
        named.remove("to");
        named.insert("edge".to_owned(), Value::from(name));
        edges.push(Value::Object(named));
    }
    let mut named = graph.clone();
    named.insert("nodes".to_owned(), Value::Array(nodes));
    named.insert("edges".to_owned(), Value::Array(edges));
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_b_minus_a_and_equal_labels_stay() {
        let a = json!({"goal": "purchase", "customers": 10, "rate": 0.25, "median": null, "big": u64::MAX});
        let b = json!({"goal": "purchase", "customers": 7, "rate": 0.5, "median": null, "big": u64::MAX - 2});
        assert_eq!(
            difference(&a, &b),
            json!({"goal": "purchase", "customers": -3, "rate": 0.25, "median": null, "big": -2})
        );
    }

    #[test]
    fn values_that_differ_otherwise_show_both_sides() {
        let a = json!({"goal": "purchase", "median": null, "steps": ["a", "b"], "flag": true});
        let b = json!({"goal": "signup", "median": 4.5, "steps": ["a"], "flag": true});
        assert_eq!(
            difference(&a, &b),
            json!({
                "goal": {"a": "purchase", "b": "signup"},
                "median": {"a": null, "b": 4.5},
                "steps": {"a": ["a", "b"], "b": ["a"]},
                "flag": true,
            })
        );
    }

    #[test]
    fn keys_one_side_lacks_say_where_they_are_missing() {
        let a = json!({"only_a": 1, "both": 2});
        let b = json!({"both": 5, "only_b": [3]});
        assert_eq!(
            difference(&a, &b),
            json!({
                "only_a": {"missing_from": "b", "a": 1},
                "both": 3,
                "only_b": {"missing_from": "a", "b": [3]},
            })
        );
    }

    #[test]
    fn rows_match_by_identity_not_position_and_unmatched_rows_name_their_side() {
        // Influence-like rows: `touchpoint` names a row even though `label` and `advice` are
        // strings too (and sort first); b lists the rows in another order.
        let a = json!([
            {"touchpoint": "webinar", "label": "moment_of_influence", "advice": "x", "customers": 2},
            {"touchpoint": "site", "label": "none", "advice": null, "customers": 10},
            {"touchpoint": "ad", "label": "none", "advice": null, "customers": 4},
        ]);
        let b = json!([
            {"touchpoint": "site", "label": "moment_of_impact", "advice": "y", "customers": 12},
            {"touchpoint": "email", "label": "none", "advice": null, "customers": 1},
            {"touchpoint": "webinar", "label": "moment_of_influence", "advice": "x", "customers": 1},
        ]);
        assert_eq!(
            difference(&a, &b),
            json!([
                {"touchpoint": "webinar", "label": "moment_of_influence", "advice": "x", "customers": -1},
                {"touchpoint": "site", "label": {"a": "none", "b": "moment_of_impact"}, "advice": {"a": null, "b": "y"}, "customers": 2},
                {"missing_from": "b", "a": {"touchpoint": "ad", "label": "none", "advice": null, "customers": 4}},
                {"missing_from": "a", "b": {"touchpoint": "email", "label": "none", "advice": null, "customers": 1}},
            ])
        );
    }

    #[test]
    fn repeated_identities_match_in_order_and_booleans_join_the_identity() {
        // A funnel listing site_visit twice: the first matches the first, the second the second.
        let a =
            json!([{"label": "site_visit", "entered": 10}, {"label": "site_visit", "entered": 4}]);
        let b =
            json!([{"label": "site_visit", "entered": 7}, {"label": "site_visit", "entered": 1}]);
        assert_eq!(
            difference(&a, &b),
            json!([{"label": "site_visit", "entered": -3}, {"label": "site_visit", "entered": -3}])
        );
        // Top paths: the same steps cut short are another path.
        let a = json!([
            {"steps": ["ad", "site"], "truncated": false, "customers": 5},
            {"steps": ["ad", "site"], "truncated": true, "customers": 2},
        ]);
        let b = json!([
            {"steps": ["ad", "site"], "truncated": true, "customers": 3},
            {"steps": ["site"], "truncated": false, "customers": 1},
        ]);
        assert_eq!(
            difference(&a, &b),
            json!([
                {"missing_from": "b", "a": {"steps": ["ad", "site"], "truncated": false, "customers": 5}},
                {"steps": ["ad", "site"], "truncated": true, "customers": 1},
                {"missing_from": "a", "b": {"steps": ["site"], "truncated": false, "customers": 1}},
            ])
        );
    }

    #[test]
    fn funnel_steps_keep_their_number_and_match_by_it() {
        let a = json!({"customers": 5, "steps": [
            {"step": 1, "label": "site_visit", "entered": 5},
            {"step": 2, "label": "purchase", "entered": 2},
        ]});
        let b = json!({"customers": 4, "steps": [
            {"step": 1, "label": "site_visit", "entered": 4},
            {"step": 2, "label": "purchase", "entered": 3},
        ]});
        assert_eq!(
            difference(&a, &b),
            json!({"customers": -1, "steps": [
                {"step": 1, "label": "site_visit", "entered": -1},
                {"step": 2, "label": "purchase", "entered": 1},
            ]})
        );
        // The same label at another step is another row.
        let a = json!([{"step": 1, "label": "x", "n": 1}]);
        let b = json!([{"step": 2, "label": "x", "n": 1}]);
        assert_eq!(
            difference(&a, &b),
            json!([
                {"missing_from": "b", "a": {"step": 1, "label": "x", "n": 1}},
                {"missing_from": "a", "b": {"step": 2, "label": "x", "n": 1}},
            ])
        );
        assert_eq!(
            difference(&json!({"step": 1}), &json!({"step": 3})),
            json!({"step": {"a": 1, "b": 3}})
        );
    }

    #[test]
    fn rows_without_identity_match_by_position() {
        let a = json!([{"n": 1}, {"n": 2}, {"n": 3}]);
        let b = json!([{"n": 5}]);
        assert_eq!(
            difference(&a, &b),
            json!([{"n": 4}, {"missing_from": "b", "a": {"n": 2}}, {"missing_from": "b", "a": {"n": 3}}])
        );
    }

    #[test]
    fn graphs_compare_nodes_and_edges_by_name_whatever_their_ids() {
        let a = json!({"customers": 3, "nodes": [
            {"id": 0, "label": "ad", "step": 1, "customers": 3},
            {"id": 1, "label": "site", "step": 2, "customers": 2},
        ], "edges": [{"from": 0, "to": 1, "customers": 2, "median_seconds": 60.0}]});
        let b = json!({"customers": 4, "nodes": [
            {"id": 0, "label": "email", "step": 1, "customers": 1},
            {"id": 1, "label": "ad", "step": 1, "customers": 3},
            {"id": 2, "label": "site", "step": 2, "customers": 4},
        ], "edges": [
            {"from": 1, "to": 2, "customers": 3, "median_seconds": 90.0},
            {"from": 0, "to": 2, "customers": 1, "median_seconds": null},
        ]});
        assert_eq!(
            difference(&a, &b),
            json!({"customers": 1, "nodes": [
                {"node": "1. ad", "customers": 0},
                {"node": "2. site", "customers": 2},
                {"missing_from": "a", "b": {"node": "1. email", "customers": 1}},
            ], "edges": [
                {"edge": "1. ad -> 2. site", "customers": 1, "median_seconds": 30.0},
                {"missing_from": "a", "b": {"edge": "1. email -> 2. site", "customers": 1, "median_seconds": null}},
            ]})
        );
        // The state view has no steps: nodes are named by their label.
        let state = |customers: u64| json!({"nodes": [{"id": 7, "label": "site", "step": null, "customers": customers}], "edges": []});
        assert_eq!(
            difference(&state(2), &state(5)),
            json!({"nodes": [{"node": "site", "customers": 3}], "edges": []})
        );
    }

    #[test]
    fn the_same_report_on_both_sides_differs_by_zeros_only() {
        let report = json!({"goal": "purchase", "conversions": 2, "rows": [
            {"name": "ad", "first_touch": {"conversions": 1.0, "value": 40.0}},
            {"name": "site", "first_touch": {"conversions": 1.0, "value": 0.0}},
        ]});
        assert_eq!(
            difference(&report, &report),
            json!({"goal": "purchase", "conversions": 0, "rows": [
                {"name": "ad", "first_touch": {"conversions": 0.0, "value": 0.0}},
                {"name": "site", "first_touch": {"conversions": 0.0, "value": 0.0}},
            ]})
        );
    }
}
