// Drive fctrace's Functions view and a function's page in a real Chromium.
// Usage: node ui_functions.js QUERY_URL SERVICE/FUNCTION SCREENSHOT_DIR. Prints JSON: the
// functions table, the charts (title and points drawn per series), the instances and
// requests, the record a request id opens with its logs, the trace it links to with its
// logs, and any script errors.
const { chromium } = require('playwright-core');

const [url, fn, shots] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const offsite = [];
  page.on('request', (r) => { if (!r.url().startsWith(url.replace(/\/$/, ''))) offsite.push(r.url()); });
  await page.goto(url);
  await page.click('#nav-functions');
  await page.waitForSelector('#functions tbody tr');
  const functions = await page.$$eval('#functions tbody tr', (rows) =>
    rows.map((r) => [...r.children].map((td) => td.textContent.trim())));
  await page.screenshot({ path: `${shots}/functions.png`, fullPage: true });
  await page.click(`#functions a[href$="${fn}"]`);
  await page.waitForSelector('#fn-charts figure.chart');
  await page.waitForSelector('#fn-requests tbody tr.row');
  const charts = await page.$$eval('#fn-charts figure.chart', (figs) =>
    figs.map((f) => ({
      title: f.dataset.metric,
      points: [...f.querySelectorAll('polyline.series')].map((p) => p.getAttribute('points').trim().split(/\s+/).filter(Boolean).length),
    })));
  const instances = await page.$$eval('#fn-instances tbody tr', (rows) =>
    rows.map((r) => [...r.children].map((td) => td.textContent.trim())));
  const requests = await page.$$eval('#fn-requests tbody tr.row', (rows) =>
    rows.map((r) => [...r.children].map((td) => td.textContent.trim())));
  await page.click('#fn-requests tbody tr.row:first-child a');
  await page.waitForSelector('#fn-record:not([hidden]) table');
  await page.waitForSelector('#fn-record-logs pre.logs, #fn-record-logs p');
  const record = await page.textContent('#fn-record');
  const recordLogs = await page.textContent('#fn-record-logs');
  const traceLink = await page.getAttribute('#fn-record-trace', 'href').catch(() => null);
  await page.screenshot({ path: `${shots}/function.png`, fullPage: true });
  let waterfall = 0;
  let traceLogs = null;
  if (traceLink) {
    await page.click('#fn-record-trace');
    await page.waitForSelector('#waterfall tbody tr');
    waterfall = await page.$$eval('#waterfall tbody tr', (rows) => rows.length);
    await page.waitForSelector('#trace-logs pre.logs, #trace-logs p');
    traceLogs = await page.textContent('#trace-logs');
  }
  await browser.close();
  console.log(JSON.stringify({ functions, charts, instances, requests, record, recordLogs, traceLink, waterfall, traceLogs, errors, offsite }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
