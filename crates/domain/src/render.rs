//! Reports as text for other tools: path graphs as Graphviz DOT and Mermaid flowcharts, tables
//! as CSV. Labels come from senders, so every label is escaped for the target syntax; no label
//! can end a string, open a new statement, inject markup or start a spreadsheet formula.

use std::fmt::Write;

use crate::paths::{PathEdge, PathGraph, PathNode};

/// The graph in Graphviz DOT, left to right. Node labels carry the step (positional view), the
/// label and the customers; edge labels the customers and the median time, e.g. `12 (3.5h)`.
pub fn to_dot(graph: &PathGraph) -> String {
    let mut out = String::from("digraph scribble {\n  rankdir=LR;\n  node [shape=box];\n");
    for node in &graph.nodes {
        let label = node_text(node).map(|line| dot_escape(&line)).join("\\n");
        writeln!(out, "  n{} [label=\"{label}\"];", node.id).expect("writing to a String");
    }
    for edge in &graph.edges {
        let label = dot_escape(&edge_text(edge));
        writeln!(out, "  n{} -> n{} [label=\"{label}\"];", edge.from, edge.to)
            .expect("writing to a String");
    }
    out.push_str("}\n");
    out
}

/// A CSV table (RFC 4180, `\r\n` line ends) with `header` and `rows`. Fields are quoted when
/// they hold a comma, quote or line break; a field starting with `=`, `+`, `-` or `@` that is
/// not a number gets a leading `'`, so a spreadsheet shows it as text instead of running it.
pub fn to_csv<R, F>(header: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = Vec<F>>,
    F: AsRef<str>,
{
    let mut out = String::new();
    let mut line = |fields: &mut dyn Iterator<Item = &str>| {
        let escaped: Vec<String> = fields.map(csv_field).collect();
        out.push_str(&escaped.join(","));
        out.push_str("\r\n");
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(AsRef::as_ref));
    }
    out
}

/// A CSV cell for an optional value: the value, or empty.
pub fn optional_cell(value: Option<impl ToString>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

fn csv_field(field: &str) -> String {
    let formula = field.starts_with(['=', '+', '-', '@']) && field.parse::<f64>().is_err();
    let field = if formula {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// The graph as a Mermaid `flowchart LR`, with the same labels as [`to_dot`].
pub fn to_mermaid(graph: &PathGraph) -> String {
    let mut out = String::from("flowchart LR\n");
    for node in &graph.nodes {
        let label = node_text(node)
            .map(|line| mermaid_escape(&line))
            .join("<br>");
        writeln!(out, "  n{}[\"{label}\"]", node.id).expect("writing to a String");
    }
    for edge in &graph.edges {
        let label = mermaid_escape(&edge_text(edge));
        writeln!(out, "  n{} -->|\"{label}\"| n{}", edge.from, edge.to)
            .expect("writing to a String");
    }
    out
}

/// A duration in the largest unit that keeps it readable: `45s`, `12m`, `3.5h`, `2.1d`.
pub fn human_duration(seconds: f64) -> String {
    match seconds {
        s if s < 90.0 => format!("{s:.0}s"),
        s if s < 5_400.0 => format!("{:.0}m", s / 60.0),
        s if s < 172_800.0 => format!("{:.1}h", s / 3_600.0),
        s => format!("{:.1}d", s / 86_400.0),
    }
}

/// The lines of a node's label, unescaped: `[step. ]label` and the customer count.
fn node_text(node: &PathNode) -> [String; 2] {
    let name = match node.step {
        Some(step) => format!("{step}. {}", node.label),
        None => node.label.clone(),
    };
    [name, node.customers.to_string()]
}

fn edge_text(edge: &PathEdge) -> String {
    match edge.median_seconds {
        Some(seconds) => format!("{} ({})", edge.customers, human_duration(seconds)),
        None => edge.customers.to_string(),
    }
}

/// Escapes text for a DOT double-quoted string: backslashes (which DOT reads as escapes such as
/// `\N`) and quotes are escaped, control characters such as newlines become spaces.
fn dot_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Mermaid quoted label: characters Mermaid or its HTML labels would read
/// (quotes, `#`, `<`, `>`, `&`, `|`, backticks, brackets) become `#code;` entities, control
/// characters such as newlines become spaces.
fn mermaid_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '#' | '<' | '>' | '&' | '|' | '`' | '[' | ']' | '{' | '}' => {
                write!(out, "#{};", u32::from(c)).expect("writing to a String");
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::GraphView;

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let csv = to_csv(
            &["touchpoint", "customers"],
            [
                vec!["site_visit", "12"],
                vec!["say \"hi\", then", "-3"],
                vec!["=HYPERLINK(1)", "line\nbreak"],
            ],
        );
        assert_eq!(
            csv,
            "touchpoint,customers\r\nsite_visit,12\r\n\"say \"\"hi\"\", then\",-3\r\n'=HYPERLINK(1),\"line\nbreak\"\r\n"
        );
    }

    const HOSTILE: &str = "x\"] --> evil[\"<b>#quot;\\N\nnext|`{}`";

    fn graph(label: &str) -> PathGraph {
        let node = |id, label: &str, step| PathNode {
            id,
            label: label.to_owned(),
            step,
            customers: 12,
            visits: 12,
        };
        PathGraph {
            view: GraphView::Positional,
            customers: 12,
            nodes: vec![
                node(0, "site_visit (web)", Some(1)),
                node(1, label, Some(2)),
            ],
            edges: vec![PathEdge {
                from: 0,
                to: 1,
                customers: 12,
                transitions: 12,
                median_seconds: Some(12_600.0),
            }],
        }
    }

    #[test]
    fn dot_has_counts_and_human_times() {
        let dot = to_dot(&graph("purchase"));
        assert_eq!(
            dot,
            "digraph scribble {\n  rankdir=LR;\n  node [shape=box];\n\
             \x20 n0 [label=\"1. site_visit (web)\\n12\"];\n\
             \x20 n1 [label=\"2. purchase\\n12\"];\n\
             \x20 n0 -> n1 [label=\"12 (3.5h)\"];\n}\n"
        );
    }

    #[test]
    fn mermaid_has_counts_and_human_times() {
        let mermaid = to_mermaid(&graph("purchase"));
        assert_eq!(
            mermaid,
            "flowchart LR\n  n0[\"1. site_visit (web)<br>12\"]\n  n1[\"2. purchase<br>12\"]\n  n0 -->|\"12 (3.5h)\"| n1\n"
        );
    }

    #[test]
    fn hostile_labels_stay_inside_their_strings() {
        let dot = to_dot(&graph(HOSTILE));
        let line = dot.lines().find(|line| line.starts_with("  n1 ")).unwrap();
        assert_eq!(
            line,
            "  n1 [label=\"2. x\\\"] --> evil[\\\"<b>#quot;\\\\N next|`{}`\\n12\"];"
        );
        assert_eq!(
            dot.lines().count(),
            7,
            "the newline did not start a statement:\n{dot}"
        );

        let mermaid = to_mermaid(&graph(HOSTILE));
        let line = mermaid
            .lines()
            .find(|line| line.starts_with("  n1"))
            .unwrap();
        assert_eq!(
            line,
            "  n1[\"2. x#34;#93; --#62; evil#91;#34;#60;b#62;#35;quot;\\N next#124;#96;#123;#125;#96;<br>12\"]"
        );
        assert_eq!(
            mermaid.lines().count(),
            4,
            "the newline did not start a statement:\n{mermaid}"
        );
    }

    #[test]
    fn durations_read_in_a_human_unit() {
        assert_eq!(human_duration(45.0), "45s");
        assert_eq!(human_duration(720.0), "12m");
        assert_eq!(human_duration(12_600.0), "3.5h");
        assert_eq!(human_duration(181_440.0), "2.1d");
    }

    #[test]
    fn edges_without_a_time_show_only_customers() {
        let mut plain = graph("purchase");
        plain.edges[0].median_seconds = None;
        assert!(to_dot(&plain).contains("n0 -> n1 [label=\"12\"];"));
        assert!(to_mermaid(&plain).contains("n0 -->|\"12\"| n1"));
    }
}
