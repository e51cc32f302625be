//! Path graphs: where customers go, as a graph built on petgraph. Each customer contributes one
//! path, cut from their journey by [`PathOptions`]; the paths are then drawn in one of two views.
//!
//! - The **positional** view ([`positional_graph`]) is acyclic and Sankey-ready: a node is a label
//!   at a step number, an edge joins step `k` to step `k + 1`, customer counts add up at every step.
//! - The **state** view ([`state_graph`]) is the scribble itself: one node per label, loops and
//!   back-edges kept, between a virtual `(start)` and `(end)`.
//!
//! Labels are interned to integers while counting, so a report over a million steps does no
//! per-step string work.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use serde::Serialize;

use crate::journey::{JourneySet, Step};
use crate::metrics::median;
use crate::symbols::Sym;

/// Label of the positional node that groups the labels beyond the top N of a step. Real
/// touchpoint names cannot contain parentheses, so virtual labels never clash with them.
pub const OTHER: &str = "(other)";
/// Label of the positional node a path goes to when the customer's journey ends early.
pub const DROP_OFF: &str = "(drop-off)";
/// Label of the state node every path starts from.
pub const START: &str = "(start)";
/// Label of the state node a path goes to when the customer's journey ends with it.
pub const END: &str = "(end)";

/// What a label says besides the touchpoint name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Breakdown {
    /// `site_visit`.
    #[default]
    None,
    /// `site_visit (web)`: the same touchpoint on different channels gives different nodes.
    Channel,
}

/// Which part of each journey becomes its path, and how paths are drawn.
///
/// Repeats are collapsed first; then the path is cut from the (collapsed) journey:
/// - neither `start` nor `end`: the first `max_steps` steps;
/// - `start` only: from the first occurrence of `start`, forward, at most `max_steps` steps;
/// - `end` only: the last `max_steps` steps up to and including the first occurrence of `end`;
/// - both: from the first `start` to the first `end` after it, cut to `max_steps` steps from
///   `start`.
///
/// Customers without the start (or end, or both in that order) have no path and are not counted.
/// `start` and `end` match the touchpoint whatever the breakdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathOptions {
    pub start: Option<String>,
    pub end: Option<String>,
    /// Longest path, in steps. 0 gives an empty graph. Default 5.
    pub max_steps: usize,
    /// Positional view only: at each step, the labels with the most customers that are shown
    /// (ties broken by name); the rest are grouped as [`OTHER`]. `None` shows all. Default
    /// `Some(6)`, about what a Sankey column stays readable with.
    pub top_n: Option<usize>,
    /// Merge consecutive steps with the same label into one, keeping the first step's time.
    pub collapse_repeats: bool,
    /// Show where journeys end: [`DROP_OFF`] nodes in the positional view, the [`END`] node in the
    /// state view. Default true.
    pub drop_offs: bool,
    pub breakdown: Breakdown,
}

impl Default for PathOptions {
    fn default() -> Self {
        Self {
            start: None,
            end: None,
            max_steps: 5,
            top_n: Some(6),
            collapse_repeats: false,
            drop_offs: true,
            breakdown: Breakdown::None,
        }
    }
}

/// Which view a [`PathGraph`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphView {
    Positional,
    State,
}

/// A path graph ready to serialize. Nodes are ordered by step, then customers (most first), then
/// label, and their `id` is their index in `nodes`; edges are ordered by `from`, then customers
/// (most first), then `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathGraph {
    pub view: GraphView,
    /// Customers with a path.
    pub customers: usize,
    pub nodes: Vec<PathNode>,
    pub edges: Vec<PathEdge>,
}

/// One node of a [`PathGraph`]: a label, at a step in the positional view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathNode {
    pub id: usize,
    pub label: String,
    /// Step number from 1 in the positional view; `None` in the state view.
    pub step: Option<usize>,
    /// Distinct customers passing through the node.
    pub customers: usize,
    /// Passes through the node; equal to `customers` in the positional view.
    pub visits: usize,
}

/// One edge of a [`PathGraph`], between node ids.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathEdge {
    pub from: usize,
    pub to: usize,
    /// Distinct customers taking the edge.
    pub customers: usize,
    /// Times the edge was taken; equal to `customers` in the positional view.
    pub transitions: usize,
    /// Median time between the two steps, over all transitions. `None` on edges from or to a
    /// virtual node.
    pub median_seconds: Option<f64>,
}

/// The positional (Sankey) view.
///
/// Steps are numbered from 1 at the path's first step, except with `end` and no `start`
/// (the backward view): there the end touchpoint is step `max_steps` for every customer, and a
/// shorter path (a journey that began less than `max_steps` steps before the end) starts at a
/// later step. So at every node, customers equal the customers on incoming edges plus the paths
/// that begin there (all at step 1 in the forward views).
///
/// With `drop_offs`, a forward path (no `end` set) shorter than `max_steps` ends in an edge to
/// a [`DROP_OFF`] node at the next step: the journey ended there. A path that reached `max_steps`
/// gets none, whether or not the journey went on. With `end` set every path ends at the end
/// touchpoint by construction, so there are no drop-offs. Then, in forward views, customers at
/// every node below the last step equal the customers on its outgoing edges.
pub fn positional_graph(set: &JourneySet, opts: &PathOptions) -> PathGraph {
    let mut paths = Paths::extract(set, opts);
    let backward = opts.start.is_none() && opts.end.is_some();
    let first_step = |length: usize| {
        if backward {
            opts.max_steps + 1 - length
        } else {
            1
        }
    };
    let shown = opts
        .top_n
        .map(|top_n| top_labels(&paths, top_n, first_step));
    let other = paths.labels.add_virtual(OTHER);
    let drop_off = paths.labels.add_virtual(DROP_OFF);
    let shown_label = |step: usize, label: u32| match &shown {
        Some(kept) if !kept.contains(&(step, label)) => other,
        _ => label,
    };

    let mut tally = GraphTally::default();
    for (path, (steps, journey_over)) in paths.iter().enumerate() {
        let first = first_step(steps.len());
        let mut previous: Option<(NodeIndex, i64)> = None;
        for (offset, step) in steps.iter().enumerate() {
            let number = first + offset;
            let node = tally.visit(Some(number), shown_label(number, step.label), path);
            if let Some((from, from_ms)) = previous {
                tally.transition(from, node, path, Some(seconds_between(from_ms, step.at_ms)));
            }
            previous = Some((node, step.at_ms));
        }
        let dropped = opts.drop_offs && opts.end.is_none() && steps.len() < opts.max_steps;
        debug_assert!(
            !dropped || journey_over,
            "a forward path is only short when its journey is"
        );
        if dropped {
            let (last, _) = previous.expect("paths are never empty");
            let node = tally.visit(Some(first + steps.len()), drop_off, path);
            tally.transition(last, node, path, None);
        }
    }
    tally.finish(GraphView::Positional, paths.len(), &paths.labels)
}

/// The state view: one node per label, plus [`START`] (every path begins there) and, with
/// `drop_offs`, [`END`], which a path goes to when its last step is the last of the customer's
/// (collapsed) journey; a path cut short by `max_steps` or `end` does not. `top_n` does not
/// apply.
pub fn state_graph(set: &JourneySet, opts: &PathOptions) -> PathGraph {
    let mut paths = Paths::extract(set, opts);
    let start = paths.labels.add_virtual(START);
    let end = paths.labels.add_virtual(END);

    let mut tally = GraphTally::default();
    for (path, (steps, journey_over)) in paths.iter().enumerate() {
        let mut previous_node = tally.visit(None, start, path);
        let mut previous_ms: Option<i64> = None;
        for step in steps {
            let node = tally.visit(None, step.label, path);
            let seconds = previous_ms.map(|from_ms| seconds_between(from_ms, step.at_ms));
            tally.transition(previous_node, node, path, seconds);
            (previous_node, previous_ms) = (node, Some(step.at_ms));
        }
        if opts.drop_offs && journey_over {
            let node = tally.visit(None, end, path);
            tally.transition(previous_node, node, path, None);
        }
    }
    tally.finish(GraphView::State, paths.len(), &paths.labels)
}

fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms) as f64 / 1000.0
}

/// The `(step, label)` pairs within the top `top_n` labels of their step by customers, ties
/// broken by label name.
fn top_labels(
    paths: &Paths,
    top_n: usize,
    first_step: impl Fn(usize) -> usize,
) -> HashSet<(usize, u32)> {
    let mut customers: HashMap<(usize, u32), usize> = HashMap::new();
    for (steps, _) in paths.iter() {
        let first = first_step(steps.len());
        for (offset, step) in steps.iter().enumerate() {
            *customers.entry((first + offset, step.label)).or_default() += 1;
        }
    }
    top_per_step(customers, top_n, |label| paths.labels.name(*label))
}

/// Of `customers` per `(step, label)`, the pairs within the top `top_n` of their step: most
/// customers first, ties broken by `name`. The positional view shows these and groups the rest
/// as [`OTHER`]; stores that count in their own query language rank with this too.
pub fn top_per_step<'a, L>(
    customers: HashMap<(usize, L), usize>,
    top_n: usize,
    name: impl Fn(&L) -> &'a str,
) -> HashSet<(usize, L)>
where
    L: Eq + std::hash::Hash,
{
    let mut ranked: Vec<((usize, L), usize)> = customers.into_iter().collect();
    ranked.sort_by(
        |((step_a, label_a), count_a), ((step_b, label_b), count_b)| {
            step_a
                .cmp(step_b)
                .then(count_b.cmp(count_a))
                .then_with(|| name(label_a).cmp(name(label_b)))
        },
    );
    let mut kept = HashSet::new();
    let mut current: Option<(usize, usize)> = None;
    for ((step, label), _) in ranked {
        let taken = match current {
            Some((current_step, taken)) if current_step == step => taken,
            _ => 0,
        };
        current = Some((step, taken + 1));
        if taken < top_n {
            kept.insert((step, label));
        }
    }
    kept
}

/// Display labels of one report, interned. Virtual labels are added unconditionally, so they
/// never merge with a real label of the same text.
#[derive(Default)]
struct Labels {
    names: Vec<String>,
    /// Touchpoint, or touchpoint and channel, packed into one integer.
    by_key: HashMap<u64, u32>,
}

impl Labels {
    fn of(&mut self, set: &JourneySet, step: &Step, breakdown: Breakdown) -> u32 {
        let key = match breakdown {
            Breakdown::None => u64::from(step.touchpoint),
            Breakdown::Channel => u64::from(step.touchpoint) << 32 | u64::from(step.channel),
        };
        if let Some(&label) = self.by_key.get(&key) {
            return label;
        }
        let touchpoint = set.symbols.name(step.touchpoint);
        let name = match breakdown {
            Breakdown::None => touchpoint.to_owned(),
            Breakdown::Channel => format!("{touchpoint} ({})", set.symbols.name(step.channel)),
        };
        let label = self.add_virtual(&name);
        self.by_key.insert(key, label);
        label
    }

    fn add_virtual(&mut self, name: &str) -> u32 {
        let label = u32::try_from(self.names.len()).expect("fewer than 2^32 labels");
        self.names.push(name.to_owned());
        label
    }

    fn name(&self, label: u32) -> &str {
        &self.names[label as usize]
    }
}

#[derive(Debug, Clone, Copy)]
struct PathStep {
    label: u32,
    at_ms: i64,
}

/// Every customer's path, back to back.
struct Paths {
    labels: Labels,
    steps: Vec<PathStep>,
    /// Per path: where it ends in `steps` (it starts where the previous one ends), and whether
    /// its last step is the last of the customer's collapsed journey.
    ends: Vec<(usize, bool)>,
}

impl Paths {
    fn extract(set: &JourneySet, opts: &PathOptions) -> Self {
        let mut paths = Self {
            labels: Labels::default(),
            steps: Vec::new(),
            ends: Vec::new(),
        };
        // `None` when a start or end is asked for that no journey contains: nobody has a path.
        let anchor = |name: &Option<String>| match name {
            None => Some(None),
            Some(name) => set.symbols.get(name).map(Some),
        };
        let (Some(start), Some(end)) = (anchor(&opts.start), anchor(&opts.end)) else {
            return paths;
        };
        let mut touchpoints: Vec<Sym> = Vec::new();
        let mut labeled: Vec<PathStep> = Vec::new();
        for journey in &set.journeys {
            touchpoints.clear();
            labeled.clear();
            for step in &journey.steps {
                let label = paths.labels.of(set, step, opts.breakdown);
                if opts.collapse_repeats && labeled.last().is_some_and(|last| last.label == label) {
                    continue;
                }
                touchpoints.push(step.touchpoint);
                labeled.push(PathStep {
                    label,
                    at_ms: step.at_ms,
                });
            }
            let Some(window) = window(&touchpoints, start, end, opts.max_steps) else {
                continue;
            };
            let journey_over = window.end == labeled.len();
            paths.steps.extend_from_slice(&labeled[window]);
            paths.ends.push((paths.steps.len(), journey_over));
        }
        paths
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each path's steps and whether the journey is over with its last step.
    fn iter(&self) -> impl Iterator<Item = (&[PathStep], bool)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(end, _)| end));
        starts
            .zip(&self.ends)
            .map(|(start, &(end, journey_over))| (&self.steps[start..end], journey_over))
    }
}

/// The part of a journey (its touchpoints, in order) that is its path, as [`PathOptions`]
/// describes; `None` when the journey has no path.
fn window(
    touchpoints: &[Sym],
    start: Option<Sym>,
    end: Option<Sym>,
    max_steps: usize,
) -> Option<Range<usize>> {
    let find = |from: usize, wanted: Sym| {
        touchpoints[from..]
            .iter()
            .position(|&touchpoint| touchpoint == wanted)
            .map(|offset| from + offset)
    };
    let range = match (start, end) {
        (None, None) => 0..touchpoints.len().min(max_steps),
        (Some(start), None) => {
            let first = find(0, start)?;
            first..touchpoints.len().min(first.saturating_add(max_steps))
        }
        (None, Some(end)) => {
            let last = find(0, end)?;
            (last + 1).saturating_sub(max_steps)..last + 1
        }
        (Some(start), Some(end)) => {
            let first = find(0, start)?;
            let last = find(first + 1, end)?;
            first..(last + 1).min(first.saturating_add(max_steps))
        }
    };
    (!range.is_empty()).then_some(range)
}

/// Distinct customers (paths) and passes, counted without a set per node: a path is new to a
/// node or edge when it is not the last path recorded there, since paths are walked one by one.
#[derive(Debug, Default)]
struct Tally {
    customers: usize,
    passes: usize,
    last_path: Option<usize>,
}

impl Tally {
    fn record(&mut self, path: usize) {
        self.passes += 1;
        if self.last_path != Some(path) {
            self.customers += 1;
            self.last_path = Some(path);
        }
    }
}

struct NodeTally {
    step: Option<usize>,
    label: u32,
    tally: Tally,
}

#[derive(Default)]
struct EdgeTally {
    tally: Tally,
    seconds: Vec<f64>,
}

/// A path graph while paths are walked into it.
#[derive(Default)]
struct GraphTally {
    graph: DiGraph<NodeTally, EdgeTally>,
    nodes: HashMap<(Option<usize>, u32), NodeIndex>,
    edges: HashMap<(NodeIndex, NodeIndex), EdgeIndex>,
}

impl GraphTally {
    /// Records that `path` passes through the node for `label` at `step`.
    fn visit(&mut self, step: Option<usize>, label: u32, path: usize) -> NodeIndex {
        let graph = &mut self.graph;
        let node = *self.nodes.entry((step, label)).or_insert_with(|| {
            graph.add_node(NodeTally {
                step,
                label,
                tally: Tally::default(),
            })
        });
        self.graph[node].tally.record(path);
        node
    }

    /// Records that `path` goes from `from` to `to`, `seconds` apart when both are real steps.
    fn transition(&mut self, from: NodeIndex, to: NodeIndex, path: usize, seconds: Option<f64>) {
        let graph = &mut self.graph;
        let edge = *self
            .edges
            .entry((from, to))
            .or_insert_with(|| graph.add_edge(from, to, EdgeTally::default()));
        let weight = &mut self.graph[edge];
        weight.tally.record(path);
        weight.seconds.extend(seconds);
    }

    fn finish(self, view: GraphView, customers: usize, labels: &Labels) -> PathGraph {
        let (nodes, edges) = self.graph.into_nodes_edges();
        let node_counts = nodes
            .iter()
            .map(|node| NodeCount {
                step: node.weight.step,
                label: labels.name(node.weight.label).to_owned(),
                customers: node.weight.tally.customers,
                visits: node.weight.tally.passes,
            })
            .collect();
        let edge_counts = edges
            .into_iter()
            .map(|edge| {
                let (from, to) = (edge.source().index(), edge.target().index());
                let mut weight = edge.weight;
                EdgeCount {
                    from,
                    to,
                    customers: weight.tally.customers,
                    transitions: weight.tally.passes,
                    median_seconds: median(&mut weight.seconds),
                }
            })
            .collect();
        PathGraph::from_counts(view, customers, node_counts, edge_counts)
    }
}

/// A node counted by whoever walked the paths: this module, or a store's query.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCount {
    pub step: Option<usize>,
    pub label: String,
    pub customers: usize,
    pub visits: usize,
}

/// An edge counted by whoever walked the paths, between indexes into its node list.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeCount {
    pub from: usize,
    pub to: usize,
    pub customers: usize,
    pub transitions: usize,
    pub median_seconds: Option<f64>,
}

impl PathGraph {
    /// The graph of counted `nodes` and `edges` (edges index into `nodes`; labels unique per
    /// step), ordered and numbered as [`PathGraph`] documents, so that equal counts give equal
    /// graphs whoever counted them.
    pub fn from_counts(
        view: GraphView,
        customers: usize,
        nodes: Vec<NodeCount>,
        edges: Vec<EdgeCount>,
    ) -> PathGraph {
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&nodes[a], &nodes[b]);
            a.step
                .cmp(&b.step)
                .then(b.customers.cmp(&a.customers))
                .then_with(|| a.label.cmp(&b.label))
        });
        let mut id_of = vec![0; nodes.len()];
        for (id, &index) in order.iter().enumerate() {
            id_of[index] = id;
        }
        let mut nodes: Vec<Option<NodeCount>> = nodes.into_iter().map(Some).collect();
        let nodes: Vec<PathNode> = order
            .iter()
            .enumerate()
            .map(|(id, &index)| {
                let node = nodes[index].take().expect("each node is placed once");
                PathNode {
                    id,
                    label: node.label,
                    step: node.step,
                    customers: node.customers,
                    visits: node.visits,
                }
            })
            .collect();
        let mut edges: Vec<PathEdge> = edges
            .into_iter()
            .map(|edge| PathEdge {
                from: id_of[edge.from],
                to: id_of[edge.to],
                customers: edge.customers,
                transitions: edge.transitions,
                median_seconds: edge.median_seconds,
            })
            .collect();
        edges.sort_by(|a, b| {
            a.from
                .cmp(&b.from)
                .then(b.customers.cmp(&a.customers))
                .then(a.to.cmp(&b.to))
        });
        PathGraph {
            view,
            customers,
            nodes,
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const MINUTE: i64 = 60_000;

    /// Four customers. Minutes: A 0, 10, 60, 120, 180; B 0, 5, 20; C 0, 30, 1440, 2880; D 0, 2.
    fn shop() -> JourneySet {
        let step = |touchpoint, minutes: i64| {
            (
                touchpoint,
                crate::event::default_channel(touchpoint),
                minutes * MINUTE,
            )
        };
        JourneySet::from_sequences([
            vec![
                step("ad_click", 0),
                step("site_visit", 10),
                step("email_open", 60),
                step("site_visit", 120),
                step("purchase", 180),
            ],
            vec![
                step("ad_click", 0),
                step("site_visit", 5),
                step("site_visit", 20),
            ],
            vec![
                step("email_open", 0),
                step("site_visit", 30),
                step("email_open", 1440),
                step("purchase", 2880),
            ],
            vec![step("site_visit", 0), step("chat_started", 2)],
        ])
    }

    fn options(change: impl FnOnce(&mut PathOptions)) -> PathOptions {
        let mut options = PathOptions::default();
        change(&mut options);
        options
    }

    fn name(graph: &PathGraph, id: usize) -> String {
        let node = &graph.nodes[id];
        match node.step {
            Some(step) => format!("{step}:{}", node.label),
            None => node.label.clone(),
        }
    }

    /// Nodes in output order as `(name, customers, visits)`.
    fn nodes(graph: &PathGraph) -> Vec<(String, usize, usize)> {
        graph
            .nodes
            .iter()
            .map(|node| (name(graph, node.id), node.customers, node.visits))
            .collect()
    }

    /// Edges as `"from -> to" => (customers, transitions, median seconds)`.
    fn edges(graph: &PathGraph) -> BTreeMap<String, (usize, usize, Option<f64>)> {
        graph
            .edges
            .iter()
            .map(|edge| {
                let key = format!("{} -> {}", name(graph, edge.from), name(graph, edge.to));
                (key, (edge.customers, edge.transitions, edge.median_seconds))
            })
            .collect()
    }

    /// Expected positional nodes: customers and visits are equal there.
    fn positional_nodes(expected: &[(&str, usize)]) -> Vec<(String, usize, usize)> {
        expected
            .iter()
            .map(|&(name, customers)| (name.to_owned(), customers, customers))
            .collect()
    }

    /// Expected positional edges: customers and transitions are equal there.
    fn positional_edges(
        expected: &[(&str, usize, Option<f64>)],
    ) -> BTreeMap<String, (usize, usize, Option<f64>)> {
        expected
            .iter()
            .map(|&(edge, customers, median)| (edge.to_owned(), (customers, customers, median)))
            .collect()
    }

    #[test]
    fn positional_view_of_whole_journeys_adds_up_with_drop_offs() {
        let graph = positional_graph(&shop(), &PathOptions::default());
        assert_eq!(graph.view, GraphView::Positional);
        assert_eq!(graph.customers, 4);
        assert_eq!(
            nodes(&graph),
            positional_nodes(&[
                ("1:ad_click", 2),
                ("1:email_open", 1),
                ("1:site_visit", 1),
                ("2:site_visit", 3),
                ("2:chat_started", 1),
                ("3:email_open", 2),
                ("3:(drop-off)", 1),
                ("3:site_visit", 1),
                ("4:(drop-off)", 1),
                ("4:purchase", 1),
                ("4:site_visit", 1),
                ("5:(drop-off)", 1),
                ("5:purchase", 1),
            ])
        );
        assert_eq!(
            edges(&graph),
            positional_edges(&[
                ("1:ad_click -> 2:site_visit", 2, Some(450.0)),
                ("1:email_open -> 2:site_visit", 1, Some(1800.0)),
                ("1:site_visit -> 2:chat_started", 1, Some(120.0)),
                ("2:site_visit -> 3:email_open", 2, Some(43_800.0)),
                ("2:site_visit -> 3:site_visit", 1, Some(900.0)),
                ("2:chat_started -> 3:(drop-off)", 1, None),
                ("3:email_open -> 4:site_visit", 1, Some(3600.0)),
                ("3:email_open -> 4:purchase", 1, Some(86_400.0)),
                ("3:site_visit -> 4:(drop-off)", 1, None),
                ("4:site_visit -> 5:purchase", 1, Some(3600.0)),
                ("4:purchase -> 5:(drop-off)", 1, None),
            ])
        );
        let edge_order: Vec<(usize, usize)> = graph
            .edges
            .iter()
            .map(|edge| (edge.from, edge.to))
            .collect();
        let mut sorted = edge_order.clone();
        sorted.sort_by_key(|&(from, _)| from);
        assert_eq!(edge_order, sorted, "edges are ordered by their source node");

        let without = positional_graph(&shop(), &options(|o| o.drop_offs = false));
        assert!(without.nodes.iter().all(|node| node.label != DROP_OFF));
        assert_eq!(without.edges.len(), 8);
    }

    #[test]
    fn state_view_keeps_loops_and_repeats() {
        let graph = state_graph(&shop(), &PathOptions::default());
        assert_eq!(graph.view, GraphView::State);
        assert_eq!(graph.customers, 4);
        assert_eq!(
            nodes(&graph),
            [
                ("(end)", 4, 4),
                ("(start)", 4, 4),
                ("site_visit", 4, 6),
                ("ad_click", 2, 2),
                ("email_open", 2, 3),
                ("purchase", 2, 2),
                ("chat_started", 1, 1),
            ]
            .map(|(name, customers, visits)| (name.to_owned(), customers, visits))
        );
        let expected: BTreeMap<String, (usize, usize, Option<f64>)> = [
            ("(start) -> ad_click", (2, 2, None)),
            ("(start) -> email_open", (1, 1, None)),
            ("(start) -> site_visit", (1, 1, None)),
            ("ad_click -> site_visit", (2, 2, Some(450.0))),
            ("site_visit -> email_open", (2, 2, Some(43_800.0))),
            ("email_open -> site_visit", (2, 2, Some(2700.0))),
            ("site_visit -> purchase", (1, 1, Some(3600.0))),
            ("site_visit -> site_visit", (1, 1, Some(900.0))),
            ("site_visit -> chat_started", (1, 1, Some(120.0))),
            ("email_open -> purchase", (1, 1, Some(86_400.0))),
            ("purchase -> (end)", (2, 2, None)),
            ("site_visit -> (end)", (1, 1, None)),
            ("chat_started -> (end)", (1, 1, None)),
        ]
        .into_iter()
        .map(|(edge, counts)| (edge.to_owned(), counts))
        .collect();
        assert_eq!(edges(&graph), expected);
        assert_eq!(
            graph
                .nodes
                .iter()
                .map(|node| node.step)
                .collect::<HashSet<_>>(),
            HashSet::from([None])
        );

        let without = state_graph(&shop(), &options(|o| o.drop_offs = false));
        assert!(without.nodes.iter().all(|node| node.label != END));
        assert_eq!(without.edges.len(), 10);
    }

    #[test]
    fn start_reads_forward_from_the_first_occurrence() {
        let graph = positional_graph(
            &shop(),
            &options(|o| {
                o.start = Some("site_visit".into());
                o.max_steps = 3;
            }),
        );
        assert_eq!(graph.customers, 4);
        assert_eq!(
            nodes(&graph),
            positional_nodes(&[
                ("1:site_visit", 4),
                ("2:email_open", 2),
                ("2:chat_started", 1),
                ("2:site_visit", 1),
                ("3:(drop-off)", 2),
                ("3:purchase", 1),
                ("3:site_visit", 1),
            ])
        );
        assert_eq!(
            edges(&graph),
            positional_edges(&[
                ("1:site_visit -> 2:email_open", 2, Some(43_800.0)),
                ("1:site_visit -> 2:chat_started", 1, Some(120.0)),
                ("1:site_visit -> 2:site_visit", 1, Some(900.0)),
                ("2:email_open -> 3:site_visit", 1, Some(3600.0)),
                ("2:email_open -> 3:purchase", 1, Some(86_400.0)),
                ("2:chat_started -> 3:(drop-off)", 1, None),
                ("2:site_visit -> 3:(drop-off)", 1, None),
            ])
        );
    }

    #[test]
    fn end_reads_backward_with_the_end_as_the_last_step() {
        let opts = options(|o| o.end = Some("purchase".into()));
        let graph = positional_graph(&shop(), &opts);
        assert_eq!(graph.customers, 2, "B and D never purchase");
        assert_eq!(
            nodes(&graph),
            positional_nodes(&[
                ("1:ad_click", 1),
                ("2:email_open", 1),
                ("2:site_visit", 1),
                ("3:email_open", 1),
                ("3:site_visit", 1),
                ("4:email_open", 1),
                ("4:site_visit", 1),
                ("5:purchase", 2),
            ])
        );
        assert_eq!(
            edges(&graph),
            positional_edges(&[
                ("1:ad_click -> 2:site_visit", 1, Some(600.0)),
                ("2:site_visit -> 3:email_open", 1, Some(3000.0)),
                ("3:email_open -> 4:site_visit", 1, Some(3600.0)),
                ("4:site_visit -> 5:purchase", 1, Some(3600.0)),
                ("2:email_open -> 3:site_visit", 1, Some(1800.0)),
                ("3:site_visit -> 4:email_open", 1, Some(84_600.0)),
                ("4:email_open -> 5:purchase", 1, Some(86_400.0)),
            ])
        );

        let state = |end: &str| state_graph(&shop(), &options(|o| o.end = Some(end.into())));
        let visits = state("site_visit");
        assert_eq!(visits.customers, 4);
        assert!(
            visits.nodes.iter().all(|node| node.label != END),
            "every journey goes on after its first visit"
        );
        let chats = edges(&state("chat_started"));
        assert_eq!(
            chats["chat_started -> (end)"],
            (1, 1, None),
            "D's journey ends with its chat"
        );
    }

    #[test]
    fn start_and_end_keep_the_stretch_between_them() {
        let between = |max_steps| {
            positional_graph(
                &shop(),
                &options(|o| {
                    o.start = Some("site_visit".into());
                    o.end = Some("purchase".into());
                    o.max_steps = max_steps;
                }),
            )
        };
        let graph = between(5);
        assert_eq!(graph.customers, 2);
        assert_eq!(
            nodes(&graph),
            positional_nodes(&[
                ("1:site_visit", 2),
                ("2:email_open", 2),
                ("3:purchase", 1),
                ("3:site_visit", 1),
                ("4:purchase", 1),
            ])
        );
        assert_eq!(
            edges(&graph),
            positional_edges(&[
                ("1:site_visit -> 2:email_open", 2, Some(43_800.0)),
                ("2:email_open -> 3:purchase", 1, Some(86_400.0)),
                ("2:email_open -> 3:site_visit", 1, Some(3600.0)),
                ("3:site_visit -> 4:purchase", 1, Some(3600.0)),
            ])
        );
        let short = between(2);
        assert_eq!(short.customers, 2);
        assert_eq!(
            edges(&short),
            positional_edges(&[("1:site_visit -> 2:email_open", 2, Some(43_800.0))])
        );
    }

    #[test]
    fn customers_without_the_anchors_have_no_path() {
        for (start, end) in [
            (Some("webinar"), None),
            (None, Some("never_seen")),
            (Some("purchase"), Some("ad_click")),
        ] {
            let opts = options(|o| {
                o.start = start.map(str::to_owned);
                o.end = end.map(str::to_owned);
            });
            for graph in [
                positional_graph(&shop(), &opts),
                state_graph(&shop(), &opts),
            ] {
                assert_eq!(graph.customers, 0, "{start:?} {end:?}");
                assert!(
                    graph.nodes.is_empty() && graph.edges.is_empty(),
                    "{start:?} {end:?}"
                );
            }
        }
        assert_eq!(
            positional_graph(&shop(), &options(|o| o.max_steps = 0)).customers,
            0
        );
    }

    #[test]
    fn labels_beyond_the_top_n_of_a_step_become_other() {
        let graph = positional_graph(&shop(), &options(|o| o.top_n = Some(1)));
        assert_eq!(
            nodes(&graph),
            positional_nodes(&[
                ("1:(other)", 2),
                ("1:ad_click", 2),
                ("2:site_visit", 3),
                ("2:(other)", 1),
                ("3:email_open", 2),
                ("3:(drop-off)", 1),
                ("3:(other)", 1),
                ("4:(drop-off)", 1),
                ("4:(other)", 1),
                ("4:purchase", 1),
                ("5:(drop-off)", 1),
                ("5:purchase", 1),
            ])
        );
        let customers: BTreeMap<String, usize> = edges(&graph)
            .into_iter()
            .map(|(edge, (customers, _, _))| (edge, customers))
            .collect();
        let expected: BTreeMap<String, usize> = [
            ("1:ad_click -> 2:site_visit", 2),
            ("1:(other) -> 2:site_visit", 1),
            ("1:(other) -> 2:(other)", 1),
            ("2:site_visit -> 3:email_open", 2),
            ("2:site_visit -> 3:(other)", 1),
            ("2:(other) -> 3:(drop-off)", 1),
            ("3:email_open -> 4:(other)", 1),
            ("3:email_open -> 4:purchase", 1),
            ("3:(other) -> 4:(drop-off)", 1),
            ("4:(other) -> 5:purchase", 1),
            ("4:purchase -> 5:(drop-off)", 1),
        ]
        .into_iter()
        .map(|(edge, customers)| (edge.to_owned(), customers))
        .collect();
        assert_eq!(
            customers, expected,
            "ties (step 4: purchase and site_visit) keep the first name"
        );
    }

    #[test]
    fn collapsing_merges_repeats_and_keeps_the_first_time() {
        let set = JourneySet::from_sequences([
            vec![
                ("a", "web", 0),
                ("a", "web", MINUTE),
                ("b", "web", 5 * MINUTE),
                ("b", "web", 6 * MINUTE),
                ("a", "web", 10 * MINUTE),
            ],
            vec![
                ("a", "web", 0),
                ("b", "web", MINUTE),
                ("a", "web", 2 * MINUTE),
                ("b", "web", 3 * MINUTE),
                ("a", "web", 4 * MINUTE),
            ],
        ]);
        let state = state_graph(&set, &PathOptions::default());
        let edges_of = |graph: &PathGraph| {
            edges(graph)
                .into_iter()
                .filter(|(edge, _)| !edge.contains('('))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            edges_of(&state),
            [
                ("a -> a", (1, 1, Some(60.0))),
                ("a -> b", (2, 3, Some(60.0))),
                ("b -> a", (2, 3, Some(60.0))),
                ("b -> b", (1, 1, Some(60.0))),
            ]
            .map(|(edge, counts)| (edge.to_owned(), counts))
        );
        assert_eq!(
            nodes(&state)[2..],
            [("a".to_owned(), 2, 6), ("b".to_owned(), 2, 4)]
        );

        let collapsed = options(|o| o.collapse_repeats = true);
        let state = state_graph(&set, &collapsed);
        assert_eq!(
            edges_of(&state),
            [
                ("a -> b", (2, 3, Some(60.0))),
                ("b -> a", (2, 3, Some(60.0)))
            ]
            .map(|(edge, counts)| (edge.to_owned(), counts))
        );
        assert_eq!(
            nodes(&state)[2..],
            [("a".to_owned(), 2, 5), ("b".to_owned(), 2, 3)]
        );

        let single = JourneySet::from_sequences([set.journeys[0]
            .steps
            .iter()
            .map(|step| (set.symbols.name(step.touchpoint), "web", step.at_ms))
            .collect()]);
        assert_eq!(
            edges(&positional_graph(&single, &collapsed)),
            positional_edges(&[
                ("1:a -> 2:b", 1, Some(300.0)),
                ("2:b -> 3:a", 1, Some(300.0)),
                ("3:a -> 4:(drop-off)", 1, None),
            ])
        );
    }

    #[test]
    fn channel_breakdown_splits_touchpoints_by_channel() {
        let set = JourneySet::from_sequences([
            vec![
                ("ad_click", "ads", 0),
                ("site_visit", "web", MINUTE),
                ("site_visit", "app", 3 * MINUTE),
            ],
            vec![("ad_click", "social", 0), ("site_visit", "web", 2 * MINUTE)],
        ]);
        let opts = options(|o| {
            o.start = Some("ad_click".into());
            o.breakdown = Breakdown::Channel;
            o.collapse_repeats = true;
            o.max_steps = 3;
        });
        let graph = positional_graph(&set, &opts);
        assert_eq!(
            graph.customers, 2,
            "start matches the touchpoint on any channel"
        );
        assert_eq!(
            edges(&graph),
            positional_edges(&[
                ("1:ad_click (ads) -> 2:site_visit (web)", 1, Some(60.0)),
                ("1:ad_click (social) -> 2:site_visit (web)", 1, Some(120.0)),
                ("2:site_visit (web) -> 3:site_visit (app)", 1, Some(120.0)),
                ("2:site_visit (web) -> 3:(drop-off)", 1, None),
            ]),
            "repeats on different channels are different labels, so they do not collapse"
        );
        let state = state_graph(&set, &opts);
        assert!(nodes(&state).contains(&("site_visit (web)".to_owned(), 2, 2)));
    }

    #[test]
    fn counted_graphs_are_ordered_and_numbered_whatever_the_input_order() {
        let node = |step, label: &str, customers| NodeCount {
            step,
            label: label.to_owned(),
            customers,
            visits: customers,
        };
        let edge = |from, to, customers| EdgeCount {
            from,
            to,
            customers,
            transitions: customers,
            median_seconds: None,
        };
        // Input indexes: 0 = 2:b, 1 = 1:a, 2 = 2:c, 3 = 2:a, 4 = 1:b.
        let counted_nodes = vec![
            node(Some(2), "b", 3),
            node(Some(1), "a", 4),
            node(Some(2), "c", 5),
            node(Some(2), "a", 3),
            node(Some(1), "b", 4),
        ];
        let counted_edges = vec![
            edge(1, 3, 1),
            edge(4, 0, 3),
            edge(1, 0, 1),
            edge(1, 2, 2),
            edge(4, 2, 1),
        ];
        let graph = PathGraph::from_counts(GraphView::Positional, 8, counted_nodes, counted_edges);
        assert_eq!(
            nodes(&graph),
            positional_nodes(&[("1:a", 4), ("1:b", 4), ("2:c", 5), ("2:a", 3), ("2:b", 3)]),
            "by step, then customers (most first), then label"
        );
        assert!(graph
            .nodes
            .iter()
            .enumerate()
            .all(|(id, node)| node.id == id));
        let order: Vec<(String, usize)> = graph
            .edges
            .iter()
            .map(|edge| {
                let key = format!("{} -> {}", name(&graph, edge.from), name(&graph, edge.to));
                (key, edge.customers)
            })
            .collect();
        assert_eq!(
            order,
            [
                ("1:a -> 2:c", 2),
                ("1:a -> 2:a", 1),
                ("1:a -> 2:b", 1),
                ("1:b -> 2:b", 3),
                ("1:b -> 2:c", 1),
            ]
            .map(|(key, customers)| (key.to_owned(), customers)),
            "by source, then customers (most first), then target"
        );
    }

    // Property tests over random journeys: five touchpoints, three channels, and a sixth
    // touchpoint name no journey uses, so start and end sometimes match nobody.
    const TOUCHPOINTS: [&str; 6] = [
        "ad_click",
        "site_visit",
        "email_open",
        "chat_started",
        "purchase",
        "webinar",
    ];
    const CHANNELS: [&str; 3] = ["web", "email", "chat"];

    type RawJourney = Vec<(usize, usize, i64)>;

    fn journey_set(raw: &[RawJourney]) -> JourneySet {
        JourneySet::from_sequences(raw.iter().map(|journey| {
            let mut at_ms = 0;
            journey
                .iter()
                .map(|&(touchpoint, channel, gap_ms)| {
                    at_ms += gap_ms;
                    (TOUCHPOINTS[touchpoint], CHANNELS[channel], at_ms)
                })
                .collect()
        }))
    }

    fn raw_journeys() -> impl Strategy<Value = Vec<RawJourney>> {
        prop::collection::vec(
            prop::collection::vec((0..5usize, 0..3usize, 0..100_000i64), 0..12),
            0..25,
        )
    }

    fn path_options() -> impl Strategy<Value = PathOptions> {
        (
            prop::option::of(0..6usize),
            prop::option::of(0..6usize),
            0..7usize,
            prop::option::of(0..4usize),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(start, end, max_steps, top_n, collapse_repeats, drop_offs, by_channel)| {
                    PathOptions {
                        start: start.map(|index| TOUCHPOINTS[index].to_owned()),
                        end: end.map(|index| TOUCHPOINTS[index].to_owned()),
                        max_steps,
                        top_n,
                        collapse_repeats,
                        drop_offs,
                        breakdown: if by_channel {
                            Breakdown::Channel
                        } else {
                            Breakdown::None
                        },
                    }
                },
            )
    }

    /// The paths as labels, worked out the slow way with strings, straight from the
    /// [`PathOptions`] docs.
    fn reference_paths(set: &JourneySet, opts: &PathOptions) -> Vec<Vec<String>> {
        let mut paths = Vec::new();
        for journey in &set.journeys {
            let mut steps: Vec<(String, String)> = journey
                .steps
                .iter()
                .map(|step| {
                    let touchpoint = set.symbols.name(step.touchpoint).to_owned();
                    let label = match opts.breakdown {
                        Breakdown::None => touchpoint.clone(),
                        Breakdown::Channel => {
                            format!("{touchpoint} ({})", set.symbols.name(step.channel))
                        }
                    };
                    (touchpoint, label)
                })
                .collect();
            if opts.collapse_repeats {
                steps.dedup_by(|later, earlier| later.1 == earlier.1);
            }
            let position = |from: usize, name: &String| {
                steps
                    .iter()
                    .skip(from)
                    .position(|(touchpoint, _)| touchpoint == name)
                    .map(|offset| from + offset)
            };
            let range =
                match (&opts.start, &opts.end) {
                    (None, None) => Some(0..steps.len().min(opts.max_steps)),
                    (Some(start), None) => position(0, start)
                        .map(|first| first..steps.len().min(first + opts.max_steps)),
                    (None, Some(end)) => position(0, end)
                        .map(|last| (last + 1).saturating_sub(opts.max_steps)..last + 1),
                    (Some(start), Some(end)) => position(0, start).and_then(|first| {
                        position(first + 1, end)
                            .map(|last| first..(last + 1).min(first + opts.max_steps))
                    }),
                };
            match range {
                Some(range) if !range.is_empty() => paths.push(
                    steps[range]
                        .iter()
                        .map(|(_, label)| label.clone())
                        .collect(),
                ),
                _ => {}
            }
        }
        paths
    }

    /// Sums of edge customers into and out of each node id.
    fn flows(graph: &PathGraph) -> (Vec<usize>, Vec<usize>) {
        let mut incoming = vec![0; graph.nodes.len()];
        let mut outgoing = vec![0; graph.nodes.len()];
        for edge in &graph.edges {
            incoming[edge.to] += edge.customers;
            outgoing[edge.from] += edge.customers;
        }
        (incoming, outgoing)
    }

    proptest! {
        #[test]
        fn positional_counts_add_up_at_every_step(raw in raw_journeys(), opts in path_options()) {
            let set = journey_set(&raw);
            let graph = positional_graph(&set, &opts);
            let reference = reference_paths(&set, &opts);
            prop_assert_eq!(graph.customers, reference.len());

            let backward = opts.start.is_none() && opts.end.is_some();
            let forward_drop_offs = opts.drop_offs && opts.end.is_none();
            let (incoming, outgoing) = flows(&graph);
            let mut per_step = BTreeMap::new();
            let mut entering = 0;
            for node in &graph.nodes {
                let step = node.step.expect("positional nodes have a step");
                prop_assert_eq!(node.visits, node.customers);
                prop_assert!(outgoing[node.id] <= node.customers);
                if node.label == DROP_OFF {
                    prop_assert!(forward_drop_offs);
                    prop_assert!((2..=opts.max_steps).contains(&step));
                    prop_assert_eq!(incoming[node.id], node.customers);
                    prop_assert_eq!(outgoing[node.id], 0);
                    continue;
                }
                prop_assert!((1..=opts.max_steps).contains(&step));
                *per_step.entry(step).or_insert(0) += node.customers;
                entering += node.customers - incoming[node.id];
                if step > 1 && !backward {
                    prop_assert_eq!(node.customers, incoming[node.id], "{}", name(&graph, node.id));
                }
                if step < opts.max_steps && (forward_drop_offs || backward) {
                    prop_assert_eq!(node.customers, outgoing[node.id], "{}", name(&graph, node.id));
                }
            }
            prop_assert_eq!(entering, graph.customers, "every path enters the graph once");
            prop_assert!(per_step.values().all(|&customers| customers <= graph.customers));
            if graph.customers > 0 {
                let anchor_step = if backward { opts.max_steps } else { 1 };
                prop_assert_eq!(per_step[&anchor_step], graph.customers);
            }
            for edge in &graph.edges {
                prop_assert_eq!(graph.nodes[edge.to].step, graph.nodes[edge.from].step.map(|step| step + 1));
                prop_assert_eq!(edge.transitions, edge.customers);
                prop_assert_eq!(edge.median_seconds.is_none(), graph.nodes[edge.to].label == DROP_OFF);
            }

            // Without grouping, each node holds exactly the distinct customers with that label there.
            if opts.top_n.is_none() {
                let mut expected: BTreeMap<(usize, String), usize> = BTreeMap::new();
                for path in &reference {
                    let first = if backward { opts.max_steps + 1 - path.len() } else { 1 };
                    for (offset, label) in path.iter().enumerate() {
                        *expected.entry((first + offset, label.clone())).or_default() += 1;
                    }
                }
                let actual: BTreeMap<(usize, String), usize> = graph
                    .nodes
                    .iter()
                    .filter(|node| node.label != DROP_OFF)
                    .map(|node| ((node.step.unwrap_or(0), node.label.clone()), node.customers))
                    .collect();
                prop_assert_eq!(actual, expected);
            }
        }

        #[test]
        fn state_counts_stay_within_their_customers(raw in raw_journeys(), opts in path_options()) {
            let set = journey_set(&raw);
            let graph = state_graph(&set, &opts);
            let reference = reference_paths(&set, &opts);
            prop_assert_eq!(graph.customers, reference.len());

            let mut incoming_transitions = vec![0; graph.nodes.len()];
            for edge in &graph.edges {
                let (from, to) = (&graph.nodes[edge.from], &graph.nodes[edge.to]);
                prop_assert!(edge.customers <= from.customers.min(to.customers));
                prop_assert!(edge.customers <= edge.transitions);
                incoming_transitions[edge.to] += edge.transitions;
            }
            for node in &graph.nodes {
                prop_assert_eq!(node.step, None);
                prop_assert!(node.customers <= graph.customers);
                prop_assert!(node.customers <= node.visits);
                match node.label.as_str() {
                    START => prop_assert_eq!((node.customers, node.visits), (graph.customers, graph.customers)),
                    END => prop_assert!(opts.drop_offs),
                    label => {
                        prop_assert_eq!(node.visits, incoming_transitions[node.id], "every visit has a predecessor");
                        let with_label = reference.iter().filter(|path| path.iter().any(|step| step == label)).count();
                        let visits: usize = reference.iter().map(|path| path.iter().filter(|step| *step == label).count()).sum();
                        prop_assert_eq!((node.customers, node.visits), (with_label, visits), "{}", label);
                    }
                }
            }
        }
    }
}
