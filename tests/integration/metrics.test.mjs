// GET /metrics after a scripted workload: the whole output parses with a
// strict exposition-format parser, and the counters match what was done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeOpenAI, chatStream, postJson, ingestSampleKb, sleep } from './helpers.mjs';
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

test('metrics count HTTP requests, bytes, streams, upstream calls and retrieval', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Refunds take 3 business days [1].']);
  t.after(() => fake.stop());
  const srv = await startServer({
    env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_MODEL: 'gpt-4o-mini', RAGD_LLM_RETRIES: '1', RAGD_LLM_RETRY_BASE_MS: '10' },
  });
  t.after(() => srv.stop());
  const ids = await ingestSampleKb(srv.base);

  // The scripted workload: what each request did is counted here, by hand.
  const healthz = 3;
  for (let i = 0; i < healthz; i++) assert.equal((await fetch(srv.base + '/healthz')).status, 200);
  let searchBytes = 0;
  for (const query of ['refund', '비밀번호']) {
    const r = await postJson(srv.base, '/v1/search', { query, top_k: 3 });
    assert.equal(r.status, 200);
    searchBytes += Buffer.byteLength(r.text);
  }
  const bad = await postJson(srv.base, '/v1/search', '{"query": ');
  assert.equal(bad.status, 400);
  searchBytes += Buffer.byteLength(bad.text);
  assert.equal((await fetch(srv.base + '/no/such/page')).status, 404);
  assert.equal((await fetch(srv.base + '/v1/documents/' + encodeURIComponent(ids[0]))).status, 200);
  assert.equal((await fetch(srv.base + '/v1/documents/nope', { method: 'DELETE' })).status, 404);
  let chatBytes = 0;
  for (let i = 0; i < 2; i++) {
    const r = await chatStream(srv.base, { message: 'How long do refunds take?' });
    assert.equal(r.status, 200);
    chatBytes += r.raw.length;
  }
  await fake.configure({ reset: true, status: 503 });
  const failed = await chatStream(srv.base, { message: 'How long do refunds take?' });
  chatBytes += failed.raw.length;
  // A client that hangs up while the model is still talking.
  await fake.configure({ reset: true, delay_ms: 300 });
  const ctl = new AbortController();
  const res = await fetch(srv.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'How long do refunds take?' }),
    signal: ctl.signal,
  });
  const reader = res.body.getReader();
  await reader.read();
  ctl.abort();
  await reader.read().catch(() => {});
  // The server notices the hang-up within milliseconds; wait for the count.
  let m;
  for (let i = 0; i < 50; i++) {
    m = await scrape(srv.base);
    if (m.value('ragd_http_stream_cancellations_total', { cause: 'disconnect' }) === 1 && m.value('ragd_http_open_streams') === 0) break;
    await sleep(100);
  }

  const count = (method, route, status) => m.value('ragd_http_requests_total', { method, route, status: String(status) });
  assert.equal(count('GET', '/healthz', 200), healthz);
  assert.equal(count('POST', '/v1/documents', 200), ids.length);
  assert.equal(count('POST', '/v1/search', 200), 2);
  assert.equal(count('POST', '/v1/search', 400), 1);
  assert.equal(count('other', 'unmatched', 404), 1);
  assert.equal(count('GET', '/v1/documents/*', 200), 1);
  assert.equal(count('DELETE', '/v1/documents/*', 404), 1);
  assert.equal(count('POST', '/v1/chat', 200), 4);
  assert.equal(m.value('ragd_http_request_duration_seconds_count', { route: '/healthz' }), healthz);
  assert.equal(m.value('ragd_http_request_duration_seconds_count', { route: '/v1/chat' }), 4);
  // Body bytes: what the client read, byte for byte (the aborted stream aside).
  assert.equal(m.value('ragd_http_response_bytes_total', { route: '/v1/search' }), searchBytes);
  assert.ok(m.value('ragd_http_response_bytes_total', { route: '/v1/chat' }) >= chatBytes);
  assert.equal(m.value('ragd_http_stream_cancellations_total', { cause: 'disconnect' }), 1);
  assert.equal(m.value('ragd_http_open_streams'), 0);
  assert.ok(m.value('ragd_http_open_connections') >= 1, 'the scrape itself is a connection');

  // Upstream (the single generator is the chain entry DEFAULT): four answers
  // reached the model; the 503 one was retried once, then failed as http_5xx.
  assert.equal(m.value('ragd_upstream_requests_total', { endpoint: 'DEFAULT' }), 4);
  assert.equal(m.value('ragd_upstream_retries_total', { endpoint: 'DEFAULT' }), 1);
  assert.equal(m.value('ragd_upstream_failures_total', { endpoint: 'DEFAULT', kind: 'http_5xx' }), 1);
  assert.equal(m.sum('ragd_upstream_failures_total'), 1, 'a hang-up is not an upstream failure');
  assert.equal(m.value('ragd_upstream_breaker_state', { endpoint: 'DEFAULT', state: 'closed' }), 1);
  assert.equal(m.value('ragd_upstream_breaker_state', { endpoint: 'DEFAULT', state: 'open' }), 0);

  // Retrieval: every search is timed under its mode (hybrid is the default).
  const searches = m.sum('ragd_search_seconds_count');
  assert.ok(searches >= 2, `${searches} searches timed`);
  assert.equal((await postJson(srv.base, '/v1/search', { query: 'shipping' })).status, 200);
  const after = await scrape(srv.base);
  assert.equal(after.sum('ragd_search_seconds_count'), searches + 1);
  assert.equal(after.value('ragd_search_seconds_count', { mode: 'hybrid' }) - (m.value('ragd_search_seconds_count', { mode: 'hybrid' }) ?? 0), 1);
  assert.equal(m.value('ragd_documents_indexed'), ids.length);
  const listed = await (await fetch(srv.base + '/v1/documents?limit=1000')).json();
  assert.equal(listed.documents.length, ids.length);
  assert.ok(m.value('ragd_chunks_indexed') >= ids.length);
});
