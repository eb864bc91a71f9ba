// GET /metrics after a scripted workload: the whole output parses with a
// strict exposition-format parser, and the counters match what was done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeOpenAI, chatStream, postJson, ingestSampleKb } from './helpers.mjs';
import { parsePrometheus } from './prom.mjs';

async function scrape(base) {
  const r = await fetch(base + '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await r.text());
}

test('metrics count answers, tokens, cost, failovers and the process', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Refunds take 3 business days [1].']);
  t.after(() => fake.stop());
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-4o-mini', RAGD_PRICES: 'gpt-4o-mini=1000000/2000000',
      RAGD_LLM_RETRIES: '0',
    },
  });
  t.after(() => srv.stop());
  await ingestSampleKb(srv.base);

  const before = await scrape(srv.base);
  assert.equal(before.value('ragd_build_info', {}) , 1);
  assert.ok(before.value('process_resident_memory_bytes') > 1e6);
  assert.ok(before.value('process_open_fds') > 3);

  // Two answers from the model, one where the model fails and the extractive
  // last resort answers, one with nothing retrieved (extractive directly).
  let usage = [];
  for (let i = 0; i < 2; i++) {
    const r = await chatStream(srv.base, { message: 'How long do refunds take?' });
    usage.push(JSON.parse(r.events.find((e) => e.event === 'usage').data));
  }
  await fake.configure({ reset: true, status: 503 });
  await chatStream(srv.base, { message: 'How long do refunds take?' });
  await chatStream(srv.base, { message: 'xyzzy qwertyuiop' });

  const m = await scrape(srv.base);
  assert.equal(m.value('ragd_answers_total', { provider: 'openai', finish_reason: 'stop' }), 2);
  assert.equal(m.value('ragd_answers_total', { provider: 'extractive', finish_reason: 'stop' }), 2);
  assert.equal(m.value('ragd_failovers_total', { reason: 'upstream_unavailable' }), 1);
  assert.equal(m.value('ragd_degraded_answers_total', { reason: 'upstream_unavailable' }), 1);
  const tokensIn = usage.reduce((a, u) => a + u.prompt_tokens, 0);
  const tokensOut = usage.reduce((a, u) => a + u.completion_tokens, 0);
  assert.equal(m.value('ragd_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', direction: 'in' }), tokensIn);
  assert.equal(m.value('ragd_tokens_total', { provider: 'openai', model: 'gpt-4o-mini', direction: 'out' }), tokensOut);
  // RAGD_PRICES set $1 per input token and $2 per output token.
  assert.equal(m.value('ragd_cost_usd_total', { provider: 'openai', model: 'gpt-4o-mini' }), tokensIn + 2 * tokensOut);
  assert.equal(m.value('ragd_answer_seconds_count', { provider: 'openai' }), 2);
  assert.equal(m.value('ragd_answer_first_token_seconds_count', { provider: 'openai' }), 2);
  assert.ok(m.value('ragd_uptime_seconds') >= 0);
});
