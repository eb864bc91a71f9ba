// Graceful shutdown: on SIGTERM ragd stops accepting, reports not ready,
// lets answers finish within the grace period, ends the rest with an error
// event "shutting_down", and exits 0 with the store closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { startServer, startFakeOpenAI, ingestSampleKb, parseSse, sleep } from './helpers.mjs';

async function openStream(base, message) {
  const res = await fetch(base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message }),
  });
  const reader = res.body.getReader();
  let text = '';
  const readAll = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += Buffer.from(value).toString('utf8');
    }
  })();
  return { readAll, seen: () => text };
}

test('SIGTERM drains: short answers finish, long ones end with shutting_down', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  const srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_SHUTDOWN_GRACE_MS: '600' } });
  await ingestSampleKb(srv.base);
  // 200 words, 50 ms apart: far longer than the grace period.
  const words = Array.from({ length: 200 }, (_, i) => ` w${i}`).join('');
  await fake.configure({ reset: true, text: words, delay_ms: 50 });
  const long = await openStream(srv.base, 'refund policy');
  while (!long.seen().includes('event: text_delta')) await sleep(10);

  const exited = once(srv.child, 'exit');
  srv.child.kill('SIGTERM');
  // While draining: not ready, and no new connections.
  await sleep(150);
  const ready = await fetch(srv.base + '/readyz').then((r) => r.status, (e) => `refused: ${e.cause?.code}`);
  assert.ok(ready === 503 || String(ready).startsWith('refused'), `readyz during drain: ${ready}`);

  const text = await long.readAll;
  const evs = parseSse(text).events;
  const last = evs.at(-1);
  assert.equal(last.event, 'error', text.slice(-300));
  assert.equal(JSON.parse(last.data).error.code, 'shutting_down');
  assert.ok(evs.some((e) => e.event === 'text_delta'));
  const [code] = await exited;
  assert.equal(code, 0, srv.stderr());
  // The upstream transfer was abandoned, not left running.
  const entry = (await fake.log()).at(-1);
  assert.equal(entry.client_aborted, true);
  await srv.stop();
});

test('SIGTERM with an answer that fits in the grace period lets it finish', async (t) => {
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  const srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_SHUTDOWN_GRACE_MS: '5000' } });
  await ingestSampleKb(srv.base);
  await fake.configure({ reset: true, text: ' one two three four five six [1].', delay_ms: 100 });
  const s = await openStream(srv.base, 'refund policy');
  while (!s.seen().includes('event: text_delta')) await sleep(10);
  srv.child.kill('SIGTERM');
  const evs = parseSse(await s.readAll).events;
  assert.equal(evs.at(-1).event, 'done');
  const text = evs.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');
  assert.equal(text, ' one two three four five six [1].');
  await srv.stop();
});
