// Headless Chromium (Debian's /usr/bin/chromium driven by playwright-core) loads the
// demo page from heraldd, connects, subscribes, sees a notification published through
// the HTTP API, then leaves, comes back (reload) and sees resume deliver what was
// published while it was away. Screenshots go to $ARTIFACT_DIR (default: cwd).
// Run: HERALDD=build/server/heraldd node tests/browser/demo_test.mjs
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
const js = join(here, '../../client-sdk/js');
const { chromium } = createRequire(join(js, 'package.json'))('playwright-core');
const { startHeraldd, mintToken, publish } = await import(join(js, 'test/helpers.mjs'));
const artifacts = process.env.ARTIFACT_DIR ?? process.cwd();

test('demo page shows live notifications and resumes after a reload', async () => {
  const server = await startHeraldd();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(server.http + '/');
    await page.fill('input[name=token]', mintToken('webuser'));
    await page.click('#connect-button');
    await page.waitForSelector('#state[data-state=ready]', { timeout: 10000 });
    await page.fill('input[name=channel]', 'user:webuser');
    await page.click('#subscribe-button');
    await page.waitForFunction(() => document.getElementById('log').textContent.includes('subscribed user:webuser'));

    const first = await publish(server, 'user:webuser', { text: 'margin call on account 7' },
      { priority: 'P0', type: 'margin_call' });
    const row1 = await page.waitForSelector(`tr.notification[data-offset="${first.offset}"]`, { timeout: 10000 });
    assert.match(await row1.textContent(), /P0.*user:webuser.*margin_call.*margin call on account 7/s);
    await page.screenshot({ path: join(artifacts, 'browser_demo_live.png'), fullPage: true });

    // Away: the page is gone while two more notifications are published.
    await page.goto('about:blank');
    const second = await publish(server, 'user:webuser', { text: 'order 8812 filled' }, { priority: 'P1', type: 'order_filled' });
    const third = await publish(server, 'user:webuser', { text: 'new login from Lisbon' }, { priority: 'P3', type: 'security' });

    // Back: token, channels and positions come from localStorage; resume delivers both.
    await page.goto(server.http + '/');
    await page.waitForSelector(`tr.notification[data-offset="${third.offset}"]`, { timeout: 10000 });
    await page.waitForSelector(`tr.notification[data-offset="${second.offset}"]`, { timeout: 10000 });
    const offsets = await page.$$eval('tr.notification', (rows) => rows.map((r) => Number(r.dataset.offset)));
    assert.deepEqual(offsets.sort(), [second.offset, third.offset], 'resume delivers exactly what was missed');
    assert.match(await page.textContent('#log'), /resumed, recovered=true/);
    await page.screenshot({ path: join(artifacts, 'browser_demo_resumed.png'), fullPage: true });
    assert.ok(!consoleLines.some((l) => l.startsWith('pageerror')), consoleLines.join('\n'));
  } finally {
    await browser.close();
    await server.stop();
  }
});
