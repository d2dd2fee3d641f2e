// Drive fctrace's web UI in a real Chromium: search by application, open a trace, read the
// waterfall. Usage: node ui_browser.js QUERY_URL SERVICE SCREENSHOT_PATH. Prints JSON with
// the result rows and the waterfall rows (name, depth indent, platform or not).
const { chromium } = require('playwright-core');

const [url, service, screenshot] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // every request the page made (the icon included) and what it got
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  await page.goto(url);
  await page.waitForSelector(`#service option[value="${service}"]`, { state: 'attached' });
  await page.selectOption('#service', service);
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
  await page.click('#waterfall tbody tr:last-child');
  await page.waitForSelector('#details:not([hidden])');
  const details = await page.textContent('#details');
  await page.screenshot({ path: screenshot, fullPage: true });
  const icon = await page.$eval('link[rel="icon"]', (l) => l.href);
  await browser.close();
  console.log(JSON.stringify({ results, rows, summary, details, errors, failed, icon }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
