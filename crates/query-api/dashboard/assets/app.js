// Scribble dashboard. Calls only the public report API with the read key, and keeps everything
// it shows (tab, filters, report options) in the page URL, so a view can be shared or embedded.
import echarts from './echarts.min.js';

const $ = (selector, root = document) => root.querySelector(selector);
const COLORS = ['#5b4fd6', '#e4572e', '#2a9d8f', '#f3a712', '#3d84c6', '#b5548f', '#7a8b99', '#6a994e'];
const MAX_DRAWN_EDGES = 45;
const TABS = ['overview', 'paths', 'funnel', 'attribution', 'influence', 'customer'];

// ---- state in the URL -------------------------------------------------------------------------

const initial = new URLSearchParams(location.search);
const keyInUrl = initial.has('key');
let readKey = initial.get('key') || sessionStorage.getItem('scribble_read_key');
if (!readKey) readKey = prompt('Read key for this Scribble project', 'dev-read-key') || '';
sessionStorage.setItem('scribble_read_key', readKey);

const state = {};
for (const [name, value] of initial) if (name !== 'key') state[name] = value;
if (!TABS.includes(state.tab)) state.tab = 'overview';

/// Changes the view state, writes it to the URL and draws the page again.
function update(changes) {
  for (const [name, value] of Object.entries(changes)) {
    if (value === '' || value == null || value === false) delete state[name];
    else state[name] = String(value);
  }
  const query = new URLSearchParams(keyInUrl ? { key: readKey } : {});
  for (const [name, value] of Object.entries(state)) query.set(name, value);
  history.replaceState(null, '', '?' + query);
  draw();
}

/// The filters every report takes, from the state: from, to, trait.X, prop.X.
function filters() {
  const out = {};
  for (const [name, value] of Object.entries(state)) {
    if (name === 'from' || name === 'to' || name.startsWith('trait.') || name.startsWith('prop.')) out[name] = value;
  }
  return out;
}
const goal = () => state.goal || 'purchase';

// ---- API --------------------------------------------------------------------------------------

function apiUrl(path, query) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') url.searchParams.set(name, value);
  }
  return url;
}

async function api(path, query = {}, asText = false) {
  const response = await fetch(apiUrl(path, query), { headers: { 'X-Read-Key': readKey } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) sessionStorage.removeItem('scribble_read_key');
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  return asText ? response.text() : response.json();
}

// ---- formatting -------------------------------------------------------------------------------

const count = (n) => (n == null ? '-' : Number(n).toLocaleString('en-US'));
const percent = (share) => (share == null ? '-' : (100 * share).toFixed(1) + '%');
const decimal = (n, digits = 2) => (n == null ? '-' : Number(n).toFixed(digits));
function duration(seconds) {
  if (seconds == null) return '-';
  if (seconds < 60) return Math.round(seconds) + 's';
  if (seconds < 3600) return Math.round(seconds / 60) + 'm';
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + 'h';
  return (seconds / 86400).toFixed(1) + 'd';
}
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// ---- building blocks --------------------------------------------------------------------------

let charts = [];
let rendering = [];

function element(tag, attributes = {}, html = '') {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.innerHTML = html;
  return node;
}

/// A panel in `view` with a title, a note and export buttons; returns its body element.
function panel(view, title, { size = '', note = '', id = '' } = {}) {
  const node = element('section', { class: `panel ${size}`, ...(id ? { id } : {}) },
    `<h2>${escape(title)}<span class="tools"></span></h2>${note ? `<p class="note">${note}</p>` : ''}`);
  view.append(node);
  return node;
}

function tool(panelNode, label, action) {
  const button = element('button', { type: 'button' }, label);
  button.addEventListener('click', action);
  $('.tools', panelNode).append(button);
}

function download(name, blob) {
  const link = element('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/// Draws `option` in a new chart inside `panelNode`, with PNG and SVG export.
function chart(panelNode, name, option, { tall = false } = {}) {
  const node = element('div', { class: tall ? 'chart tall' : 'chart', 'data-chart': name });
  panelNode.append(node);
  const instance = echarts.init(node, null, { renderer: 'canvas' });
  // The page counts as drawn once every chart finished its first render and animation.
  rendering.push(new Promise((resolve) => instance.on('finished', resolve)));
  instance.setOption({ color: COLORS, animationDuration: 300, ...option });
  charts.push(instance);
  tool(panelNode, 'PNG', () => {
    const url = instance.getDataURL({ type: 'png', pixelRatio: 2, backgroundColor: '#fff' });
    fetch(url).then((r) => r.blob()).then((blob) => download(`scribble-${name}.png`, blob));
  });
  tool(panelNode, 'SVG', () => {
    const svg = echarts.init(null, null, {
      renderer: 'svg', ssr: true, width: node.clientWidth, height: node.clientHeight,
    });
    svg.setOption({ color: COLORS, animation: false, backgroundColor: '#fff', ...option });
    download(`scribble-${name}.svg`, new Blob([svg.renderToSVGString()], { type: 'image/svg+xml' }));
    svg.dispose();
  });
  return instance;
}

/// A table of `rows` under `columns` ({label, value(row), num?}), with CSV export: the API's own
/// CSV when `csv` names the report, else the table as shown.
function table(panelNode, name, columns, rows, csv) {
  const wrap = element('div', { class: 'table-wrap' });
  const head = columns.map((c) => `<th class="${c.num ? 'num' : ''}">${escape(c.label)}</th>`).join('');
  const body = rows.map((row) => `<tr${row.__class ? ` class="${row.__class}"` : ''}>` + columns.map((c) =>
    `<td class="${c.num ? 'num' : ''}">${c.html ? c.value(row) : escape(c.value(row))}</td>`).join('') + '</tr>').join('');
  wrap.innerHTML = `<table data-table="${name}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  panelNode.append(wrap);
  tool(panelNode, 'CSV', async () => {
    let text;
    if (csv) {
      text = await api(csv.path, { ...csv.query, format: 'csv' }, true);
    } else {
      const cell = (text) => /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
      const lines = [columns.map((c) => cell(c.label))];
      for (const row of rows) lines.push(columns.map((c) => cell(String(c.csv ? c.csv(row) : c.value(row)))));
      text = lines.map((line) => line.join(',')).join('\r\n') + '\r\n';
    }
    download(`scribble-${name}.csv`, new Blob([text], { type: 'text/csv' }));
  });
}

function controls(panelNode, fields) {
  const form = element('div', { class: 'controls' });
  for (const field of fields) form.append(field);
  panelNode.append(form);
  return form;
}

/// A control bound to the state key `name`: a select, a number, a text or a checkbox.
function control(label, name, { options, type = 'text', fallback = '', size, placeholder } = {}) {
  const wrap = element('label', { class: type === 'checkbox' ? 'check' : '' });
  let input;
  if (options) {
    input = element('select', { name });
    for (const option of options) {
      const [value, text] = Array.isArray(option) ? option : [option, option];
      input.append(element('option', { value }, escape(text)));
    }
    input.value = state[name] ?? fallback;
  } else {
    input = element('input', { name, type, ...(size ? { size } : {}), ...(placeholder ? { placeholder } : {}) });
    if (type === 'checkbox') input.checked = state[name] === 'true';
    else input.value = state[name] ?? fallback;
    if (type === 'text') input.setAttribute('list', 'touchpoint-names');
  }
  input.addEventListener('change', () => update({ [name]: type === 'checkbox' ? input.checked : input.value }));
  if (type === 'checkbox') wrap.append(input, label); else wrap.append(label, input);
  return wrap;
}

function failed(panelNode, error) {
  panelNode.append(element('p', { class: 'error' }, escape(error.message)));
}

// ---- overview ---------------------------------------------------------------------------------

async function overviewTab(view) {
  const interval = state.interval || 'day';
  const [series, metrics] = await Promise.all([
    api('/v1/overview', { ...filters(), goal: goal(), interval }),
    api('/v1/metrics', { ...filters(), goal: goal() }),
  ]);
  const kpis = element('div', { class: 'kpis' });
  const kpi = (label, value, extra = '') =>
    `<div class="kpi ${extra}"><div class="value">${value}</div><div class="label">${label}</div></div>`;
  kpis.innerHTML = kpi('customers', count(series.customers))
    + kpi('touchpoints', count(series.events))
    + kpi(`converted to ${escape(series.goal)}`, count(series.conversions))
    + kpi('straight journeys (the slide)', percent(metrics.linear_share))
    + kpi('scribbled journeys (back or skip)', percent(metrics.back_share + metrics.skip_share), 'headline')
    + kpi('median days to convert', decimal(metrics.days_to_conversion_median, 1));
  view.append(kpis);

  const trend = panel(view, 'Customers, touchpoints and conversions over time', { size: 'two-thirds' });
  controls(trend, [control('Interval', 'interval', { options: ['hour', 'day', 'week'], fallback: 'day' })]);
  const starts = series.buckets.map((b) => b.start.slice(0, interval === 'hour' ? 16 : 10).replace('T', ' '));
  chart(trend, 'overview', {
    tooltip: { trigger: 'axis' },
    legend: { top: 0 },
    grid: { left: 50, right: 60, top: 40, bottom: 60 },
    dataZoom: [{ type: 'slider', height: 18, bottom: 8 }],
    xAxis: { type: 'category', data: starts },
    yAxis: [{ type: 'value', name: 'customers' }, { type: 'value', name: 'touchpoints', splitLine: { show: false } }],
    series: [
      { name: 'active customers', type: 'line', showSymbol: false, data: series.buckets.map((b) => b.customers) },
      { name: 'new customers', type: 'line', showSymbol: false, data: series.buckets.map((b) => b.new_customers) },
      { name: 'conversions', type: 'bar', data: series.buckets.map((b) => b.conversions) },
      { name: 'touchpoints', type: 'line', yAxisIndex: 1, showSymbol: false, lineStyle: { type: 'dashed' },
        data: series.buckets.map((b) => b.events) },
    ],
  });

  const linear = panel(view, 'How linear are our journeys?', {
    size: 'third',
    note: 'Straight: stages never go back or skip. Back: returns to an earlier stage. Skip: jumps ahead.',
  });
  const shares = { straight: metrics.linear_share, back: metrics.back_share, skip: metrics.skip_share };
  chart(linear, 'linearity', {
    tooltip: { trigger: 'item', formatter: (p) => `${p.name}: ${count(p.value)} customers (${p.percent}%)` },
    legend: { bottom: 0, formatter: (name) => `${name} ${percent(shares[name])}` },
    title: {
      text: percent(metrics.linear_share), subtext: 'straight', left: 'center', top: '36%',
      textStyle: { fontSize: 24 }, subtextStyle: { fontSize: 13 },
    },
    series: [{
      type: 'pie', radius: ['48%', '72%'], center: ['50%', '45%'],
      label: { show: false },
      data: [
        { name: 'straight', value: metrics.linear_journeys, itemStyle: { color: COLORS[2] } },
        { name: 'back', value: metrics.back_journeys, itemStyle: { color: COLORS[1] } },
        { name: 'skip', value: metrics.skip_journeys, itemStyle: { color: COLORS[3] } },
      ],
    }],
  });

  const loops = panel(view, 'Loops customers circle', {
    note: `Groups of touchpoints customers move around in and come back to. Mean returns to an earlier
      stage per journey: ${decimal(metrics.mean_back_steps)}; channel switches: ${decimal(metrics.mean_channel_switches)}.`,
  });
  table(loops, 'loops', [
    { label: 'touchpoints in the loop', value: (row) => row.touchpoints.join(' ⇄ ') },
    { label: 'customers', value: (row) => count(row.customers), csv: (row) => row.customers, num: true },
  ], metrics.loops);
}

// ---- paths ------------------------------------------------------------------------------------

function pathQuery() {
  return {
    ...filters(),
    view: state.view || 'state',
    start: state.start, end: state.end,
    steps: state.steps || 5, top: state.top ?? 6,
    collapse: state.collapse, breakdown: state.breakdown,
  };
}

async function pathsTab(view) {
  const query = pathQuery();
  const box = panel(view, 'Path explorer', {
    note: 'The state graph keeps loops: back-and-forth edges in red, repeats as a red ring (↺). The positional view is a Sankey '
      + 'of step 1, 2, 3… Hover for counts and median times; click a node to anchor the paths on it.',
  });
  controls(box, [
    control('View', 'view', { options: [['state', 'state graph (the scribble)'], ['positional', 'positional (Sankey)']], fallback: 'state' }),
    control('Start at', 'start', { placeholder: 'any', size: 12 }),
    control('End at', 'end', { placeholder: 'any', size: 12 }),
    control('Steps', 'steps', { type: 'number', fallback: 5 }),
    control('Top N per step', 'top', { type: 'number', fallback: 6 }),
    control('Breakdown', 'breakdown', { options: [['', 'none'], ['channel', 'by channel']] }),
    control('Clicking a node sets', 'anchor', { options: [['start', 'start'], ['end', 'end']], fallback: 'start' }),
    control('collapse repeats', 'collapse', { type: 'checkbox' }),
  ]);
  let graph;
  try {
    graph = await api('/v1/paths', query);
  } catch (error) {
    return failed(box, error);
  }
  box.append(element('p', { class: 'note', 'data-customers': graph.customers },
    `${count(graph.customers)} customers, ${graph.nodes.length} nodes, ${graph.edges.length} transitions`));
  const name = (node) => (node.step == null ? node.label : `${node.step}. ${node.label}`);
  const byId = new Map(graph.nodes.map((node) => [node.id, node]));
  const edgeTip = (edge) => `${escape(name(byId.get(edge.from)))} → ${escape(name(byId.get(edge.to)))}<br>`
    + `${count(edge.customers)} customers, ${count(edge.transitions)} transitions<br>median time ${duration(edge.median_seconds)}`;
  // A circular layout cannot draw an edge from a node to itself, so a repeat is drawn as a red
  // ring around the node (and a ↺ after its name) and told in its tooltip.
  const repeats = new Map(graph.edges.filter((edge) => edge.from === edge.to).map((edge) => [edge.from, edge]));
  const nodeTip = (node) => {
    const repeat = repeats.get(node.id);
    return `${escape(name(node))}<br>${count(node.customers)} customers, ${count(node.visits)} visits`
      + (repeat && query.view !== 'positional' ? `<br>↺ repeated by ${count(repeat.customers)} customers `
        + `(${count(repeat.transitions)} times, median ${duration(repeat.median_seconds)} apart)` : '');
  };
  const pairs = new Set(graph.edges.map((edge) => `${edge.from}>${edge.to}`));
  const maxEdge = Math.max(1, ...graph.edges.map((edge) => edge.customers));
  const maxNode = Math.max(1, ...graph.nodes.map((node) => node.customers));
  // A state graph of many touchpoints has too many edges to read; the chart draws the busiest
  // (loops included when they are among them), the table below lists every one.
  const drawn = [...graph.edges].sort((a, b) => b.customers - a.customers).slice(0, MAX_DRAWN_EDGES);
  if (query.view !== 'positional' && drawn.length < graph.edges.length) {
    box.append(element('p', { class: 'note' },
      `The chart draws the ${drawn.length} busiest of ${graph.edges.length} transitions; the table lists all.`));
  }
  let option;
  if (query.view === 'positional') {
    option = {
      tooltip: { trigger: 'item', formatter: (p) => (p.dataType === 'edge' ? edgeTip(p.data.edge) : nodeTip(p.data.node)) },
      series: [{
        type: 'sankey', left: 10, right: 140, top: 10, bottom: 10, nodeGap: 10, draggable: false,
        emphasis: { focus: 'adjacency' },
        lineStyle: { color: 'gradient', opacity: 0.35 },
        label: { formatter: (p) => `${p.data.node.label} ${count(p.data.node.customers)}` },
        data: graph.nodes.map((node) => ({ name: String(node.id), node, depth: (node.step || 1) - 1 })),
        links: graph.edges.map((edge) => ({ source: String(edge.from), target: String(edge.to), value: edge.customers, edge })),
      }],
    };
  } else {
    option = {
      tooltip: { trigger: 'item', formatter: (p) => (p.dataType === 'edge' ? edgeTip(p.data.edge) : nodeTip(p.data.node)) },
      series: [{
        type: 'graph', layout: 'circular', circular: { rotateLabel: false }, roam: true,
        left: 120, right: 120, top: 40, bottom: 40,
        edgeSymbol: ['none', 'arrow'], edgeSymbolSize: 7,
        label: {
          show: true, position: 'right',
          formatter: (p) => `${p.data.node.label} ${count(p.data.node.customers)}${repeats.has(p.data.node.id) ? ' ↺' : ''}`,
        },
        emphasis: { focus: 'adjacency', lineStyle: { opacity: 0.9 } },
        data: graph.nodes.map((node) => ({
          name: String(node.id), node,
          symbolSize: 12 + 40 * Math.sqrt(node.customers / maxNode),
          itemStyle: {
            color: node.label.startsWith('(') ? '#9aa3ae' : COLORS[0],
            ...(repeats.has(node.id) ? { borderColor: COLORS[1], borderWidth: 3 } : {}),
          },
        })),
        links: drawn.filter((edge) => edge.from !== edge.to).map((edge) => {
          const loop = pairs.has(`${edge.to}>${edge.from}`);
          return {
            source: String(edge.from), target: String(edge.to), edge,
            lineStyle: {
              width: 0.6 + 7 * (edge.customers / maxEdge), curveness: 0.2,
              color: loop ? COLORS[1] : '#8f96a3', opacity: 0.55,
            },
          };
        }),
      }],
    };
  }
  const instance = chart(box, 'paths', option, { tall: true });
  instance.on('click', (p) => {
    if (p.dataType !== 'node' || p.data.node.label.startsWith('(')) return;
    const label = p.data.node.label.replace(/ \([^)]*\)$/, '');
    update({ [state.anchor || 'start']: label });
  });
  const edges = panel(view, 'Transitions', { note: 'Every edge of the graph above, busiest first.' });
  const rows = [...graph.edges].sort((a, b) => b.customers - a.customers);
  table(edges, 'paths', [
    { label: 'from', value: (edge) => name(byId.get(edge.from)) },
    { label: 'to', value: (edge) => name(byId.get(edge.to)) },
    { label: 'customers', value: (edge) => count(edge.customers), csv: (edge) => edge.customers, num: true },
    { label: 'transitions', value: (edge) => count(edge.transitions), csv: (edge) => edge.transitions, num: true },
    { label: 'median time', value: (edge) => duration(edge.median_seconds), csv: (edge) => edge.median_seconds ?? '', num: true },
  ], rows);
}

// ---- funnel -----------------------------------------------------------------------------------

async function funnelTab(view) {
  const query = {
    ...filters(),
    steps: state.funnel || 'site_visit,form_submit,purchase',
    order: state.order || 'ordered', window: state.window,
  };
  const box = panel(view, 'Funnel', {
    note: 'Customers through each step in order; bars split into those who went on and those who dropped.',
  });
  controls(box, [
    control('Steps (comma separated; step[key=value] narrows one)', 'funnel', { fallback: query.steps, size: 40 }),
    control('Order', 'order', { options: ['ordered', 'strict', 'any'], fallback: 'ordered' }),
    control('Window (30d, 12h)', 'window', { placeholder: 'none', size: 8 }),
  ]);
  let report;
  try {
    report = await api('/v1/funnel', query);
  } catch (error) {
    return failed(box, error);
  }
  const labels = report.steps.map((s) => `${s.step}. ${s.label}`);
  const last = report.steps.length - 1;
  chart(box, 'funnel', {
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    legend: { top: 0 },
    grid: { left: 140, right: 40, top: 36, bottom: 24 },
    xAxis: { type: 'value' },
    yAxis: { type: 'category', data: labels, inverse: true },
    series: [
      { name: 'went on', type: 'bar', stack: 'step', itemStyle: { color: COLORS[2] },
        label: { show: true, formatter: (p) => count(p.value) },
        data: report.steps.map((s, i) => (i === last ? s.entered : s.converted)) },
      { name: 'dropped', type: 'bar', stack: 'step', itemStyle: { color: COLORS[1] },
        label: { show: true, formatter: (p) => (p.value ? count(p.value) : '') },
        data: report.steps.map((s, i) => (i === last ? 0 : s.dropped)) },
    ],
  });
  const rows = panel(view, 'Conversion and time to convert');
  table(rows, 'funnel', [
    { label: 'step', value: (s) => `${s.step}. ${s.label}` },
    { label: 'entered', value: (s) => count(s.entered), num: true },
    { label: 'converted', value: (s) => count(s.converted), num: true },
    { label: 'dropped', value: (s) => count(s.dropped), num: true },
    { label: 'of previous', value: (s) => percent(s.conversion_from_previous), num: true },
    { label: 'of first', value: (s) => percent(s.conversion_from_first), num: true },
    { label: 'median time', value: (s) => duration(s.median_seconds_to_convert), num: true },
    { label: 'p90 time', value: (s) => duration(s.p90_seconds_to_convert), num: true },
  ], report.steps, { path: '/v1/funnel', query });
}

// ---- attribution ------------------------------------------------------------------------------

const MODELS = [
  ['first_touch', 'first touch'], ['last_touch', 'last touch'], ['linear', 'linear'],
  ['time_decay', 'time decay'], ['position_based', 'position based'], ['data_driven', 'data-driven (Markov)'],
];

async function attributionTab(view) {
  const query = { ...filters(), goal: goal(), by: state.by || 'touchpoint' };
  const box = panel(view, 'Attribution: who gets the credit for a conversion?', {
    note: 'Conversions credited under six models; data-driven is the Markov-chain removal effect.',
  });
  controls(box, [control('By', 'by', { options: ['touchpoint', 'channel'], fallback: 'touchpoint' })]);
  let report;
  try {
    report = await api('/v1/attribution', query);
  } catch (error) {
    return failed(box, error);
  }
  box.append(element('p', { class: 'note' }, `${count(report.conversions)} conversions to ${escape(report.goal)}`));
  const top = [...report.rows].sort((a, b) => b.linear.conversions - a.linear.conversions).slice(0, 12);
  chart(box, 'attribution', {
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v) => decimal(v, 1) },
    legend: { top: 0 },
    grid: { left: 50, right: 20, top: 40, bottom: 70 },
    xAxis: { type: 'category', data: top.map((row) => row.name), axisLabel: { rotate: 30 } },
    yAxis: { type: 'value', name: 'conversions' },
    series: MODELS.map(([model, label]) => ({ name: label, type: 'bar', data: top.map((row) => row[model].conversions) })),
  });
  const rows = panel(view, 'Credit by model');
  table(rows, 'attribution', [
    { label: report.by, value: (row) => row.name },
    ...MODELS.map(([model, label]) => ({ label, value: (row) => decimal(row[model].conversions, 1), num: true })),
    { label: 'removal effect', value: (row) => percent(row.removal_effect), num: true },
  ], report.rows, { path: '/v1/attribution', query });
}

// ---- influence --------------------------------------------------------------------------------

const MOMENTS = { moment_of_impact: 'impact', moment_of_influence: 'influence' };
const MOMENT_COLORS = { moment_of_impact: COLORS[2], moment_of_influence: COLORS[1] };

async function influenceTab(view) {
  const query = { ...filters(), goal: goal() };
  const box = panel(view, 'Touchpoint influence', {
    note: 'Reach among converters against conversion lift. <b style="color:#2a9d8f">Moments of impact</b>: almost '
      + 'every converter passes through. <b style="color:#e4572e">Moments of influence</b>: few see it, but those who '
      + 'do convert far more. Circle size: customers who saw it.',
  });
  let report;
  try {
    report = await api('/v1/influence', query);
  } catch (error) {
    return failed(box, error);
  }
  chart(box, 'influence', {
    tooltip: {
      formatter: (p) => `${escape(p.data.row.touchpoint)}<br>reach ${percent(p.data.row.converter_reach)} of converters`
        + `<br>lift ${decimal(p.data.row.lift)}×, ${count(p.data.row.customers)} customers`,
    },
    grid: { left: 60, right: 40, top: 30, bottom: 50 },
    xAxis: { type: 'value', name: 'reach among converters', nameLocation: 'middle', nameGap: 28, max: 1,
      axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` } },
    yAxis: { type: 'value', name: 'lift (×)' },
    series: [{
      type: 'scatter',
      symbolSize: (value, p) => 8 + 30 * Math.sqrt(p.data.row.customers / Math.max(1, report.customers)),
      label: { show: true, position: 'right', formatter: (p) => p.data.row.touchpoint },
      data: report.rows.filter((row) => row.lift != null).map((row) => ({
        value: [row.converter_reach, row.lift], row,
        itemStyle: { color: MOMENT_COLORS[row.label] || '#9aa3ae' },
      })),
    }],
  });
  const rows = panel(view, 'Reach and lift per touchpoint');
  table(rows, 'influence', [
    { label: 'touchpoint', value: (row) => row.touchpoint },
    { label: 'customers', value: (row) => count(row.customers), num: true },
    { label: 'reach', value: (row) => percent(row.reach), num: true },
    { label: 'reach among converters', value: (row) => percent(row.converter_reach), num: true },
    { label: 'conversion with it', value: (row) => percent(row.conversion_rate_with), num: true },
    { label: 'lift', value: (row) => (row.lift == null ? '-' : decimal(row.lift) + '×'), num: true },
    { label: 'moment', html: true, value: (row) => (MOMENTS[row.label]
      ? `<span class="tag ${row.label}">${MOMENTS[row.label]}</span>` : ''), csv: (row) => MOMENTS[row.label] || '' },
    { label: 'advice', value: (row) => row.advice || '' },
  ], report.rows, { path: '/v1/influence', query });
}

// ---- customer ---------------------------------------------------------------------------------

async function customerTab(view) {
  const box = panel(view, 'Customer journey', {
    note: 'One customer by any identity: u:&lt;user id&gt;, a:&lt;anonymous id&gt;, or the bare id. '
      + 'The timeline is stitched across devices and identities, split into sessions.',
  });
  controls(box, [control('Customer', 'customer', { placeholder: 'u:ann@example.com', size: 36 })]);
  if (!state.customer) return;
  let journey;
  try {
    journey = await api(`/v1/customers/${encodeURIComponent(state.customer)}/journey`);
  } catch (error) {
    return failed(box, error);
  }
  box.append(element('p', { 'data-customer': journey.customer_id },
    `<b>${escape(journey.customer_id)}</b> · ${count(journey.touchpoints)} touchpoints in ${count(journey.sessions)} sessions · `
    + `identities ${journey.identities.map((id) => `<span class="tag">${escape(id)}</span>`).join(' ')} · traits `
    + (Object.entries(journey.traits || {}).map(([k, v]) => `<span class="tag">${escape(k)}: ${escape(v)}</span>`).join(' ') || 'none')));
  let session = 0;
  const rows = journey.timeline.map((touch) => {
    const row = { ...touch, __class: touch.session !== session ? 'session-start' : '' };
    session = touch.session;
    return row;
  });
  table(box, 'journey', [
    { label: 'time (UTC)', value: (t) => t.time.replace('T', ' ').slice(0, 19) },
    { label: 'session', value: (t) => t.session, num: true },
    { label: 'touchpoint', value: (t) => t.touchpoint },
    { label: 'channel', value: (t) => t.channel },
    { label: 'stage', value: (t) => t.stage || '' },
    { label: 'properties', value: (t) => Object.entries(t.properties || {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ') },
  ], rows);
}

// ---- page -------------------------------------------------------------------------------------

const DRAW = {
  overview: overviewTab, paths: pathsTab, funnel: funnelTab,
  attribution: attributionTab, influence: influenceTab, customer: customerTab,
};
let drawing = 0;

async function draw() {
  const ticket = ++drawing;
  for (const instance of charts) instance.dispose();
  charts = [];
  rendering = [];
  for (const button of document.querySelectorAll('#tabs button')) {
    button.classList.toggle('active', button.dataset.tab === state.tab);
  }
  const form = $('#filters');
  form.from.value = state.from || '';
  form.to.value = state.to || '';
  form.goal.value = state.goal || '';
  form.filters.value = Object.entries(filters()).filter(([name]) => name.includes('.'))
    .map(([name, value]) => `${name}=${value}`).join(' ');
  // Each drawing fills its own element, so a slow answer to an earlier view cannot land in this one.
  const view = element('div', { class: 'grid' });
  $('#view').replaceChildren(view);
  document.body.dataset.ready = 'false';
  try {
    await DRAW[state.tab](view);
  } catch (error) {
    failed(panel(view, 'Could not load this view'), error);
  }
  const settled = new Promise((resolve) => setTimeout(resolve, 3000));
  await Promise.race([Promise.all(rendering), settled]);
  if (ticket === drawing) document.body.dataset.ready = 'true';
}

for (const button of document.querySelectorAll('#tabs button')) {
  button.addEventListener('click', () => update({ tab: button.dataset.tab }));
}
$('#filters').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.target;
  const changes = { from: form.from.value, to: form.to.value, goal: form.goal.value };
  for (const name of Object.keys(state)) if (name.startsWith('trait.') || name.startsWith('prop.')) changes[name] = '';
  for (const pair of form.filters.value.split(/[\s,]+/).filter(Boolean)) {
    const at = pair.indexOf('=');
    if (at > 0 && /^(trait|prop)\./.test(pair)) changes[pair.slice(0, at)] = pair.slice(at + 1);
  }
  update(changes);
});
$('#share').addEventListener('click', async () => {
  const link = new URL(location.href);
  link.searchParams.delete('key');
  await navigator.clipboard?.writeText(link.href).catch(() => {});
  $('#share').textContent = 'Link copied (without the key)';
  setTimeout(() => ($('#share').textContent = 'Copy link'), 2000);
});
addEventListener('resize', () => charts.forEach((instance) => instance.resize()));
// The charts on screen, for the browser tests and the console.
window.scribbleDashboard = { charts: () => charts };

api('/v1/touchpoints', {}).then((answer) => {
  $('#touchpoint-names').innerHTML = answer.touchpoints.map((t) => `<option value="${escape(t.touchpoint)}">`).join('');
}).catch(() => {});
draw();
