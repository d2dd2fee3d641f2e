// Drive fctrace's web UI in a real Chromium: search by application (last hour, failed
// requests only), open a trace, read the waterfall, the topology and sequence views, and
// download the trace as JSON. Usage: node ui_browser.js QUERY_URL SERVICE SCREENSHOT_PATH.
// Prints JSON with the result rows, the waterfall rows (name, depth indent, platform or
// not), the views' applications and calls, and the downloaded trace's id.
const { chromium } = require('playwright-core');

const [url, service, screenshot] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // every request the page made (the icon included) and what it got
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  await page.goto(url);
  await page.waitForSelector(`#service option[value="${service}"]`, { state: 'attached' });
  await page.selectOption('#service', service);
  await page.selectOption('#range', '1h');
  await page.selectOption('#outcome', 'errors');
  await page.click('#go');
  await page.waitForSelector('#results tbody tr');
  const results = await page.$$eval('#results tbody tr', (rows) => rows.map((r) => r.dataset.trace));
  await page.click('#results tbody tr:first-child a');
  await page.waitForSelector('#waterfall tbody tr');
  const rows = await page.$$eval('#waterfall tbody tr', (trs) =>
    trs.map((tr) => ({
      name: tr.querySelector('td.name').textContent.trim(),
      indent: tr.querySelector('td.name .op').style.getPropertyValue('--indent'),
      platform: tr.classList.contains('platform'),
      application: tr.children[2].textContent.trim(),
      status: tr.children[5].textContent.trim(),
    })),
  );
  const summary = await page.textContent('#trace-summary');
  const topology = await page.$$eval('#topology g.app', (gs) => gs.map((g) => g.dataset.app));
  const edges = await page.$$eval('#topology g.edge', (gs) => gs.map((g) => `${g.dataset.from} -> ${g.dataset.to}: ${g.querySelector('text').textContent}`));
  const calls = await page.$$eval('#sequence g.call', (gs) => gs.map((g) => ({
    from: g.dataset.from, to: g.dataset.to, client: Number(g.dataset.client), server: Number(g.dataset.server),
    label: g.querySelector('text.times').textContent,
  })));
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const fs = require('fs');
  const downloaded = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  const downloadName = download.suggestedFilename();
  await page.click('#waterfall tbody tr:last-child');
  await page.waitForSelector('#details:not([hidden])');
  const details = await page.textContent('#details');
  await page.screenshot({ path: screenshot, fullPage: true });
  const icon = await page.$eval('link[rel="icon"]', (l) => l.href);
  await browser.close();
  console.log(JSON.stringify({
    results, rows, summary, details, errors, failed, icon, topology, edges, calls,
    downloadName, downloadedTrace: downloaded.data[0].traceID, downloadedSpans: downloaded.data[0].spans.length,
  }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
