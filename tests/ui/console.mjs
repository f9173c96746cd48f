// The operator console (/ui/) in a real browser: Debian's headless Chromium, driven by
// playwright-core (no browser download: `executablePath` is the Debian binary).
//
// Run by tests/ui_browser.rs against a running `gatewatch demo`:
//   UI_URL=http://127.0.0.1:PORT/ui/ UI_TOKEN=<the demo's token> UI_SCREENSHOT=out/console.png \
//     node tests/ui/console.mjs
// Exits non-zero, with the step that failed, on any failure. Besides UI_SCREENSHOT (the alert
// view beside the live list) it saves console-entity.png and console-plot.png next to it.
import { chromium } from 'playwright-core';
import path from 'node:path';

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (see the head of tests/ui/console.mjs)`);
  return v;
};
const url = need('UI_URL');
const token = need('UI_TOKEN');
const shot = need('UI_SCREENSHOT');
const api = new URL('../api/v1/', url);
const origin = new URL(url).origin;
const viewport = { width: 1280, height: 800 };

const t0 = Date.now();
const step = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${m}`);
const check = (ok, m) => {
  if (!ok) throw new Error(m);
};

/** Fails the run on script errors, CSP refusals, requests off the origin, or a URL with the token. */
function watch(page, problems) {
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin + '/') && !u.startsWith('data:')) problems.push(`request off the origin: ${u}`);
    if (u.includes(token)) problems.push(`the token in a request URL: ${u}`);
    if (u.startsWith(origin + '/api/') && r.headers().authorization !== `Bearer ${token}` && !r.headers().authorization?.startsWith('Bearer not-the-token'))
      problems.push(`an API request without the bearer token: ${u}`);
  });
}

async function unlock(page, t) {
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#token', t);
  await page.click('#unlock');
}

async function apiGet(p) {
  const r = await fetch(new URL(p, api), { headers: { Authorization: `Bearer ${token}` } });
  check(r.ok, `GET ${p}: HTTP ${r.status}`);
  return r.json();
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
try {
  step(`Chromium ${browser.version()}, console at ${url}`);
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  watch(page, problems);

  // 1. The page asks for the token first, and shows nothing else.
  await page.goto(url);
  await page.locator('#token').waitFor({ state: 'visible' });
  check(await page.locator('#console').isHidden(), 'the console shows before a token was given');
  check((await page.getAttribute('#token', 'type')) === 'password', 'the token field is not a password field');
  await unlock(page, token);
  await page.locator('#console').waitFor({ state: 'visible', timeout: 10_000 });
  check(await page.locator('#login').isHidden(), 'the prompt stays after the right token');
  step('unlocked with the demo token');

  // 2. The live list: the first alert appears (the demo raises one within seconds).
  const rows = page.locator('#alerts tbody tr');
  await rows.first().waitFor({ state: 'visible', timeout: 60_000 });
  step(`first alert listed (${await rows.count()} rows)`);
  const first = rows.first();
  const id = await first.getAttribute('data-id');
  check(/^[0-9a-f]{8,}$/.test(id || ''), `the row's alert id: ${id}`);
  const listed = await apiGet(`alerts/${encodeURIComponent(id)}`);
  const cells = await first.locator('td').allTextContents();
  check(cells.length === 6, `a row has ${cells.length} cells`);
  check(cells[1].toLowerCase() === listed.severity, `severity cell ${cells[1]} for ${listed.severity}`);
  check(cells[2] === listed.detector && cells[3] === listed.rule, `detector/rule cells ${cells[2]} ${cells[3]}`);
  check(cells[4] === `${listed.entity.kind}:${listed.entity.id}`, `entity cell ${cells[4]}`);
  check(cells[5] === listed.summary, `summary cell ${cells[5]}`);
  check(await first.locator('.sev.sev-' + listed.severity).count() === 1, 'no severity badge');
  check(/\d+ alerts?|newest \d+/.test(await page.textContent('#alert-count')), 'no alert count');
  check(/updated/.test(await page.textContent('#poll-status')), 'no "last updated"');

  // 3. The alert view with its evidence, as a key/value table.
  await first.click();
  const view = page.locator('#alert-view');
  await view.waitFor({ state: 'visible', timeout: 10_000 });
  check((await view.getAttribute('data-id')) === id, 'the alert view shows another alert');
  check((await view.locator('h3').textContent()) === listed.summary, 'the alert view lacks the summary');
  const evidenceKeys = Object.keys(listed.evidence);
  check(evidenceKeys.length > 0, `alert ${id} has no evidence to show`);
  const evidence = page.locator('#alert-view #evidence');
  await evidence.waitFor({ state: 'visible' });
  const shownKeys = await evidence.locator('tbody > tr > th').allTextContents();
  check(JSON.stringify(shownKeys) === JSON.stringify(evidenceKeys), `evidence keys shown ${shownKeys}, kept ${evidenceKeys}`);
  const shownValues = await evidence.locator('tbody > tr > td').allTextContents();
  evidenceKeys.forEach((k, i) => {
    const v = listed.evidence[k];
    const want = typeof v === 'string' ? v : JSON.stringify(v);
    check(shownValues[i].replace(/, /g, ',') === want.replace(/, /g, ','), `evidence ${k}: shown ${shownValues[i]}, kept ${want}`);
  });
  await view.locator('#timeline').waitFor();
  const timeline = await view.locator('#timeline').textContent();
  // The demo delivers through its file sink: the alert was raised and queued for it.
  check(/raised/.test(timeline) && /file:demo/.test(timeline), `the timeline lacks the raise or the demo sink: ${timeline}`);
  check(await view.locator('.entity-link').count() === 1, 'no link to the entity');
  step(`alert ${id} opened: ${evidenceKeys.length} evidence rows, timeline shown`);

  // The selection stays while the list refreshes (every 2 s).
  await page.waitForTimeout(4500);
  check((await page.locator('#alerts tbody tr.sel').getAttribute('data-id')) === id, 'the selection was lost on a refresh');
  const stored = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie, location.href]));
  check(!stored.includes(token), 'the token is kept in storage, a cookie or the URL');

  // 4. The entity view from the alert: the rule that raised it still holds the entity (at
  // least when it last alerted about it), so a card of that detector is shown.
  await view.locator('.entity-link').click();
  const entity = page.locator('#entity-view');
  await entity.waitFor({ state: 'visible', timeout: 10_000 });
  await entity.locator('.entity-state, .entity-empty').first().waitFor({ timeout: 10_000 });
  check((await entity.locator('h3').textContent()) === listed.entity.id, 'the entity view names another entity');
  const cards = await entity.locator('.entity-state').allTextContents();
  check(cards.some((c) => c.includes(listed.detector)), `no state card of ${listed.detector} for the alert's entity: ${cards.length} card(s)`);
  step(`entity view: ${cards.length} detector state card(s)`);
  await page.screenshot({ path: path.join(path.dirname(shot), 'console-entity.png') });
  await entity.locator('button.back').click();
  await page.locator('#alert-view #evidence').waitFor({ state: 'visible', timeout: 10_000 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: shot });
  step(`screenshot: ${shot}`);

  // 5. A wrong token is refused, and a 401 mid-session brings the prompt back.
  const other = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const p2 = await other.newPage();
  watch(p2, problems);
  await p2.goto(url);
  await unlock(p2, 'not-the-token-' + Math.random().toString(36).slice(2));
  await p2.locator('#login-msg').waitFor({ state: 'visible', timeout: 10_000 });
  check(/401|refused/i.test(await p2.textContent('#login-msg')), 'no message for a wrong token');
  check(await p2.locator('#console').isHidden(), 'the console shows after a wrong token');
  check(await p2.locator('#token').isVisible(), 'the prompt is gone after a wrong token');
  step('a wrong token gets the prompt back, with a message');
  await unlock(p2, token);
  await p2.locator('#alerts tbody tr').first().waitFor({ state: 'visible', timeout: 10_000 });
  await p2.route('**/api/v1/**', (r) => r.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"a valid bearer token is required"}' }));
  await p2.locator('#token').waitFor({ state: 'visible', timeout: 10_000 });
  check(await p2.locator('#console').isHidden(), 'the console stays after a 401');
  check((await p2.locator('#alerts tbody tr').count()) === 0, 'the alerts stay on the page after a 401');
  await p2.unroute('**/api/v1/**');
  step('a 401 in a session locks the console');

  // 6. The latency plot of a route, on an entity answer made up here (the demo's routes hold a
  // baseline only once warmed up); the lookup box, with a route id that needs encoding.
  await unlock(p2, token);
  await p2.locator('#console').waitFor({ state: 'visible', timeout: 10_000 });
  const route = 'GET /v1/orders/{id}';
  let asked = '';
  await p2.route('**/api/v1/entities/**', (r) => {
    asked = new URL(r.request().url()).pathname;
    const baseline = Array.from({ length: 30 }, (_, i) => 110 + ((i * 37) % 23));
    const recent = [118, 121, 115, 124, 119, 131, 180, 260, 340, 355, 362, 348];
    r.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({
        entity: { kind: 'route', id: route },
        state: [{ rule: 'latency-regression', detector: 'latency_anomaly', partition: 'gateway-logs/3', held: { bucket_ms: 60000, warm: true, series: [{ percentile: 'p95', window_ms: 720000, bucket_ms: 60000, threshold_ms: 200, baseline_ms: baseline, recent_ms: recent }] } }],
        alerts: [],
      }),
    });
  });
  await p2.selectOption('#lookup-kind', 'route');
  await p2.fill('#lookup-id', route);
  await p2.click('#lookup button[type=submit]');
  const chart = p2.locator('#entity-view svg.chart');
  await chart.waitFor({ state: 'visible', timeout: 10_000 });
  check(asked.endsWith('/api/v1/entities/route/GET%20%2Fv1%2Forders%2F%7Bid%7D'), `the entity id was not encoded: ${asked}`);
  check((await chart.locator('path.recent').count()) === 1, 'no line of recent values');
  check((await chart.locator('rect.band').count()) === 1 && (await chart.locator('line.median').count()) === 1, 'no baseline band and median');
  check((await chart.locator('circle.pt.hot').count()) >= 5, 'the points above the baseline are not marked');
  check((await chart.locator('line.threshold').count()) === 1, 'no threshold line');
  check((await chart.locator('text').allTextContents()).some((t) => / ms$/.test(t)), 'no axis label in ms');
  await p2.screenshot({ path: path.join(path.dirname(shot), 'console-plot.png') });
  step('latency plot drawn');
  await other.close();

  check(problems.length === 0, 'problems:\n  ' + problems.join('\n  '));
  step('all checks passed');
} finally {
  await browser.close();
}
