// Retries and circuit breakers seen from a client: a provider that fails once
// is retried before the first token (the client sees one clean answer); a
// provider that keeps failing opens its breaker, which /readyz reports, and
// later questions fail fast to the extractive last resort without calling it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeOpenAI, chatStream, ingestSampleKb } from './helpers.mjs';

function kinds(r) {
  return r.events.map((e) => e.event).filter((e, i, a) => !(e === 'text_delta' && a[i - 1] === 'text_delta'));
}

test('a failure before the first token is retried; a dead provider opens its breaker', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Retried answer [1].']);
  t.after(() => fake.stop());
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url,
      RAGD_LLM_RETRIES: '2',
      RAGD_LLM_RETRY_BASE_MS: '10',
      RAGD_LLM_BREAKER_MIN_REQUESTS: '3',
      RAGD_LLM_BREAKER_COOLDOWN_MS: '60000',
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);

  // 503 with Retry-After: 0 once, then success: one answer, two upstream requests.
  await fake.configure({ reset: true, fail_first: 1, fail_status: 503, retry_after: '0', text: 'Retried answer [1].' });
  await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
  let r = await chatStream(srv.base, { message: 'How long do refunds take?' });
  assert.deepEqual(kinds(r), ['meta', 'sources', 'text_delta', 'usage', 'done']);
  assert.equal(r.events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join(''), 'Retried answer [1].');
  assert.equal((await fake.log()).length, 2);

  // Always failing: each question is retried, then fails over to the
  // extractive last resort. The window now holds 3 requests (the retried
  // success and two failures): two thirds failed, so the breaker opens.
  await fake.configure({ reset: true, status: 500 });
  await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
  for (let i = 0; i < 2; i++) {
    r = await chatStream(srv.base, { message: 'How long do refunds take?' });
    assert.deepEqual(kinds(r).slice(0, 3), ['meta', 'sources', 'notice']);
    assert.equal(kinds(r).at(-1), 'done');
  }
  assert.equal((await fake.log()).length, 6, 'two requests of three attempts each');
  const ready = await (await fetch(srv.base + '/readyz')).json();
  const breaker = ready.breakers.find((b) => b.name === 'DEFAULT');
  assert.equal(breaker.state, 'open');
  assert.ok(breaker.retry_in_ms > 0);

  // Open: the next question does not reach the provider at all.
  r = await chatStream(srv.base, { message: 'How long do refunds take?' });
  const notice = JSON.parse(r.events.find((e) => e.event === 'notice').data);
  assert.equal(notice.degraded, true);
  assert.match(notice.message, /breaker/);
  assert.equal((await fake.log()).length, 6);
});

test('continue policy: after a mid-answer failure the next model continues the same answer', async (t) => {
  const primary = await startFakeOpenAI(['--text', 'Alpha beta gamma delta epsilon zeta.', '--mode', 'close-after:4']);
  t.after(() => primary.stop());
  const backup = await startFakeOpenAI(['--text', ' delta epsilon zeta [1].']);
  t.after(() => backup.stop());
  const chain = {
    RAGD_LLM_CHAIN: 'primary,backup',
    RAGD_LLM_PRIMARY_PROVIDER: 'openai',
    RAGD_LLM_PRIMARY_BASE_URL: primary.url,
    RAGD_LLM_BACKUP_PROVIDER: 'openai',
    RAGD_LLM_BACKUP_BASE_URL: backup.url,
    RAGD_LLM_RETRIES: '0',
  };
  const srv = await startServer({ env: { ...chain, RAGD_LLM_PARTIAL_POLICY: 'continue' } });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);

  const r = await chatStream(srv.base, { message: 'How long do refunds take?' });
  const seq = kinds(r);
  // text, then the notice, then more text: one answer, no restart
  assert.deepEqual(seq, ['meta', 'sources', 'text_delta', 'notice', 'text_delta', 'usage', 'done']);
  const text = r.events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');
  assert.equal(text, 'Alpha beta gamma delta epsilon zeta [1].');
  const notice = JSON.parse(r.events.find((e) => e.event === 'notice').data);
  assert.equal(notice.reason, 'upstream_closed');
  assert.equal(notice.degraded, false);
  // The backup was shown exactly what the client already has.
  const msgs = (await backup.log())[0].body.messages;
  assert.equal(msgs.at(-2).role, 'assistant');
  assert.equal(msgs.at(-2).content, 'Alpha beta gamma');
  assert.equal(msgs.at(-1).role, 'user');
  assert.match(msgs.at(-1).content, /Continue it exactly where it stopped/);
  assert.deepEqual(JSON.parse(r.events.at(-1).data).cited_sources, [1]);
});

test('error policy (default): a mid-answer failure ends with an error event, no second model', async (t) => {
  const primary = await startFakeOpenAI(['--text', 'Alpha beta gamma delta.', '--mode', 'close-after:3']);
  t.after(() => primary.stop());
  const backup = await startFakeOpenAI();
  t.after(() => backup.stop());
  const srv = await startServer({
    env: {
      RAGD_LLM_CHAIN: 'primary,backup',
      RAGD_LLM_PRIMARY_PROVIDER: 'openai',
      RAGD_LLM_PRIMARY_BASE_URL: primary.url,
      RAGD_LLM_BACKUP_PROVIDER: 'openai',
      RAGD_LLM_BACKUP_BASE_URL: backup.url,
      RAGD_LLM_RETRIES: '0',
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);
  const r = await chatStream(srv.base, { message: 'How long do refunds take?' });
  assert.deepEqual(kinds(r), ['meta', 'sources', 'text_delta', 'error']);
  assert.equal(JSON.parse(r.events.at(-1).data).error.code, 'upstream_closed');
  assert.equal((await backup.log()).length, 0);
});
