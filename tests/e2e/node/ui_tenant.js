// fctrace's web UI with tenants, in a real Chromium: the page asks for the token once,
// then lists the tenant's applications and finds its traces. Usage: node ui_tenant.js
// QUERY_URL TOKEN. Prints JSON: whether the dialog was shown, the applications listed,
// the traces found, script errors.
const { chromium } = require('playwright-core');

const [url, token] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('#token-dialog[open]');
  await page.fill('#token-input', token);
  await page.click('#token-ok');
  await page.waitForSelector('#service option:nth-child(2)', { state: 'attached' });
  const applications = await page.$$eval('#service option', (os) => os.map((o) => o.value).filter(Boolean));
  await page.selectOption('#range', '1h');
  await page.click('#go');
  await page.waitForSelector('#results tbody tr');
  const results = await page.$$eval('#results tbody tr', (rows) => rows.map((r) => r.dataset.trace));
  // the token is kept for the session: a reload asks no more
  await page.reload();
  await page.waitForSelector('#service option:nth-child(2)', { state: 'attached' });
  const askedAgain = await page.$eval('#token-dialog', (d) => d.open);
  await browser.close();
  console.log(JSON.stringify({ applications, results, askedAgain, errors }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
