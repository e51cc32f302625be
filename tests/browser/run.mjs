// Browser tests against a running `scribble serve` (started by tests/browser.rs, which passes its
// addresses and keys in the environment), in Debian's chromium driven by playwright-core:
//   1. a test site with the tracker is browsed (a visit, an SPA navigation, an outbound click, a
//      form submit, an identify on the next page); the events must arrive and be stitched into
//      one customer, as the API's journey endpoint shows;
//   2. a failed send is kept and retried, a page being left sends what is queued with
//      sendBeacon, and Do Not Track and a withdrawn consent keep the tracker silent;
//   3. the dashboard draws the path graph, the Sankey, the funnel and the other views, and the
//      numbers it shows equal the API's answers for the same parameters.
// Screenshots go to $SCRIBBLE_ARTIFACTS. Prints "N passed, N failed"; exits 1 on any failure.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const COLLECTOR = need('SCRIBBLE_COLLECTOR');
const API = need('SCRIBBLE_API');
const WRITE_KEY = need('SCRIBBLE_WRITE_KEY');
const READ_KEY = need('SCRIBBLE_READ_KEY');
const ARTIFACTS = need('SCRIBBLE_ARTIFACTS');
const CHROMIUM = process.env.SCRIBBLE_CHROMIUM || '/usr/bin/chromium';

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run these tests with cargo test --test browser`);
  return value;
}

// ---- the test site ----------------------------------------------------------------------------

const tag = `<script src="${COLLECTOR}/scribble.js" data-write-key="${WRITE_KEY}" async></script>`;
const PAGES = {
  '/': `<!doctype html><title>Home</title>${tag}
    <h1>Shop</h1>
    <button id="pricing" onclick="history.pushState({}, '', '/pricing')">Pricing</button>
    <a id="out" href="https://partner.example/offer" onclick="event.preventDefault()">Partner offer</a>
    <form id="signup" name="signup" action="/thanks" method="get">
      <input name="email" id="email"><button id="submit">Sign up</button>
    </form>`,
  '/thanks': `<!doctype html><title>Thanks</title>
    <script>
      window.scribble = window.scribble || [];
      scribble.push(['identify', new URLSearchParams(location.search).get('email'), { persona: 'tester' }]);
    </script>${tag}<h1>Thanks</h1>`,
  '/quiet': `<!doctype html><title>Quiet</title>${tag}<h1>Quiet</h1>`,
};

function startSite() {
  const server = createServer((request, response) => {
    const page = PAGES[new URL(request.url, 'http://site').pathname];
    response.writeHead(page ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    response.end(page || 'not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// ---- helpers ----------------------------------------------------------------------------------

async function api(path, query = {}) {
  const url = new URL(path, API);
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  const response = await fetch(url, { headers: { authorization: `Bearer ${READ_KEY}` } });
  const body = await response.json();
  return { status: response.status, body };
}

async function eventually(what, check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

const number = (text) => Number(String(text).replace(/,/g, ''));

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}

/// Opens the dashboard at `query` and waits until the view has drawn.
async function dashboard(page, query) {
  await page.goto(`${API}/?key=${encodeURIComponent(READ_KEY)}&${query}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  const errors = await page.locator('.error').allTextContents();
  assert.deepEqual(errors, [], `the dashboard showed errors for ${query}`);
}

async function tableRows(page, name) {
  return page.locator(`table[data-table="${name}"] tbody tr`).evaluateAll((rows) =>
    rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
}

// ---- tests ------------------------------------------------------------------------------------

const tests = [];
const test = (name, body) => tests.push({ name, body });

test('the tracker records a visit, an SPA navigation, an outbound click, a form submit and an identify, stitched into one customer', async ({ browser, site }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (error) => consoleErrors.push(error.message));
  await page.goto(`${site}/`);
  await page.waitForFunction(() => window.scribble && window.scribble.loaded);
  const anonymousId = await page.evaluate(() => scribble.anonymousId());
  assert.match(anonymousId, /^[0-9a-f-]{36}$/);
  await page.click('#pricing');
  await page.click('#out');
  await page.evaluate(() => scribble.track('chat_started', { topic: 'pricing' }));
  const email = `tester-${Date.now()}@example.com`;
  await page.fill('#email', email);
  await Promise.all([page.waitForURL(/\/thanks/), page.click('#submit')]);
  await page.waitForFunction(() => window.scribble && window.scribble.loaded);
  assert.equal(await page.evaluate(() => scribble.anonymousId()), anonymousId, 'the anonymous id survives the page change');
  await page.evaluate(() => scribble.flush());
  await eventually('the queue to drain', () => page.evaluate(() => localStorage.getItem('scribble_queue') === '[]'));
  await shot(page, 'tracker-test-page');

  const journey = await eventually('the stitched journey', async () => {
    const { status, body } = await api(`/v1/customers/${encodeURIComponent('u:' + email)}/journey`);
    return status === 200 && body.touchpoints >= 6 ? body : null;
  });
  assert.equal(journey.customer_id, `u:${email}`);
  assert.ok(journey.identities.includes(`a:${anonymousId}`), `identities ${journey.identities}`);
  assert.equal(journey.traits.persona, 'tester');
  const steps = journey.timeline.map((touch) => `${touch.touchpoint} ${touch.properties.path || ''}`.trim());
  assert.deepEqual(steps, [
    'site_visit /', 'site_visit /pricing', 'outbound_click /pricing', 'chat_started',
    'form_submit /pricing', 'site_visit /thanks',
  ]);
  const visit = journey.timeline[1].properties;
  assert.equal(visit.referrer, `${site}/`);
  assert.equal(journey.timeline[2].properties.url, 'https://partner.example/offer');
  assert.equal(journey.timeline[4].properties.form, 'signup');
  assert.deepEqual(consoleErrors, []);

  // The same customer in the dashboard's customer view.
  const dash = await context.newPage();
  await dashboard(dash, `tab=customer&customer=${encodeURIComponent('a:' + anonymousId)}`);
  assert.equal(await dash.locator('[data-customer]').getAttribute('data-customer'), `u:${email}`);
  assert.equal((await tableRows(dash, 'journey')).length, 6);
  await shot(dash, 'dashboard-customer');
  await context.close();
});

test('a send that fails stays queued in localStorage and is retried', async ({ browser, site }) => {
  const context = await browser.newContext();
  let refused = 0;
  const events = `${COLLECTOR}/v1/events**`;
  await context.route(events, (route) => {
    refused++;
    return route.abort('connectionrefused');
  });
  const page = await context.newPage();
  await page.goto(`${site}/quiet`);
  await page.waitForFunction(() => window.scribble && window.scribble.loaded);
  await page.evaluate(() => scribble.track('retry_probe', { attempt: 1 }));
  await eventually('a refused send', () => refused > 0);
  const queued = await page.evaluate(() => JSON.parse(localStorage.getItem('scribble_queue')).map((event) => event.touchpoint));
  assert.deepEqual(queued, ['site_visit', 'retry_probe']);
  await context.unroute(events);
  // No flush from here: the tracker's own backoff sends again.
  await eventually('the queue to drain on a retry', () => page.evaluate(() => localStorage.getItem('scribble_queue') === '[]'));
  const anonymousId = await page.evaluate(() => scribble.anonymousId());
  const journey = await eventually('the retried events', async () => {
    const { status, body } = await api(`/v1/customers/${encodeURIComponent('a:' + anonymousId)}/journey`);
    return status === 200 && body.touchpoints === 2 ? body : null;
  });
  assert.deepEqual(journey.timeline.map((touch) => touch.touchpoint), ['site_visit', 'retry_probe']);
  await context.close();
});

test('events still queued when the page is left go out with sendBeacon', async ({ browser, site }) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${site}/quiet`);
  await page.waitForFunction(() => window.scribble && window.scribble.loaded);
  await eventually('the first visit to be sent', () => page.evaluate(() => localStorage.getItem('scribble_queue') === '[]'));
  const anonymousId = await page.evaluate(() => scribble.anonymousId());
  const sends = [];
  page.on('request', (request) => {
    if (request.url().startsWith(`${COLLECTOR}/v1/events`)) sends.push(request.resourceType());
  });
  // Queued, not sent: the next batch would leave in 5 seconds, but the page goes first.
  await page.evaluate(() => scribble.track('beacon_probe'));
  await page.goto('about:blank');
  const journey = await eventually('the beaconed event', async () => {
    const { status, body } = await api(`/v1/customers/${encodeURIComponent('a:' + anonymousId)}/journey`);
    return status === 200 && body.touchpoints === 2 ? body : null;
  });
  assert.deepEqual(journey.timeline.map((touch) => touch.touchpoint), ['site_visit', 'beacon_probe']);
  assert.deepEqual(sends, ['ping'], 'one send, by navigator.sendBeacon');
  await context.close();
});

test('Do Not Track and a withdrawn consent keep the tracker silent', async ({ browser, site }) => {
  const context = await browser.newContext();
  const quiet = await context.newPage();
  await quiet.addInitScript(() => Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' }));
  await quiet.goto(`${site}/quiet`);
  await quiet.waitForFunction(() => window.scribble && window.scribble.loaded);
  assert.equal(await quiet.evaluate(() => scribble.anonymousId()), null);
  assert.equal(await quiet.evaluate(() => localStorage.getItem('scribble_queue')), null);

  const page = await context.newPage();
  await page.goto(`${site}/quiet`);
  await page.waitForFunction(() => window.scribble && window.scribble.loaded);
  const queued = await page.evaluate(() => JSON.parse(localStorage.getItem('scribble_queue') || '[]').length);
  const sent = await page.evaluate(() => localStorage.getItem('scribble_anonymous_id'));
  assert.ok(sent, 'without DNT the tracker keeps an id');
  await page.evaluate(() => { scribble.consent(false); scribble.track('should_not_be_sent'); });
  assert.equal(await page.evaluate(() => localStorage.getItem('scribble_queue')), null);
  assert.equal(await page.evaluate(() => localStorage.getItem('scribble_anonymous_id')), null);
  assert.ok(queued <= 1);
  await page.waitForTimeout(6000); // longer than the tracker's send interval
  const { status } = await api(`/v1/customers/${encodeURIComponent('a:' + sent)}/journey`);
  if (status === 200) {
    const { body } = await api(`/v1/customers/${encodeURIComponent('a:' + sent)}/journey`);
    assert.ok(!body.timeline.some((touch) => touch.touchpoint === 'should_not_be_sent'));
  }
  await context.close();
});

test('the dashboard state graph shows the API\'s transitions, with loops, and a click on a node anchors it', async ({ browser }) => {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const query = { view: 'state', steps: '4', top: '6' };
  await dashboard(page, `tab=paths&${new URLSearchParams(query)}`);
  assert.equal(await page.locator('[data-chart="paths"] canvas').count(), 1);
  const { body: graph } = await api('/v1/paths', query);
  const label = new Map(graph.nodes.map((node) => [node.id, node.label]));
  const expected = graph.edges
    .map((edge) => [label.get(edge.from), label.get(edge.to), edge.customers, edge.transitions].join(' | '))
    .sort();
  const shown = (await tableRows(page, 'paths'))
    .map(([from, to, customers, transitions]) => [from, to, number(customers), number(transitions)].join(' | '))
    .sort();
  assert.deepEqual(shown, expected);
  assert.ok(graph.edges.some((edge) => edge.from === edge.to
    || graph.edges.some((back) => back.from === edge.to && back.to === edge.from)), 'the demo has loops to draw');
  const customers = await page.locator('[data-customers]').getAttribute('data-customers');
  assert.equal(Number(customers), graph.customers);
  await shot(page, 'dashboard-state-graph');

  // Clicking a node anchors the paths on it: the URL and the graph now start there.
  const chartBox = await page.locator('[data-chart="paths"]').boundingBox();
  const [x, y] = await page.evaluate(() => {
    const series = scribbleDashboard.charts()[0].getModel().getSeriesByIndex(0);
    const data = series.getData();
    for (let index = 0; index < data.count(); index++) {
      if (data.getRawDataItem(index).node.label === 'site_visit') return data.getItemLayout(index);
    }
    throw new Error('no site_visit node');
  });
  await page.mouse.click(chartBox.x + x, chartBox.y + y);
  await page.waitForURL(/start=site_visit/);
  await page.waitForSelector('body[data-ready="true"]');
  const { body: anchored } = await api('/v1/paths', { ...query, start: 'site_visit' });
  assert.equal(Number(await page.locator('[data-customers]').getAttribute('data-customers')), anchored.customers);

  // Changing a control keeps the view in the URL.
  await page.selectOption('select[name="view"]', 'positional');
  await page.waitForSelector('body[data-ready="true"]');
  assert.match(page.url(), /view=positional/);
  assert.match(page.url(), /tab=paths/);
  assert.match(page.url(), /start=site_visit/);
  await page.close();
});

test('the dashboard Sankey shows the API\'s positional graph', async ({ browser }) => {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const query = { view: 'positional', start: 'site_visit', steps: '4', top: '4' };
  await dashboard(page, `tab=paths&${new URLSearchParams(query)}`);
  const { body: graph } = await api('/v1/paths', query);
  const label = new Map(graph.nodes.map((node) => [node.id, `${node.step}. ${node.label}`]));
  const expected = graph.edges.map((edge) => `${label.get(edge.from)} > ${label.get(edge.to)} = ${edge.customers}`).sort();
  const shown = (await tableRows(page, 'paths')).map(([from, to, customers]) => `${from} > ${to} = ${number(customers)}`).sort();
  assert.deepEqual(shown, expected);
  await shot(page, 'dashboard-sankey');
  await page.close();
});

test('the dashboard funnel shows the API\'s funnel', async ({ browser }) => {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const steps = 'site_visit,form_submit,purchase';
  await dashboard(page, `tab=funnel&funnel=${steps}&window=30d`);
  const { body: funnel } = await api('/v1/funnel', { steps, window: '30d' });
  const expected = funnel.steps.map((s) => [`${s.step}. ${s.label}`, s.entered, s.converted, s.dropped]);
  const shown = (await tableRows(page, 'funnel')).map(([step, entered, converted, dropped]) =>
    [step, number(entered), number(converted), number(dropped)]);
  assert.deepEqual(shown, expected);
  assert.equal(await page.locator('[data-chart="funnel"] canvas').count(), 1);
  await shot(page, 'dashboard-funnel');
  await page.close();
});

test('the dashboard overview, attribution and influence views draw from the API', async ({ browser }) => {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  await dashboard(page, 'tab=overview');
  const { body: overview } = await api('/v1/overview', { interval: 'day' });
  const { body: metrics } = await api('/v1/metrics');
  const kpis = await page.locator('.kpi .value').allTextContents();
  assert.equal(number(kpis[0]), overview.customers);
  assert.equal(number(kpis[1]), overview.events);
  assert.equal(number(kpis[2]), overview.conversions);
  assert.equal(kpis[3], `${(100 * metrics.linear_share).toFixed(1)}%`);
  assert.equal(await page.locator('[data-chart="linearity"] canvas').count(), 1);
  await shot(page, 'dashboard-overview');

  await dashboard(page, 'tab=attribution');
  const { body: attribution } = await api('/v1/attribution');
  const rows = await tableRows(page, 'attribution');
  assert.deepEqual(rows.map((row) => row[0]), attribution.rows.map((row) => row.name));
  assert.equal(Number(rows[0][1]), Number(attribution.rows[0].first_touch.conversions.toFixed(1)));
  await shot(page, 'dashboard-attribution');

  await dashboard(page, 'tab=influence');
  const { body: influence } = await api('/v1/influence');
  assert.deepEqual((await tableRows(page, 'influence')).map((row) => row[0]), influence.rows.map((row) => row.touchpoint));
  await shot(page, 'dashboard-influence');
  await page.close();
});

test('a dashboard table exports the API\'s CSV and a chart exports PNG and SVG', async ({ browser }) => {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  await dashboard(page, 'tab=funnel&funnel=site_visit,purchase');
  const panel = page.locator('section', { has: page.locator('table[data-table="funnel"]') });
  const [csv] = await Promise.all([page.waitForEvent('download'), panel.locator('.tools button', { hasText: 'CSV' }).click()]);
  const text = await (await csv.createReadStream()).toArray();
  const expected = await (await fetch(new URL('/v1/funnel?steps=site_visit,purchase&format=csv', API), {
    headers: { 'x-read-key': READ_KEY },
  })).text();
  assert.equal(Buffer.concat(text).toString(), expected);
  const chart = page.locator('section', { has: page.locator('[data-chart="funnel"]') });
  const [png] = await Promise.all([page.waitForEvent('download'), chart.locator('.tools button', { hasText: 'PNG' }).click()]);
  assert.equal(png.suggestedFilename(), 'scribble-funnel.png');
  const [svg] = await Promise.all([page.waitForEvent('download'), chart.locator('.tools button', { hasText: 'SVG' }).click()]);
  const svgText = Buffer.concat(await (await svg.createReadStream()).toArray()).toString();
  assert.match(svgText, /^<svg/);
  await context.close();
});

// ---- runner -----------------------------------------------------------------------------------

mkdirSync(ARTIFACTS, { recursive: true });
// Playwright starts chromium with a fresh --user-data-dir of its own under TMPDIR (it refuses one
// in args); pointing TMPDIR at a directory of ours lets us remove it whatever happens.
const profile = mkdtempSync(join(tmpdir(), 'scribble-chromium-'));
process.env.TMPDIR = profile;
const siteServer = await startSite();
const site = `http://127.0.0.1:${siteServer.address().port}`;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let passed = 0;
let failed = 0;
for (const { name, body } of tests) {
  const started = Date.now();
  try {
    await body({ browser, site });
    passed++;
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed++;
    console.log(`FAIL ${name}\n${error.stack || error}`);
  }
}
await browser.close();
siteServer.close();
rmSync(profile, { recursive: true, force: true });
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
