// The dashboard in a real browser: Debian's chromium driven by playwright-core, with the
// operator's PKCS#12 as its client certificate. Run by tests/dashboard_browser_test.sh, which
// makes the fixture (tests/admin_lib.sh) and passes it in the environment. Prints TAP-like
// "ok -" / "FAIL -" lines; exits 1 on any failure.
'use strict';
const {chromium} = require('playwright-core');
const {execFileSync} = require('child_process');
const path = require('path');

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const URL = env('ADMIN_URL');
const IOTPKI = env('IOTPKI');
const CA = env('CA');
const PASS = env('IOTPKI_OPERATOR_PASSPHRASE');
const SHOTS = env('SCREENSHOT_DIR');
let failed = 0;
const ok = (name) => console.log('ok - ' + name);
const fail = (name) => { failed++; console.log('FAIL - ' + name); };
const equal = (name, got, want) =>
  (String(got) === String(want) ? ok(`${name} (${got})`) : fail(`${name} ('${got}' != '${want}')`));
const cli = (...args) => execFileSync(IOTPKI, args, {encoding: 'utf8'});

async function context(browser, pfx) {
  const options = {ignoreHTTPSErrors: true, viewport: {width: 1280, height: 800}};
  if (pfx) options.clientCertificates = [{origin: URL, pfxPath: pfx, passphrase: PASS}];
  return browser.newContext(options);
}

async function view(page, name) {
  await page.goto(`${URL}/admin/#${name}`);
  await page.waitForSelector(`main[data-view="${name.split('/')[0]}"][data-ready="1"]`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    // --- refused without an operator certificate ---
    for (const [name, pfx] of [['no certificate', null], ['a device certificate', env('DEVICE_P12')]]) {
      const ctx = await context(browser, pfx);
      const page = await ctx.newPage();
      const res = await page.goto(`${URL}/admin/`);
      equal(`${name}: refused`, res.status(), 403);
      await ctx.close();
    }

    const ctx = await context(browser, env('OPERATOR_P12'));
    const page = await ctx.newPage();
    page.on('pageerror', (e) => fail('page error: ' + e.message));

    // --- the overview's counts are the CLI's ---
    await view(page, 'overview');
    equal('who is logged in', await page.textContent('#who'), 'alice (operator)');
    equal('total devices equal iotpki device count', await page.textContent('#count-total'),
          cli('device', 'count', '--dir', CA).trim());
    equal('manufactured equal iotpki device count --state manufactured',
          await page.textContent('#count-manufactured'),
          cli('device', 'count', '--dir', CA, '--state', 'manufactured').trim());
    equal('expiring within 365 days equal the CLI', await page.textContent('#expiring-365'),
          cli('device', 'count', '--dir', CA, '--expiring-within', '365d').trim());
    // Issued per day: today's row is every certificate the store recorded today (sqlite3).
    const today = new Date().toISOString().slice(0, 10);
    equal('certificates issued today equal the store\'s (sqlite3)',
          await page.textContent(`tr.issued-day:has(td:text-is("${today}")) td:nth-child(2)`),
          execFileSync('sqlite3', [path.join(CA, 'iotpki.db'),
            "SELECT COUNT(*) FROM certificates WHERE created_at >= (strftime('%s','now') / 86400) * 86400"],
          {encoding: 'utf8'}).trim());
    await page.screenshot({path: path.join(SHOTS, 'dashboard-overview.png'), fullPage: true});

    await view(page, 'expiry');
    equal('expiry chart drawn', await page.locator('svg.chart rect.bar').count(), 365);
    await page.screenshot({path: path.join(SHOTS, 'dashboard-expiry.png'), fullPage: true});

    // --- pause the campaign from the page; the store says paused ---
    await view(page, 'campaigns');
    await page.screenshot({path: path.join(SHOTS, 'dashboard-campaigns.png'), fullPage: true});
    await page.click('button[data-action="pause"][data-campaign="spring"]');
    await page.waitForFunction(() => /-> paused/.test(document.getElementById('status').textContent));
    const status = cli('campaign', 'status', '--dir', CA, 'spring');
    equal('iotpki campaign status after the click', status.split('\n')[0].split(',')[0],
          'campaign spring: paused');
    await page.waitForSelector('button[data-action="resume"][data-campaign="spring"]');
    ok('the page offers resume');

    await view(page, `device/${env('DEVICE_SERIAL')}`);
    equal('device page found by serial',
          (await page.textContent('main')).includes(env('DEVICE_SERIAL')), true);
    equal('device page has its audit rows section',
          await page.locator('#device-audit table').count(), 1);
    await page.screenshot({path: path.join(SHOTS, 'dashboard-device.png'), fullPage: true});

    await view(page, 'revocations');
    await page.screenshot({path: path.join(SHOTS, 'dashboard-revocations.png'), fullPage: true});
    await view(page, 'audit');
    await page.waitForSelector('#audit-verdict');
    equal('audit chain verified intact', (await page.textContent('#audit-verdict')).startsWith('Intact'), true);
    await page.screenshot({path: path.join(SHOTS, 'dashboard-audit.png'), fullPage: true});
    await ctx.close();

    // --- the compliance report opens in the same browser ---
    const plain = await browser.newContext({viewport: {width: 1100, height: 900}});
    const report = await plain.newPage();
    await report.goto('file://' + env('REPORT'));
    equal('compliance report: audit chain verdict', await report.textContent('#verdict-audit-chain'), 'pass');
    equal('compliance report: CRL verdict', await report.textContent('#verdict-crl-freshness'), 'pass');
    await report.screenshot({path: path.join(SHOTS, 'compliance-report.png'), fullPage: true});
    await plain.close();
  } finally {
    await browser.close();
  }
  console.log(failed ? `${failed} failed` : 'all passed');
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.log('FAIL - ' + e.stack);
  process.exit(1);
});
