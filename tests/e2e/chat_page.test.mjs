// The chat page in a real browser: Debian's Chromium driven by playwright-core
// asks a question, waits for the streamed answer and its numbered citations,
// saves a screenshot, then stops a slow answer with the Stop button and checks
// that the upstream request was cancelled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, startFakeOpenAI, ingestSampleKb, sleep } from '../integration/helpers.mjs';

const OUT = process.env.RAGD_TEST_OUTPUT || path.join(tmpdir(), 'ragd-e2e');
let fake, srv, browser, profile;

before(async () => {
  mkdirSync(OUT, { recursive: true });
  fake = await startFakeOpenAI();
  srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-fake-1' } });
  await ingestSampleKb(srv.base);
  profile = mkdtempSync(path.join(tmpdir(), 'ragd-chromium-'));
  // A fresh profile (--user-data-dir) per run: playwright takes it as the
  // persistent context's folder.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 900, height: 700 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await srv?.stop();
  await fake?.stop();
});

test('ask a question, watch the answer stream in with citations linking to sources', async () => {
  const text = 'Refunds reach your card within 3 business days [1]. Store credit is instant [2].';
  await fake.configure({ reset: true, text, delay_ms: 20 });
  const page = await browser.newPage();
  await page.goto(srv.base + '/');
  assert.equal(await page.title(), 'ragd · ask the knowledge base');
  await page.fill('#question', 'How long do refunds take?');
  await page.click('#send');
  const turn = page.locator('#log li.turn').first();
  await turn.locator('.answer.streaming').waitFor({ timeout: 10000 });
  await page.waitForSelector('#log li.turn[data-state="done"]', { timeout: 20000 });
  assert.equal(await turn.locator('.answer').innerText(), text);
  const cites = turn.locator('sup.cite a');
  assert.equal(await cites.count(), 2);
  assert.equal(await cites.nth(0).getAttribute('href'), '#t1-src-1');
  const sources = turn.locator('ol.sources li');
  assert.ok((await sources.count()) >= 2);
  assert.match(await sources.nth(0).locator('a').getAttribute('href'), /^https:\/\/help\.hanbit-market\.example\//);
  const shot = path.join(OUT, 'chat-answer.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 1000, 'a screenshot was written');
  await page.close();
});

test('the Stop button cancels the answer and its upstream request', async () => {
  const words = Array.from({ length: 200 }, (_, i) => ` word${i}`).join('');
  await fake.configure({ reset: true, text: words, delay_ms: 150 });
  await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
  const page = await browser.newPage();
  await page.goto(srv.base + '/');
  await page.fill('#question', 'refund policy');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('.answer')?.textContent.includes('word2'), null, { timeout: 10000 });
  await page.click('#stop');
  await page.waitForSelector('#log li.turn[data-state="stopped"]', { timeout: 5000 });
  assert.equal(await page.locator('#status').innerText(), 'Stopped.');
  let entry;
  for (let i = 0; i < 100 && !entry?.client_aborted; i++) {
    entry = (await fake.log()).at(-1);
    await sleep(20);
  }
  assert.ok(entry?.client_aborted, 'the upstream request was cancelled');
  assert.ok(!(await page.locator('.answer').innerText()).includes('word199'));
  await page.close();
});
